#!/usr/bin/env bash
# compression_report.sh — the "size, perplexity, speed per type" table of docs/benchmarks.md.
# For each GGUF type it writes MODEL as OUT_DIR/model.TYPE.gguf (`liandan quantize`, the
# default mix: embeddings/output at Q6_K for the 4/5-bit types), measures the perplexity of
# DATA with `liandan eval ppl`, and decode/prefill speed with `liandan bench infer`, then
# prints a Markdown table. Nothing here is downloaded; MODEL and DATA are the user's.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/compression_report.sh MODEL DATA OUT_DIR [options]

  MODEL            a model directory (or GGUF file) liandan loads
  DATA             held-out text (txt, tsv: last column, jsonl) for the perplexity
  OUT_DIR          where the GGUF files go (kept, so llama.cpp can run them too)
  --types "T..."   types to report (default: "f32 f16 q8_0 q6_k q5_k q4_k q4_0")
  --windows N      perplexity over at most N context windows (default: all)
  --reps N         bench infer repetitions; the median is reported (default 5)
  --no-speed       sizes and perplexity only
  --bin PATH       the liandan binary (default: build/liandan)
  --imatrix FILE   importance matrix (`liandan imatrix`) for liandan's quantizer and, with
                   --llama-cpp, for llama.cpp's (required by iq3_xxs, iq2_*, iq1_*)
  --llama-cpp      also quantize OUT_DIR/model.f32.gguf with llama.cpp's own quantizer (the
                   node-llama-cpp oracle of tests/oracle) for every type that is one of its
                   mixes, and report that file's perplexity (liandan runs both files)
  --read-only "T:FTYPE..."  rows for types liandan reads but does not write, from llama.cpp's
                   quantizer (llama_ftype number; an importance matrix of ones for every
                   matrix), e.g. "iq3_xxs:23 iq2_xxs:19 tq2_0:37"
EOF
}

[ $# -ge 1 ] && { [ "$1" = -h ] || [ "$1" = --help ]; } && { usage; exit 0; }
[ $# -ge 3 ] || { usage >&2; exit 2; }
MODEL=$1 DATA=$2 OUT=$3
shift 3
TYPES="f32 f16 q8_0 q6_k q5_k q4_k q4_0"
WINDOWS=() REPS=5 SPEED=1 LLAMA=0 READONLY="" IMATRIX=()
BIN=${LD_BIN:-build/liandan}
while [ $# -gt 0 ]; do
  case $1 in
    --types) TYPES=$2; shift 2 ;;
    --windows) WINDOWS=(--max-windows "$2"); shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --no-speed) SPEED=0; shift ;;
    --bin) BIN=$2; shift 2 ;;
    --llama-cpp) LLAMA=1; shift ;;
    --imatrix) IMATRIX=(--imatrix "$2"); shift 2 ;;
    --read-only) READONLY=$2; shift 2 ;;
    *) echo "compression_report: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "compression_report: no liandan binary at $BIN (run make, or pass --bin)" >&2; exit 2; }
[ -e "$MODEL" ] || { echo "compression_report: no model at $MODEL" >&2; exit 2; }
[ -s "$DATA" ] || { echo "compression_report: no data at $DATA" >&2; exit 2; }
mkdir -p "$OUT"

# field VALUE of "... NAME VALUE ..." in a line
field() { sed -n "s/.*$1 \([0-9.]*\).*/\1/p" | head -1; }

# llama.cpp's quantizer (tests/oracle/llama_quantize.c on node-llama-cpp's libllama)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=$ROOT/tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.5.0.so
LQ=$OUT/llama_quantize
if [ "$LLAMA" = 1 ] || [ -n "$READONLY" ]; then
  [ -f "$LIB" ] || { echo "compression_report: $LIB is missing (run scripts/setup.sh)" >&2; exit 2; }
  cc -O1 -o "$LQ" "$ROOT/tests/oracle/llama_quantize.c" -ldl
  [ -s "$OUT/model.f32.gguf" ] || "$BIN" export gguf "$MODEL" -o "$OUT/model.f32.gguf" >&2
fi
# llama_ftype of a type name that is one of llama.cpp's mixes ("" when it is not)
ftype_of() {
  case $1 in
    q8_0) echo 7 ;; q4_0) echo 2 ;; q6_k) echo 18 ;; q5_k_m) echo 17 ;; q5_k_s) echo 16 ;; q4_k_m) echo 15 ;;
    q4_k_s) echo 14 ;; q3_k_l) echo 13 ;; q3_k_m) echo 12 ;; q3_k_s) echo 11 ;; q2_k) echo 10 ;; q2_k_s) echo 21 ;;
    iq4_nl) echo 25 ;; iq4_xs) echo 30 ;; iq3_m) echo 27 ;; iq3_s) echo 26 ;; iq3_xs) echo 22 ;; iq3_xxs) echo 23 ;;
    iq2_m) echo 29 ;; iq2_s) echo 28 ;; iq2_xs) echo 20 ;; iq2_xxs) echo 19 ;; iq1_m) echo 31 ;; iq1_s) echo 24 ;;
    tq1_0) echo 36 ;; tq2_0) echo 37 ;; *) echo "" ;;
  esac
}
# "NAME:K" for every matrix of a GGUF file (an importance matrix of ones for llama_quantize)
ones_imatrix() {
  "$BIN" inspect "$1" | awk '/^tensors/ { on = 1; next } on && $3 ~ /^\[/ && $4 ~ /\]$/ { gsub(/[\[,]/, "", $3); gsub(/\]/, "", $4); print $1 ":" $4 }'
}
# perplexity of a GGUF file
ppl_of() { "$BIN" eval ppl "$1" --data "$DATA" "${WINDOWS[@]}" 2>/dev/null | grep perplexity | field perplexity; }

