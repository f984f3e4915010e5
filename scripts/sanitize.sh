#!/usr/bin/env bash
# sanitize.sh — builds the unit tests and the CLI with ASan+UBSan (clang) and runs the unit tests
# and the end-to-end tests labelled asan, runs the thread team's tests under ThreadSanitizer, then
# builds the libFuzzer harnesses and runs each for a
# few seconds on its seed corpus (LD_FUZZ_SECONDS each; `make fuzz-long` runs only the fuzzers,
# 5 minutes each by default).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
FUZZ_SECONDS=${LD_FUZZ_SECONDS:-10}

CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLD_SANITIZE=ON -DLD_FUZZ=ON -DLD_WERROR=ON >/dev/null
cmake --build build-asan -j "$JOBS"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Tests too slow under ASan may be listed, one name a line, in tests/asan_skip.txt.
skip=()
if [ -s tests/asan_skip.txt ]; then skip=(-E "$(grep -v '^#' tests/asan_skip.txt | paste -sd'|' -)"); fi
if [ -z "${LD_FUZZ_ONLY:-}" ]; then # `make fuzz-long` runs only the fuzzers, for longer
# The per-ISA-level reruns (label isa) run in the release build only.
(cd build-asan && ctest --output-on-failure -j "$JOBS" -L unit -LE isa "${skip[@]}")
# End-to-end tests labelled asan run the sanitized CLI (LD_SANITIZED: they skip their slow parts).
(cd build-asan && LD_SANITIZED=1 ctest --output-on-failure -j "$JOBS" -L asan)

# ThreadSanitizer on the tests of the thread team and the code that runs on it most
# (kernels' pieces, per-thread scratch, per-thread tokenizer and data-preparation state).
CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLD_TSAN=ON -DLD_WERROR=ON >/dev/null
TSAN_TESTS=(test_team test_ops_rows test_gemm test_quant test_tokenizer test_data_prepare)
cmake --build build-tsan -j "$JOBS" --target "${TSAN_TESTS[@]}"
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -j "$JOBS" -R "^($(IFS='|'; echo "${TSAN_TESTS[*]}"))\$")
fi

for h in build-asan/fuzz_*; do
  [ -x "$h" ] || continue
  name=$(basename "$h")
  corpus=fuzz/corpus/${name#fuzz_}
  # every harness starts from a seed corpus of valid inputs (committed in fuzz/corpus/<name>/)
  [ -n "$(ls -A "$corpus" 2>/dev/null)" ] || { echo "sanitize: $name has no seed corpus in $corpus" >&2; exit 1; }
  mkdir -p "build-asan/corpus-$name"
  echo "fuzz: $name for ${FUZZ_SECONDS}s"
  "$h" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=0 \
       "build-asan/corpus-$name" "$corpus" 2>&1 | tail -n 2
done
echo "sanitize: all sanitizer tests and fuzz harnesses passed"
