#!/usr/bin/env bash
# bench_vs_llamacpp.sh — liandan against the newest llama.cpp on the same GGUF files (issue 19).
# The anchor is the llama.cpp source that the npm package node-llama-cpp (tests/oracle) ships as
# llama/gitRelease.bundle, built natively (cmake -DGGML_NATIVE=ON: llama-bench,
# llama-batched-bench, llama-quantize) into a cache folder outside the repository, only when
# --build-anchor is given; or, with --build-anchor-tools, only those three tools compiled natively
# from the bundle and linked against the libllama / ggml that node-llama-cpp ships prebuilt for
# the same release (its CPU backend picks the variant for this processor at run time): minutes
# instead of hours on a loaded 2-core machine. Random-weight models of a ~110M and a ~1.1B llama shape are written
# in F32 by `liandan init`, every other type comes from the anchor's quantizer, and both engines
# run every file:
#   prefill 512   llama-bench -p 512            vs  liandan bench infer (prefill 512 tokens)
#   decode ctx 0  llama-bench -n 64             vs  liandan bench infer (64 steps after 8 tokens)
#   decode ctx 2k llama-bench -n 64 -d 2048     vs  liandan bench infer --depth 2048 (64 steps)
#   batched 4/16  llama-batched-bench -npp 16 -ntg 64 -npl 4,16 (S_TG, aggregate)
#                                               vs  liandan bench serve (16-token prompts, 64 new)
# per thread count. Runs alternate between the engines (liandan, llama.cpp, liandan, ...),
# each run one sample; the table has the medians of --runs runs and liandan / llama.cpp.
# The load average is printed with the table: on a shared machine the numbers are provisional.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: scripts/bench_vs_llamacpp.sh [options]

  --build-anchor       clone node-llama-cpp's llama.cpp bundle into CACHE/llama.cpp and build
                       it (GGML_NATIVE; llama-bench, llama-batched-bench, llama-quantize;
                       nice -n 10, LD_JOBS jobs, default 2)
  --build-anchor-tools the same three tools only, compiled with -march=native from the bundle
                       and linked against node-llama-cpp's prebuilt libraries of the same
                       release (CACHE/llama.cpp/build-tools/bin); used when present
  --cache DIR          the anchor and the model files (default ~/.cache/liandan)
  --shapes "S..."      110m and/or 1b (default "110m 1b")
  --types "T..."       weight types (default "f32 f16 q8_0 q6_k q4_k_m q4_0")
  --types-1b "T..."    types of the 1b shape (default "q4_k_m q8_0")
  --threads "N..."     thread counts (default "1 2")
  --runs N             runs per engine and row, interleaved; medians (default 5)
  --cache-type T       KV cache type of both engines: f32 (liandan) / f16 (llama.cpp's default),
                       q8_0 (default: each engine's own default: liandan f32, llama.cpp f16)
  --no-batched         skip the batched rows
  --bin PATH           the liandan binary (default build/liandan)
EOF
}

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/liandan
SHAPES="110m 1b" TYPES="f32 f16 q8_0 q6_k q4_k_m q4_0" TYPES_1B="q4_k_m q8_0" THREADS="1 2" RUNS=5
BUILD=0 TOOLS=0 BATCHED=1 KVT="" BIN=${LD_BIN:-build/liandan}
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --build-anchor) BUILD=1; shift ;;
    --build-anchor-tools) TOOLS=1; shift ;;
    --cache) CACHE=$2; shift 2 ;;
    --shapes) SHAPES=$2; shift 2 ;;
    --types) TYPES=$2; shift 2 ;;
    --types-1b) TYPES_1B=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --cache-type) KVT=$2; shift 2 ;;
    --no-batched) BATCHED=0; shift ;;
    --bin) BIN=$2; shift 2 ;;
    *) echo "bench_vs_llamacpp: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "bench_vs_llamacpp: no liandan binary at $BIN (run make, or pass --bin)" >&2; exit 2; }
case $RUNS in '' | *[!0-9]* | 0) echo "bench_vs_llamacpp: --runs needs a positive number, not '$RUNS'" >&2; exit 2 ;; esac
case $KVT in "" | f32 | f16 | q8_0) ;; *) echo "bench_vs_llamacpp: --cache-type: f32, f16 or q8_0, not '$KVT'" >&2; exit 2 ;; esac

ANCHOR=$CACHE/llama.cpp
BUNDLE=tests/oracle/node_modules/node-llama-cpp/llama/gitRelease.bundle
PREBUILT=tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
if [ "$BUILD" = 1 ] || [ "$TOOLS" = 1 ]; then
  [ -f "$BUNDLE" ] || { echo "bench_vs_llamacpp: no $BUNDLE (run scripts/setup.sh: it installs the npm oracles)" >&2; exit 2; }
  mkdir -p "$CACHE"
  [ -d "$ANCHOR/.git" ] || git clone -q "$BUNDLE" "$ANCHOR"
