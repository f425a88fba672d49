# A thin wrapper over CMake. `make demo` and `make test` are the two commands of the README.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CCACHE := $(shell command -v ccache 2>/dev/null)
LAUNCHER := $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE),)
CMAKE_FLAGS ?=

.PHONY: all deps configure build demo test test-quick tsan asan bench fuzz clean

all: build

deps:
	@bash cmake/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(LAUNCHER) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Builds Release and runs the main example.
demo: build
	$(BUILD)/examples/quickstart

# Builds and runs the whole test suite (unit, stress, package). Tests run $(JOBS) at a time, but
# the ones that start processes, open sockets or measure time run alone (RUN_SERIAL).
test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# The suite without the long stress cases.
test-quick: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -LE stress

# The suite under ThreadSanitizer, and under AddressSanitizer + UndefinedBehaviorSanitizer.
tsan: deps
	cmake --preset tsan $(LAUNCHER) && cmake --build --preset tsan -j $(JOBS) && ctest --preset tsan -j $(JOBS)

asan: deps
	cmake --preset asan $(LAUNCHER) && cmake --build --preset asan -j $(JOBS) && ctest --preset asan -j $(JOBS)

# Local-task benchmarks: dx side by side with oneTBB and OpenMP (see benchmarks/RESULTS.md).
bench: build
	python3 benchmarks/local_tasks/run.py $(BUILD)/benchmarks/local_tasks/dx_bench_local_tasks

clean:
	rm -rf $(BUILD) build-tsan build-asan $(FUZZ_BUILD)

# Fuzzes the wire decoding (tests/fuzz) with libFuzzer for FUZZ_SECONDS, on a copy of the seed
# corpus; crashes land in $(FUZZ_BUILD)/fuzz-artifacts. Needs clang and libclang-rt-14-dev.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
fuzz:
	DX_DEPS_EXTRA="clang libclang-rt-14-dev $(DX_DEPS_EXTRA)" bash cmake/install-deps.sh
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDX_FUZZ=ON \
	  -DDX_BUILD_EXAMPLES=OFF -DDX_BUILD_BENCHMARKS=OFF $(LAUNCHER)
	cmake --build $(FUZZ_BUILD) --target dx_fuzz_wire
	rm -rf $(FUZZ_BUILD)/fuzz-corpus && mkdir -p $(FUZZ_BUILD)/fuzz-corpus $(FUZZ_BUILD)/fuzz-artifacts
	cp tests/fuzz/corpus/* $(FUZZ_BUILD)/fuzz-corpus/
	$(FUZZ_BUILD)/tests/fuzz/dx_fuzz_wire -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
	  -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/fuzz-artifacts/ $(FUZZ_BUILD)/fuzz-corpus
