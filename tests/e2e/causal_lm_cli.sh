#!/usr/bin/env bash
# causal_lm_cli.sh — the causal-LM commands end to end on a tiny model and real data:
# tokenizer train -> data prepare -> pretrain (with a resume) -> generate / score / eval
# poetry / plot, plus the errors a user gets for broken configs, model directories and data.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=causal_lm_cli
source tests/e2e/lib.bash

head -n 3000 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
"$BIN" tokenizer train "$T/poems.tsv" --vocab-size 1500 -o "$T/tok.json" 2>/dev/null
"$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.05 -o "$T/data" >/dev/null 2>&1
cat >"$T/cfg.json" <<JSON
{ "model": {"model_type": "llama", "vocab_size": 1500, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
            "tie_word_embeddings": true},
  "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "val_data": "$T/data/val",
  "out_dir": "$T/run", "batch_size": 4, "seq_len": 32, "max_steps": 12, "lr": 3e-3,
  "warmup_steps": 2, "eval_every": 6, "eval_batches": 2, "checkpoint_every": 4,
  "sample_every": 12, "sample_prompts": ["月"], "sample_tokens": 8, "colour": "red" }
JSON
"$BIN" pretrain "$T/cfg.json" --max-steps 8 >"$T/train1.log" 2>&1 || { cat "$T/train1.log"; fail "pretrain"; }
grep -q "unknown key 'colour'" "$T/train1.log" || fail "no warning for an unknown config key"
"$BIN" pretrain "$T/cfg.json" --resume >"$T/train2.log" 2>&1 || { cat "$T/train2.log"; fail "pretrain --resume"; }
grep -q "resumed at step 8" "$T/train2.log" || { cat "$T/train2.log"; fail "did not resume at step 8"; }
[ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 12 ] || fail "metrics.jsonl should hold 12 steps"
[ -f "$T/run/model/config.json" ] && [ -f "$T/run/model/model.safetensors" ] && [ -f "$T/run/model/tokenizer.json" ] \
  && [ -f "$T/run/model/generation_config.json" ] || fail "model directory incomplete"

"$BIN" generate "$T/run/model" "床前" --max-tokens 12 --seed 3 >"$T/g1" 2>/dev/null
"$BIN" generate "$T/run/model" "床前" --max-tokens 12 --seed 3 >"$T/g2" 2>/dev/null
cmp -s "$T/g1" "$T/g2" || fail "generation with a seed is not reproducible"
grep -q "^床前" "$T/g1" || fail "generation does not start with the prompt"
"$BIN" generate "$T/run/model" "春" "秋" "山水" --no-stream --temperature 0 --max-tokens 6 >"$T/batch" 2>/dev/null
[ "$(wc -l <"$T/batch")" -eq 3 ] || fail "batched generation should print 3 lines"
"$BIN" generate "$T/run/model" "春" --quantize Q8_0 --max-tokens 4 >/dev/null 2>&1 || fail "generate --quantize"
"$BIN" generate "$T/run/model" "春" --cache-type-k q8_0 --cache-type-v f16 --temperature 0 --max-tokens 6 >"$T/kvq" 2>/dev/null ||
  fail "generate --cache-type-k q8_0 --cache-type-v f16"
[ -s "$T/kvq" ] || fail "generate with a Q8_0/F16 KV cache printed nothing"
expect_error "--cache-type-k: a KV cache holds f32, f16 or q8_0, not 'q4_k'" "$BIN" generate "$T/run/model" "春" --cache-type-k q4_k
"$BIN" score "$T/run/model" --context "床前明月" --continuation "光" --continuation "海" >"$T/score"
"$BIN" quantize "$T/run/model" --type q8_0 -o "$T/model.q8_0.gguf" >/dev/null 2>&1 || fail "quantize"
"$BIN" bench infer --model "$T/model.q8_0.gguf" --type F16 --reps 1 --threads 1 --json >"$T/bench" 2>&1
grep -q '"file decode batch 1' "$T/bench" && grep -q '"F16 prefill model FLOP/s' "$T/bench" \
  || { cat "$T/bench"; fail "bench infer --model FILE.gguf"; }
[ "$(grep -c '^\*' "$T/score")" -eq 1 ] || fail "score should mark one best continuation"
printf '月\n' | "$BIN" chat "$T/run/model" --max-tokens 5 >/dev/null 2>&1 || fail "chat"
"$BIN" eval poetry "$T/run/model" --n 4 --max-tokens 20 --val-data "$T/data/val" --corpus "$T/poems.tsv" >"$T/eval"
grep -q "regular" "$T/eval" && grep -q "validation loss" "$T/eval" && grep -q "unigram entropy" "$T/eval" \
  || { cat "$T/eval"; fail "eval poetry output"; }
"$BIN" plot "$T/run" >/dev/null && grep -q "<svg" "$T/run/loss.svg" || fail "plot"
"$BIN" eval ppl "$T/run/model" --data "$T/poems.tsv" --max-windows 4 2>/dev/null | contains "bits/byte" || fail "eval ppl"

# errors that name the problem
sed 's/"num_attention_heads": 2/"num_attention_heads": 3/' "$T/cfg.json" >"$T/bad1.json"
expect_error "not divisible by num_attention_heads" "$BIN" pretrain "$T/bad1.json" -o "$T/r1"
sed 's/"vocab_size": 1500/"vocab_size": 1000/' "$T/cfg.json" >"$T/bad2.json"
expect_error "tokenizer has 1500 tokens but the model's vocab_size is 1000" "$BIN" pretrain "$T/bad2.json" --output "$T/r2"
printf '{ "model": ' >"$T/bad3.json"
expect_error "bad3.json" "$BIN" pretrain "$T/bad3.json"
: >"$T/empty.tsv"
expect_error "empty.tsv" "$BIN" data prepare "$T/empty.tsv" --tokenizer "$T/tok.json" -o "$T/d2"
cp -r "$T/run/model" "$T/broken"
truncate -s -64 "$T/broken/model.safetensors"
expect_error "model.safetensors" "$BIN" generate "$T/broken" "x"
rm "$T/broken/model.safetensors"
expect_error "model.safetensors" "$BIN" score "$T/broken" --context a --continuation b
echo "1 passed, 0 failed"
