#!/usr/bin/env bash
# Installs the Debian packages quarrel builds against. Safe to run again: it only
# calls apt-get when a package is missing.
set -euo pipefail
pkgs=(cmake g++ make clang libcli11-dev nlohmann-json3-dev libcpp-httplib-dev libfmt-dev
      libpcre2-dev libgtest-dev libgmock-dev libbenchmark-dev nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from outside Debian (a newer Node on the machine): accept a working binary.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || true
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
