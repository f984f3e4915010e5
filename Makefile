# Thin wrapper over CMake. `make` builds, `make test` sets up, builds and runs every test,
# `make demo` runs the demo. BUILD=dir picks the build directory.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all build test test-arm demo demo-finetune asan fuzz-long clean setup

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

setup:
	bash scripts/setup.sh

# Everything CI needs: the release build with -Werror, all tests, then the ASan+UBSan
# build of the unit tests and a short run of every fuzz harness.
test:
	bash scripts/setup.sh
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DLD_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "skipped checks (the CPU lacks what they test):"; grep -h '^SKIP ' $(BUILD)/Testing/Temporary/LastTest.log || echo "  none"
	$(MAKE) test-arm
	bash scripts/sanitize.sh

# The aarch64 cross build (Debian's gcc-aarch64-linux-gnu, cmake/aarch64-linux-gnu.cmake) with
# -Werror, and its unit tests under qemu-user: the NEON kernels against the scalar reference,
# the portable code on a second processor. Unit tests only, once (the plain run, at the NEON
# level; the scalar reference is what the x86 run's @scalar variants test). ARM_SKIP: the
# tests that take over 2.5 minutes each under emulation (model-level: causal LM, adapters,
# GGUF models, training, the KV cache types' perplexity runs; the tokenizer's PCRE2 JIT); the x86
# run covers them.
ARM_BUILD ?= build-arm
ARM_SKIP ?= ^test_(causal_lm|adapter|lm_gguf|tokenizer|train|kv_pages)$$
test-arm:
	cmake -S . -B $(ARM_BUILD) -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release -DLD_WERROR=ON
	cmake --build $(ARM_BUILD) -j $(JOBS)
	cd $(ARM_BUILD) && ctest -L unit -LE isa -E '$(ARM_SKIP)' --output-on-failure -j $(JOBS) --timeout 900

asan:
	bash scripts/sanitize.sh

# Every libFuzzer harness for LD_FUZZ_SECONDS (default 300) each, under ASan+UBSan; the corpora
# grow in build-asan/corpus-*; crashes are written to the current directory.
fuzz-long:
	LD_FUZZ_ONLY=1 LD_FUZZ_SECONDS=$${LD_FUZZ_SECONDS:-300} bash scripts/sanitize.sh

demo:
	bash scripts/setup.sh
	$(MAKE) build
	bash scripts/demo.sh

# The demo's second act: LoRA + a classification head on the poetry model (runs `demo` first
# when its model is missing), then the evaluation report.
demo-finetune:
	bash scripts/setup.sh
	$(MAKE) build
	bash scripts/demo_finetune.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz
