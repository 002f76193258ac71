# Starling front door. `make run` and `make test` do all the set-up on a
# fresh Debian 12 machine (installing build dependencies when run as root).
BUILD ?= build
ASAN_BUILD ?= build-asan
MESON_FLAGS ?= --buildtype=debugoptimized

.PHONY: all build run test unit integration test-asan deps test-deps clean bench fuzz install webclient

all: build

deps:
	@sh tools/deps.sh build

test-deps:
	@sh tools/deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	./$(BUILD)/starling run $(ARGS)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

test: test-deps $(BUILD)/build.ninja $(ASAN_BUILD)/build.ninja
	ninja -C $(BUILD)
	ninja -C $(ASAN_BUILD)
	sh tools/run-tests.sh $(BUILD) $(ASAN_BUILD)

unit: build
	meson test -C $(BUILD) --print-errorlogs

integration: build
	STARLING_BIN=$(BUILD)/starling /usr/bin/python3 -m pytest -q tests/integration

# Long fuzzing runs with libFuzzer (clang); `make test` only replays the seed corpus.
FUZZ_SECONDS ?= 300
fuzz: deps
	@command -v clang >/dev/null || { echo "make fuzz needs clang (apt-get install clang)"; exit 1; }
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true --buildtype=debugoptimized -Db_lundef=false
	ninja -C build-fuzz
	mkdir -p build-fuzz/corpus-stream build-fuzz/corpus-jid build-fuzz/corpus-scram
	./build-fuzz/tests/fuzz/fuzz_stream -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus-stream tests/fuzz/corpus/stream
	./build-fuzz/tests/fuzz/fuzz_jid -max_total_time=$(FUZZ_SECONDS) -max_len=3072 build-fuzz/corpus-jid tests/fuzz/corpus/jid
	./build-fuzz/tests/fuzz/fuzz_scram -max_total_time=$(FUZZ_SECONDS) -max_len=12288 build-fuzz/corpus-scram tests/fuzz/corpus/scram

# Starling side by side with Prosody and ejabberd (docs/PERFORMANCE.md). Not part of
# `make test`. Smoke run: make bench BENCH_ARGS=--quick; see bench/run.py --help.
bench: build
	/usr/bin/python3 bench/run.py --build $(BUILD) $(BENCH_ARGS)

# The chat page (modules.webchat): converse.js from npm into webclient/ (gitignored).
CONVERSE_VERSION ?= 14.0.0
webclient:
	@command -v npm >/dev/null || { echo "make webclient needs npm (apt-get install npm)"; exit 1; }
	mkdir -p webclient
	npm install --prefix webclient --no-audit --no-fund --omit=dev converse.js@$(CONVERSE_VERSION)
	@echo "converse.js installed in webclient/node_modules/converse.js/dist (modules.webchat.assets_dir)"

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
