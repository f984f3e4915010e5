#!/usr/bin/env bash
# cli_outputs.sh — outputs are written whole: with the disk "full" (a file size limit, ulimit -f)
# every writer (export hf/gguf, quantize, imatrix, tokenizer train/convert, data prepare, plot) fails
# cleanly and leaves the good output already there byte for byte, with no temporary file or
# directory behind; export hf replaces a model directory whole (and refuses a directory that is
# not one); an unwritable place gives an error; the special ids of a trained model come from its
# tokenizer; a run directory is never mixed with an earlier run (resume before the first
# checkpoint starts over, a fresh run into a used directory is refused).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=cli_outputs
source tests/e2e/lib.bash

tiny_data
tiny_model 300 "$T/run"
M=$T/run/model
tiny_model 2000 "$T/other" # another model: its files differ from M's in every way

# full KB cmd...: runs cmd with writes past KB kilobytes in a file failing (EFBIG), as on a full disk
full() { local kb=$1; shift; (trap '' XFSZ; ulimit -f "$kb"; exec "$@"); }
# the output $1 (file or directory) must equal its copy $1.good and have no temporary sibling
unchanged() {
  diff -r "$1" "$1.good" >/dev/null 2>&1 || fail "$2 changed $1 although it failed"
  ! ls -d "$1".tmp* >/dev/null 2>&1 || fail "$2 left $(ls -d "$1".tmp*)"
}

# 1e: the special ids of a model whose config names none are the tokenizer's
eos=$("$BIN" tokenize --tokenizer "$T/tok.json" '<|endoftext|>' 2>/dev/null)
[ "$eos" -ge 0 ] 2>/dev/null || fail "no id for <|endoftext|>: $eos"
for f in config.json generation_config.json; do
  grep -q "\"eos_token_id\":[[:space:]]*$eos," "$M/$f" || { cat "$M/$f"; fail "$f: eos_token_id is not the tokenizer's EOS ($eos)"; }
  grep -q "\"bos_token_id\":[[:space:]]*$eos," "$M/$f" || fail "$f: bos_token_id is not the tokenizer's EOS ($eos; it has no BOS)"
done

# 1d: export hf over a good model directory fails midway: the old directory stays whole
"$BIN" export hf "$M" -o "$T/hf" 2>/dev/null || fail "export hf"
cp -r "$T/hf" "$T/hf.good"
if full 64 "$BIN" export hf "$T/other/model" -o "$T/hf" >"$T/err" 2>&1; then fail "export hf with a full disk succeeded"; fi
grep -q "write" "$T/err" || { cat "$T/err"; fail "export hf: no write error"; }
unchanged "$T/hf" "export hf"
"$BIN" generate "$T/hf" 月 --max-tokens 2 >/dev/null 2>&1 || fail "the directory export hf failed over does not load"
"$BIN" export hf "$T/other/model" -o "$T/hf" 2>/dev/null || fail "export hf over a model directory"
cmp -s "$T/hf/model.safetensors" "$T/other/model/model.safetensors" || fail "export hf did not replace the directory"
mkdir "$T/mine" && echo precious >"$T/mine/notes.txt"
expect_error "is not a model directory" "$BIN" export hf "$M" -o "$T/mine"
[ "$(cat "$T/mine/notes.txt")" = precious ] || fail "export hf touched a directory that is not a model"

# 5: every file writer, with the disk full, keeps the good file
"$BIN" quantize "$T/other/model" --type q8_0 -o "$T/q.gguf" 2>/dev/null || fail "quantize"
cp "$T/q.gguf" "$T/q.gguf.good"
if full 4 "$BIN" quantize "$T/other/model" --type q4_0 -o "$T/q.gguf" >/dev/null 2>&1; then
  fail "quantize with a full disk succeeded"; fi
unchanged "$T/q.gguf" "quantize"
if full 64 "$BIN" export gguf "$T/other/model" -o "$T/q.gguf" >/dev/null 2>&1; then fail "export gguf with a full disk succeeded"; fi
unchanged "$T/q.gguf" "export gguf"
"$BIN" imatrix "$M" --data "$T/poems.tsv" --chunks 2 --chunk 16 -o "$T/im.gguf" 2>/dev/null || fail "imatrix"
cp "$T/im.gguf" "$T/im.gguf.good"
if full 1 "$BIN" imatrix "$T/other/model" --data "$T/poems.tsv" --chunks 2 --chunk 16 -o "$T/im.gguf" >/dev/null 2>&1; then
  fail "imatrix with a full disk succeeded"; fi
