#!/usr/bin/env bash
# memory_report.sh — what running a ≥1B-parameter model costs in memory and start-up time
# (issue 11's acceptance): a random-weight model of TinyLlama-1.1B's shape written by
# `liandan init` as Q4_K and F16 GGUF files, then for each
#   - `generate` with a 2k-token context (a ~2000-token prompt): peak RSS from /usr/bin/time -v
#     against file size + the KV cache the session allocates (limit: 1.15 x);
#   - load to first token (a short prompt, one new token) on a warm page cache: wall time,
#     the median of 5 runs.
# Prints a Markdown table for docs/benchmarks.md. The files are large (0.7 and 2.2 GB): give
# a scratch directory outside any repository; they are kept for re-runs (delete them after).
#
# usage: scripts/memory_report.sh SCRATCH_DIR [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LD_BIN:-build/liandan}
OUT=${1:?usage: scripts/memory_report.sh SCRATCH_DIR [DATA_DIR]}
DATA=${2:-${LD_DATA_DIR:-../shared/data}}
mkdir -p "$OUT"

# TinyLlama-1.1B's shape: 22 layers of 2048, 32 heads (4 kv heads of 64), MLP 5632, 32k vocabulary
cat >"$OUT/1b.json" <<'JSON'
{"model_type": "llama", "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
 "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
 "max_position_embeddings": 2048, "rope_theta": 10000.0, "tie_word_embeddings": false}
JSON
head -n 3000 "$DATA/zh_pretrain/tang_poems.tsv" | cut -f2- >"$OUT/corpus.txt"
[ -f "$OUT/tok.json" ] || "$BIN" tokenizer train "$OUT/corpus.txt" --vocab-size 4000 -o "$OUT/tok.json" 2>/dev/null
for t in q4_k f16; do
  [ -f "$OUT/1b.$t.gguf" ] || "$BIN" init "$OUT/1b.json" --tokenizer "$OUT/tok.json" --type "$t" -o "$OUT/1b.$t.gguf" 2>&1 | tail -1
done
# a prompt of ~2000 tokens: poems, one line (generate reads one prompt per line)
tr '\n' ' ' <"$OUT/corpus.txt" >"$OUT/flat.txt" # (not piped into head -c: SIGPIPE fails the pipeline)
head -c 20000 "$OUT/flat.txt" >"$OUT/long.txt"
n=$("$BIN" tokenize --tokenizer "$OUT/tok.json" - <"$OUT/long.txt" 2>/dev/null | wc -w)
keep=$((20000 * 1990 / n))
head -c "$keep" "$OUT/flat.txt" >"$OUT/cut.txt"
# -c drops the character cut in half at the end, and then exits 1: not an error here
iconv -c -f utf-8 -t utf-8 <"$OUT/cut.txt" >"$OUT/long.txt" || [ -s "$OUT/long.txt" ]
echo >>"$OUT/long.txt"
prompt_tokens=$("$BIN" tokenize --tokenizer "$OUT/tok.json" - <"$OUT/long.txt" 2>/dev/null | wc -w)
NEW=32
ctx=$((prompt_tokens + NEW)); [ "$ctx" -gt 2048 ] && ctx=2048
kv=$((2 * 22 * ctx * 4 * 64 * 4)) # K and V, F32: layers x positions x kv heads x head size

echo "| file | size | KV cache ($ctx positions) | peak RSS, ${prompt_tokens}-token prompt + $NEW | ratio to size + KV | load to first token (warm, median of 5) |"
echo "|---|---|---|---|---|---|"
for t in q4_k f16; do
  f=$OUT/1b.$t.gguf
  size=$(stat -c %s "$f")
  cat "$f" >/dev/null # warm the page cache
  /usr/bin/time -v "$BIN" generate "$f" --file "$OUT/long.txt" --max-tokens $NEW --temperature 0 --no-stream \
    >/dev/null 2>"$OUT/$t.time" || { cat "$OUT/$t.time" >&2; exit 1; }
  rss=$(($(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/$t.time") * 1024))
  times=()
  for rep in 1 2 3 4 5; do
    t0=$(date +%s.%N)
    "$BIN" generate "$f" "床前明月光" --max-tokens 1 --temperature 0 --no-stream >/dev/null 2>&1
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  med=$(printf '%s\n' "${times[@]}" | sort -g | sed -n 3p) # the median of 5
  printf '| %s | %.0f MB | %.0f MB | %.0f MB | %.3f | %.2f s |\n' "1b.$t.gguf" "$(echo "$size / 1000000" | bc -l)" \
    "$(echo "$kv / 1000000" | bc -l)" "$(echo "$rss / 1000000" | bc -l)" "$(echo "$rss / ($size + $kv)" | bc -l)" "$med"
done