fi
if [ "$BUILD" = 1 ]; then
  cmake -S "$ANCHOR" -B "$ANCHOR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  nice -n 10 cmake --build "$ANCHOR/build" -j "${LD_JOBS:-2}" --target llama-bench llama-batched-bench llama-quantize
fi
if [ "$TOOLS" = 1 ]; then
  [ -d "$PREBUILT" ] || { echo "bench_vs_llamacpp: no $PREBUILT (node-llama-cpp's prebuilt x64 libraries)" >&2; exit 2; }
  TB=$ANCHOR/build-tools/bin
  mkdir -p "$TB"
  cp -f "$PREBUILT"/*.so "$TB"/
  libs=()
  for l in "$TB"/libllama-common.so "$TB"/libllama.*so "$TB"/libggml.*so "$TB"/libggml-base.so; do libs+=("-l:$(basename "$l")"); done
  for tool in llama-bench:tools/llama-bench/llama-bench.cpp batched-bench:tools/batched-bench/batched-bench.cpp \
              quantize:tools/quantize/quantize.cpp; do
    name=${tool%%:*} src=${tool#*:}
    [ "$name" = llama-bench ] || name=llama-$name
    echo "bench_vs_llamacpp: compiling $name" >&2
    nice -n 10 g++ -std=c++17 -O3 -march=native -DNDEBUG -I"$ANCHOR/include" -I"$ANCHOR/common" \
      -I"$ANCHOR/ggml/include" -I"$ANCHOR/vendor" -I"$ANCHOR/$(dirname "$src")" "$ANCHOR/$src" \
      "$ANCHOR/$(dirname "$src")/main.cpp" -o "$TB/$name" -L"$TB" "${libs[@]}" -Wl,-rpath,'$ORIGIN' -pthread
  done
fi
LB=$ANCHOR/build/bin
[ -x "$ANCHOR/build-tools/bin/llama-bench" ] && LB=$ANCHOR/build-tools/bin
for t in llama-bench llama-batched-bench llama-quantize; do
  [ -x "$LB/$t" ] || { echo "bench_vs_llamacpp: no $LB/$t (run with --build-anchor)" >&2; exit 2; }
done
ANCHOR_REV=$(git -C "$ANCHOR" log -1 --format='%h %cd' --date=short 2>/dev/null || echo "?")

# ---- the model files ------------------------------------------------------------------------
M=$CACHE/bench_vs_llamacpp
mkdir -p "$M"
# ~110M: 12 layers of 768 (12 heads of 64), MLP 2048, 16k vocabulary, untied head
cat >"$M/110m.json" <<'JSON'
{"model_type": "llama", "vocab_size": 16000, "hidden_size": 768, "intermediate_size": 2048,
 "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 12,
 "max_position_embeddings": 4096, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
# 1.1B: TinyLlama's shape (22 layers of 2048, 32 heads, 4 KV heads of 64, MLP 5632)
cat >"$M/1b.json" <<'JSON'
{"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
 "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
 "max_position_embeddings": 4096, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
[ -s "$M/tok.json" ] || "$BIN" tokenizer train README.md --format txt --vocab-size 600 -o "$M/tok.json" >/dev/null 2>&1
# llama-quantize's type names
lq_type() { case $1 in f16) echo F16 ;; q8_0) echo Q8_0 ;; q6_k) echo Q6_K ;; q5_k_m) echo Q5_K_M ;;
  q4_k_m) echo Q4_K_M ;; q4_0) echo Q4_0 ;; q3_k_m) echo Q3_K_M ;; q2_k) echo Q2_K ;; iq4_xs) echo IQ4_XS ;;
  *) echo "bench_vs_llamacpp: no llama-quantize type for '$1'" >&2; return 1 ;; esac; }
model_file() { # SHAPE TYPE -> path (written on first use)
  local f32=$M/$1.f32.gguf f=$M/$1.$2.gguf
  [ -s "$f32" ] || "$BIN" init "$M/$1.json" --tokenizer "$M/tok.json" --type f32 -o "$f32" >/dev/null
  if [ "$2" != f32 ] && [ ! -s "$f" ]; then
    "$LB/llama-quantize" "$f32" "$f.tmp" "$(lq_type "$2")" >"$M/quantize.log" 2>&1 ||
      { tail -5 "$M/quantize.log" >&2; exit 1; }
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}

# ---- one run of each measurement: prints numbers ---------------------------------------------
KV_LD=() KV_LC=()
[ -n "$KVT" ] && KV_LD=(--cache-type-k "$KVT" --cache-type-v "$KVT") && KV_LC=(-ctk "$KVT" -ctv "$KVT")
# a liandan bench row's value by its name (a regex), from --json output
jval() { grep -E "\"name\":\"$1" | head -1 | sed 's/.*"value":\([0-9.e+-]*\).*/\1/'; }
ld_infer() { # FILE THREADS -> "prefill decode0 decode2k"
  local a b
  a=$("$BIN" bench infer --model "$1" --threads "$2" --reps 1 --json ${KV_LD[@]+"${KV_LD[@]}"} 2>/dev/null)
  b=$("$BIN" bench infer --model "$1" --threads "$2" --reps 1 --json --depth 2048 ${KV_LD[@]+"${KV_LD[@]}"} 2>/dev/null)
  echo "$(jval 'file prefill 512' <<<"$a") $(jval 'file decode batch 1 \(' <<<"$a") $(jval 'file decode batch 1 at context' <<<"$b")"
}
lc_infer() { # FILE THREADS -> "prefill decode0 decode2k" (llama-bench CSV: avg_ts per test)
  local out # two runs: one would also time a 512-token prefill at depth 2048
  out=$("$LB/llama-bench" -m "$1" -t "$2" -p 512 -n 0 -r 1 -o csv ${KV_LC[@]+"${KV_LC[@]}"} 2>/dev/null
        "$LB/llama-bench" -m "$1" -t "$2" -p 0 -n 64 -d 0,2048 -r 1 -o csv ${KV_LC[@]+"${KV_LC[@]}"} 2>/dev/null | tail -n +2)
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); col[$i] = i }; next }
    { gsub(/"/, ""); p = $col["n_prompt"]; g = $col["n_gen"]; d = $col["n_depth"]; v = $col["avg_ts"]
      if (p == 512 && g == 0 && d == 0) pp = v; if (p == 0 && d == 0) tg0 = v; if (p == 0 && d == 2048) tg2 = v }
    END { print pp, tg0, tg2 }' <<<"$out"
}
ld_batched() { # FILE THREADS -> "agg4 agg16"
  local a
  a=$("$BIN" bench serve --model "$1" --threads "$2" --reps 1 --json ${KV_LD[@]+"${KV_LD[@]}"} 2>/dev/null)
  echo "$(jval 'file 4 streams aggregate' <<<"$a") $(jval 'file 16 streams aggregate' <<<"$a")"
}
lc_batched() { # FILE THREADS -> "agg4 agg16" (S_TG t/s of the 4 and 16 rows)
  "$LB/llama-batched-bench" -m "$1" -t "$2" -c 2048 -b 2048 -ub 512 -npp 16 -ntg 64 -npl 4,16 ${KV_LC[@]+"${KV_LC[@]}"} 2>/dev/null |
    awk -F'|' '/^\|/ { gsub(/ /, ""); if ($4 == 4) a = $9; if ($4 == 16) b = $9 } END { print a, b }'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }

