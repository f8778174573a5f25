# zks top-level build. CMake does the work; these targets name the jobs.
#   make test    install dependencies, build, run every test (unit, cross, fuzz smoke)
#   make run     run the relay on 127.0.0.1:4433 with its data in ./var
#   make asan    the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz    every libFuzzer target for FUZZ_SECONDS each
#   make soak    the chaos campaign (relay killed, clients restarted) for SOAK_SECONDS
#   make bench   build and run the benchmarks (figures, not tests)

JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 4
SOAK_SECONDS ?= 600
SOAK_LOSS ?= 3
SOAK_SEED ?=
CTEST = ctest --output-on-failure -j $(JOBS)

.PHONY: all deps build test asan tsan fuzz fuzz-smoke soak bench run format format-check clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS)

test: build format-check fuzz-smoke
	cd build && $(CTEST)

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DZKS_SANITIZE=ON >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DZKS_TSAN=ON >/dev/null
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $(CTEST)

build-fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZKS_FUZZ=ON \
	    -DZKS_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	cmake --build build-fuzz -j $(JOBS)

fuzz: build-fuzz
	cd build-fuzz && ctest --output-on-failure -j 1 -L fuzz

fuzz-smoke:
	$(MAKE) --no-print-directory build-fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS)
	cd build-fuzz && ctest --output-on-failure -j $(JOBS) -L fuzz

# The suite runs the chaos campaign for 15 s; this runs it for SOAK_SECONDS, with SOAK_LOSS percent
# of the QUIC datagrams dropped, and SOAK_SEED if given (the campaign prints the seed it used).
soak: build
	./build/soak_client_chaos --seconds $(SOAK_SECONDS) --loss $(SOAK_LOSS) \
	    $(if $(SOAK_SEED),--seed $(SOAK_SEED))

bench: build
	@for b in build/bench_*; do [ -x "$$b" ] && "$$b"; done

RUN_LISTEN ?= 127.0.0.1:4433
RUN_HTTP ?= 127.0.0.1:4480
RUN_DATA ?= var

run: build
	@echo "Starting zks-relay on $(RUN_LISTEN) (QUIC, and TLS over TCP), data in ./$(RUN_DATA)."
	@echo "Health: http://$(RUN_HTTP)/health  Metrics: http://$(RUN_HTTP)/metrics  Stop: Ctrl-C."
	@echo "The line below is the relay's address: give it to 'zks group create --relay ADDRESS'."
	./build/zks-relay --listen $(RUN_LISTEN) --http $(RUN_HTTP) --data $(RUN_DATA)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') && echo "format: ok"

clean:
	rm -rf build build-asan build-tsan build-fuzz

# zks against mosquitto (MQTT) and NATS JetStream, side by side (docs/BENCH-PEERS.md). Installs
# the peers' Debian packages when missing, builds in $(PEERS_BUILD), writes its CSV there.
PEERS_BUILD ?= build
.PHONY: bench-peers
bench-peers: deps
	@./bench/peers/run.sh $(PEERS_BUILD)
