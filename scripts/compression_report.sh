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
EOF
}

[ $# -ge 1 ] && { [ "$1" = -h ] || [ "$1" = --help ]; } && { usage; exit 0; }
[ $# -ge 3 ] || { usage >&2; exit 2; }
MODEL=$1 DATA=$2 OUT=$3
shift 3
TYPES="f32 f16 q8_0 q6_k q5_k q4_k q4_0"
WINDOWS=() REPS=5 SPEED=1
BIN=${LD_BIN:-build/liandan}
while [ $# -gt 0 ]; do
  case $1 in
    --types) TYPES=$2; shift 2 ;;
    --windows) WINDOWS=(--max-windows "$2"); shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --no-speed) SPEED=0; shift ;;
    --bin) BIN=$2; shift 2 ;;
    *) echo "compression_report: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "compression_report: no liandan binary at $BIN (run make, or pass --bin)" >&2; exit 2; }
[ -e "$MODEL" ] || { echo "compression_report: no model at $MODEL" >&2; exit 2; }
[ -s "$DATA" ] || { echo "compression_report: no data at $DATA" >&2; exit 2; }
mkdir -p "$OUT"

# field VALUE of "... NAME VALUE ..." in a line
field() { sed -n "s/.*$1 \([0-9.]*\).*/\1/p" | head -1; }

rows=() f32_ppl=""
for t in $TYPES; do
  f="$OUT/model.$t.gguf"
  [ -s "$f" ] || "$BIN" quantize "$MODEL" --type "$t" -o "$f" >&2
  mb=$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", b / 1e6 }')
  line=$("$BIN" eval ppl "$f" --data "$DATA" "${WINDOWS[@]}" 2>/dev/null | grep perplexity)
  ppl=$(echo "$line" | field perplexity)
  bpb=$(echo "$line" | sed -n 's/.*| \([0-9.]*\) bits\/byte.*/\1/p')
  [ -z "$f32_ppl" ] && [ "$t" = f32 ] && f32_ppl=$ppl
  delta="—"
  [ -n "$f32_ppl" ] && [ "$t" != f32 ] && delta=$(awk -v a="$ppl" -v b="$f32_ppl" 'BEGIN { printf "%+.2f %%", 100 * (a / b - 1) }')
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
  rows+=("| $t | $mb | $ppl | $delta | $bpb$speed |")
  echo "compression_report: $t done" >&2
done

if [ "$SPEED" = 1 ]; then
  echo "| type | size (MB) | perplexity | vs f32 | bits/byte | prefill tok/s | decode tok/s (of BW limit) |"
  echo "|---|---|---|---|---|---|---|"
else
  echo "| type | size (MB) | perplexity | vs f32 | bits/byte |"
  echo "|---|---|---|---|---|"
fi
printf '%s\n' "${rows[@]}"