# ---- the table --------------------------------------------------------------------------------
echo "liandan $(git rev-parse --short HEAD 2>/dev/null || echo ?) vs llama.cpp $ANCHOR_REV ($LB), $RUNS interleaved runs, medians (tokens/s)"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
echo
echo "| shape | type | threads | test | liandan | llama.cpp | liandan / llama.cpp |"
echo "|---|---|---|---|---|---|---|"
for shape in $SHAPES; do
  types=$TYPES
  [ "$shape" = 1b ] && types=$TYPES_1B
  for type in $types; do
    f=$(model_file "$shape" "$type")
    for th in $THREADS; do
      declare -A L=() C=()
      for ((r = 0; r < RUNS; r++)); do
        read -r a b c <<<"$(ld_infer "$f" "$th")"; L[pp]+=" $a" L[tg0]+=" $b" L[tg2]+=" $c"
        read -r a b c <<<"$(lc_infer "$f" "$th")"; C[pp]+=" $a" C[tg0]+=" $b" C[tg2]+=" $c"
        if [ "$BATCHED" = 1 ]; then
          read -r a b <<<"$(ld_batched "$f" "$th")"; L[b4]+=" $a" L[b16]+=" $b"
          read -r a b <<<"$(lc_batched "$f" "$th")"; C[b4]+=" $a" C[b16]+=" $b"
        fi
      done
      tests="pp:prefill_512 tg0:decode_ctx_0 tg2:decode_ctx_2048"
      [ "$BATCHED" = 1 ] && tests="$tests b4:batched_4_seqs b16:batched_16_seqs"
      for t in $tests; do
        k=${t%%:*} name=${t#*:}
        l=$(median <<<"${L[$k]}") c=$(median <<<"${C[$k]}")
        echo "| $shape | $type | $th | ${name//_/ } | $l | $c | $(ratio "$l" "$c") |"
      done
      unset L C
    done
  done
done
echo
echo "load after: $(uptime | sed 's/.*load average/load average/')"