unchanged "$T/im.gguf" "imatrix"
cp "$T/tok.json" "$T/tok2.json" && cp "$T/tok2.json" "$T/tok2.json.good"
if full 4 "$BIN" tokenizer train "$T/poems.tsv" --vocab-size 6000 -o "$T/tok2.json" >/dev/null 2>&1; then
  fail "tokenizer train with a full disk succeeded"; fi
unchanged "$T/tok2.json" "tokenizer train"
"$BIN" tokenizer convert "$T/tok.json" -o "$T/tok.gguf" 2>/dev/null || fail "tokenizer convert"
cp "$T/tok.gguf" "$T/tok.gguf.good"
if full 4 "$BIN" tokenizer convert "$T/tok2.json" -o "$T/tok.gguf" >/dev/null 2>&1; then
  fail "tokenizer convert with a full disk succeeded"; fi
unchanged "$T/tok.gguf" "tokenizer convert"
cp -r "$T/data" "$T/data.good"
# shards of ~4 KB, then one document too big for the disk: the failure comes after shards were written
{ cat "$T/poems.tsv" "$T/poems.tsv"; printf 'x\t'; for i in $(seq 2000); do printf '床前明月光，'; done; echo; } >"$T/big.tsv"
if full 8 "$BIN" data prepare "$T/big.tsv" --no-dedup --tokenizer "$T/tok.json" --shard-tokens 2000 \
  -o "$T/data" >/dev/null 2>&1; then fail "data prepare with a full disk succeeded"; fi
unchanged "$T/data" "data prepare"
for i in $(seq 3000); do echo "{\"step\":$i,\"loss\":1.5,\"lr\":0.001}"; done >"$T/run/metrics.jsonl.big"
mkdir "$T/plotrun" && mv "$T/run/metrics.jsonl.big" "$T/plotrun/metrics.jsonl"
"$BIN" plot "$T/run" -o "$T/plot.svg" >/dev/null || fail "plot"
cp "$T/plot.svg" "$T/plot.svg.good"
if full 64 "$BIN" plot "$T/plotrun" -o "$T/plot.svg" >/dev/null 2>&1; then fail "plot with a full disk succeeded"; fi
unchanged "$T/plot.svg" "plot"

# general.file_type says the matrices' type (it said Q4_K_M, 15, also with a Q4_K output)
"$BIN" quantize "$T/other/model" --type q4_k --output-type q4_k -o "$T/k.gguf" 2>/dev/null || fail "quantize q4_k"
"$BIN" inspect "$T/k.gguf" | contains "general.file_type  *UINT32  *14$" || { "$BIN" inspect "$T/k.gguf" | grep file_type; fail "q4_k file_type"; }
"$BIN" quantize "$T/other/model" --type q8_0 -o "$T/k.gguf" 2>/dev/null || fail "quantize q8_0"
"$BIN" inspect "$T/k.gguf" | contains "general.file_type  *UINT32  *7$" || fail "q8_0 file_type"

# an output where nothing can be written: an error naming it, exit 1
expect_error "/proc/liandan-x.gguf" "$BIN" quantize "$M" --type q8_0 -o /proc/liandan-x.gguf
expect_error "/proc/liandan-x" "$BIN" export hf "$M" -o /proc/liandan-x

# 1c: a fresh run into a used run directory is refused; resume before the first checkpoint
# starts over (said so) and leaves one metrics line per step
cp "$T/run/metrics.jsonl" "$T/metrics.good"
expect_error "already holds a training run" "$BIN" pretrain "$T/run.json"
cmp -s "$T/run/metrics.jsonl" "$T/metrics.good" || fail "a refused run changed metrics.jsonl"
rm -rf "$T/run/checkpoints"/* # as if killed before its first checkpoint
"$BIN" pretrain "$T/run.json" --resume >"$T/log" 2>&1 || { cat "$T/log"; fail "pretrain --resume without a checkpoint"; }
grep -q "no checkpoint in .*: starting from step 0" "$T/log" || { cat "$T/log"; fail "resume did not say it starts over"; }
[ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 2 ] || fail "metrics.jsonl has $(grep -c '"step"' "$T/run/metrics.jsonl") lines for 2 steps"
! ls -d "$T"/run/model.tmp* "$T"/run/checkpoints/*.tmp* >/dev/null 2>&1 || fail "training left temporary directories"
echo "1 passed, 0 failed"
