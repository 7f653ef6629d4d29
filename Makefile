# Every target does its own set-up: dependencies, configure, build.
JOBS      ?= $(shell nproc)
BUILD     ?= build
ASAN      ?= build-asan
FUZZ      ?= build-fuzz
FUZZ_SECS ?= 60
MODEL     ?= models/kjv-7m-q8_0.gguf
PROMPT    ?= And God said
CMAKE_ARGS ?=

.PHONY: all deps build run test test-unit test-asan test-server fuzz bench clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/quarrel run -m $(MODEL) -p "$(PROMPT)" -n 128 --seed 42

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The unit tests again under AddressSanitizer + UBSan (CPU only, no benchmarks).
test-asan: deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUARREL_SANITIZE=ON \
	  -DQUARREL_CUDA=OFF -DQUARREL_BENCH=OFF
	cmake --build $(ASAN) -j $(JOBS) --target quarrel_tests quarrel
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 1200

# The server end to end and under load: the real `quarrel serve` on loopback,
# driven by the official OpenAI client pinned in tests/server/package-lock.json.
test-server: build
	cd tests/server && npm ci --no-audit --no-fund
	cd tests/server && QUARREL_BIN=$(abspath $(BUILD))/quarrel node --test --test-concurrency=1 e2e.test.mjs load.test.mjs

test: test-unit test-asan test-server

# libFuzzer targets, each run for FUZZ_SECS seconds.
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DQUARREL_FUZZ=ON -DQUARREL_CUDA=OFF -DQUARREL_BENCH=OFF
	cmake --build $(FUZZ) -j $(JOBS)
	@set -e; for f in $(FUZZ)/fuzz_*; do \
	  [ -x "$$f" ] || continue; name=$$(basename $$f); mkdir -p $(FUZZ)/corpus/$$name; \
	  seeds=fuzz/seeds/$$name; [ -d $$seeds ] || seeds=; \
	  echo "== $$name for $(FUZZ_SECS)s"; \
	  $$f -max_total_time=$(FUZZ_SECS) -max_len=65536 -rss_limit_mb=2048 $(FUZZ)/corpus/$$name $$seeds; \
	done

bench: build
	./$(BUILD)/quarrel_bench

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
