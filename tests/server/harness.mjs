// Starts the real `quarrel serve` on 127.0.0.1 with a free port and the demo
// model, and stops it with SIGTERM (which must exit 0). The binary is
// build/quarrel, or the one QUARREL_BIN names (the Makefile passes it).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = process.env.QUARREL_BIN || path.join(REPO, "build/quarrel");
export const MODEL = path.join(REPO, "models/kjv-7m-q8_0.gguf");

export async function startServer(args = [], { startTimeoutMs = 60000 } = {}) {
  const proc = spawn(BIN, ["serve", "-m", MODEL, "--host", "127.0.0.1", "--port", "0", ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const server = { proc, lines: [], exited: null };
  server.exit = new Promise((resolve) => proc.on("exit", (code, signal) => resolve((server.exited = { code, signal }))));
  proc.stdout.resume();
  let buf = "";
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start:\n" + server.lines.join("\n"))), startTimeoutMs);
    proc.stderr.on("data", (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        server.lines.push(line);
        const m = line.match(/listening on http:\/\/([^:\s]+):(\d+)/);
        if (m) {
          clearTimeout(timer);
          resolve(`http://${m[1]}:${m[2]}`);
        }
      }
    });
    server.exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening:\n` + server.lines.join("\n")));
    });
  });
  server.url = await ready;
  server.pid = proc.pid;
  // The structured per-request log lines (JSON on stderr).
  server.requestLogs = () =>
    server.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  server.stop = async () => {
    if (!server.exited) proc.kill("SIGTERM");
    return server.exit;
  };
  return server;
}

export function client(server, { apiKey = "none", ...opts } = {}) {
  // No retries: the tests look at every status the server gives.
  return new OpenAI({ baseURL: server.url + "/v1", apiKey, maxRetries: 0, timeout: 120000, ...opts });
}

export async function rawPost(server, route, body, headers = {}) {
  const res = await fetch(server.url + route, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, text, json };
}

export function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) : NaN;
}

export async function metrics(server, headers = {}) {
  const res = await fetch(server.url + "/metrics", { headers });
  return res.text();
}

export function metricValue(text, name) {
  const line = text.split("\n").find((l) => l.startsWith(name + " ") || l.startsWith(name + "{"));
  return line ? Number(line.split(" ").pop()) : NaN;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Checks the OpenAI error body shape and returns it.
export function errorBody(assert, r) {
  assert.ok(r.json && r.json.error, `not an error body: ${r.text}`);
  for (const k of ["message", "type", "param", "code"]) assert.ok(k in r.json.error, `error body lacks ${k}: ${r.text}`);
  assert.equal(typeof r.json.error.message, "string");
  return r.json.error;
}