rows=() f32_ppl=""
for t in $TYPES; do
  f="$OUT/model.$t.gguf"
  [ -s "$f" ] || "$BIN" quantize "$MODEL" --type "$t" "${IMATRIX[@]}" -o "$f" >&2
  mb=$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", b / 1e6 }')
  line=$("$BIN" eval ppl "$f" --data "$DATA" "${WINDOWS[@]}" 2>/dev/null | grep perplexity)
  ppl=$(echo "$line" | field perplexity)
  bpb=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) bits\/byte.*/\1/p')
  [ -z "$f32_ppl" ] && [ "$t" = f32 ] && f32_ppl=$ppl
  delta="—"
  [ -n "$f32_ppl" ] && [ "$t" != f32 ] && delta=$(awk -v a="$ppl" -v b="$f32_ppl" 'BEGIN { printf "%+.2f %%", 100 * (a / b - 1) }')
  lc=""
  if [ "$LLAMA" = 1 ]; then
    ft=$(ftype_of "$t")
    if [ -n "$ft" ]; then
      [ -s "$OUT/llama.$t.gguf" ] || "$LQ" "$LIB" "$OUT/model.f32.gguf" "$OUT/llama.$t.gguf" "$ft" "${IMATRIX[@]}" >/dev/null 2>&1
      lp=$(ppl_of "$OUT/llama.$t.gguf")
      lc=" | $lp ($(awk -v a="$ppl" -v b="$lp" 'BEGIN { printf "%+.2f %%", 100 * (a / b - 1) }'))"
    else
      lc=" | —"
    fi
  fi
  speed=""
  if [ "$SPEED" = 1 ]; then
    # the file's own rows of bench infer: median decode tok/s and its share of the bandwidth
    # limit, prefill tok/s (of as many tokens as the model's context allows, at most 512).
    # OpenMP's wait policy is the caller's: passive (threads sleep between regions) is for
    # oversubscribed machines only; on a free one it halves decode (a wake-up per region).
    s=$("$BIN" bench infer --model "$f" --reps "$REPS" 2>/dev/null | grep '^infer *file' || true)
    dec=$(echo "$s" | sed -n 's/.*decode batch 1 ([^)]*) *\([0-9.]*\) tok\/s *\([0-9.]*%\).*/\1 (\2)/p')
    pre=$(echo "$s" | sed -n 's/.*prefill \([0-9]*\) tokens *\([0-9.]*\) tok\/s.*/\2 (T=\1)/p')
    speed=" | ${pre:-?} | ${dec:-?}"
  fi
  rows+=("| $t | $mb | $ppl | $delta | $bpb$lc$speed |")
  echo "compression_report: $t done" >&2
done

# rows for types liandan reads but does not write: llama.cpp's quantizer makes the file
for spec in $READONLY; do
  t=${spec%%:*} ft=${spec#*:} f="$OUT/llama.$t.gguf"
  # shellcheck disable=SC2046
  [ -s "$f" ] || "$LQ" "$LIB" "$OUT/model.f32.gguf" "$f" "$ft" $(ones_imatrix "$OUT/model.f32.gguf") >/dev/null 2>&1 ||
    { echo "compression_report: llama.cpp could not quantize to $t" >&2; continue; }
  mb=$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", b / 1e6 }')
  line=$("$BIN" eval ppl "$f" --data "$DATA" "${WINDOWS[@]}" 2>/dev/null | grep perplexity)
  ppl=$(echo "$line" | field perplexity)
  bpb=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) bits\/byte.*/\1/p')
  delta="—"
  [ -n "$f32_ppl" ] && delta=$(awk -v a="$ppl" -v b="$f32_ppl" 'BEGIN { printf "%+.2f %%", 100 * (a / b - 1) }')
  lc=""
  [ "$LLAMA" = 1 ] && lc=" | (llama.cpp's file)"
  speed=""
  if [ "$SPEED" = 1 ]; then
    s=$("$BIN" bench infer --model "$f" --reps "$REPS" 2>/dev/null | grep '^infer *file' || true)
    dec=$(echo "$s" | sed -n 's/.*decode batch 1 ([^)]*) *\([0-9.]*\) tok\/s *\([0-9.]*%\).*/\1 (\2)/p')
    pre=$(echo "$s" | sed -n 's/.*prefill \([0-9]*\) tokens *\([0-9.]*\) tok\/s.*/\2 (T=\1)/p')
    speed=" | ${pre:-?} | ${dec:-?}"
  fi
  rows+=("| $t (llama.cpp) | $mb | $ppl | $delta | $bpb$lc$speed |")
  echo "compression_report: $t (llama.cpp's quantizer) done" >&2
done

head="| type | size (MB) | perplexity | vs f32 | bits/byte |" rule="|---|---|---|---|---|"
[ "$LLAMA" = 1 ] && head="$head llama.cpp's quantizer: perplexity (liandan vs it) |" rule="$rule---|"
[ "$SPEED" = 1 ] && head="$head prefill tok/s | decode tok/s (of BW limit) |" rule="$rule---|---|"
echo "$head"
echo "$rule"
printf '%s\n' "${rows[@]}"
