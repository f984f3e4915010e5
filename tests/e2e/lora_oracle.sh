#!/usr/bin/env bash
# lora_oracle.sh — a LoRA adapter trained here, applied by llama.cpp itself (node-llama-cpp):
# for a llama (q/k rows in llama.cpp's RoPE order), a gpt2 (fused c_attn) and a phi3 (fused
# qkv_proj and gate_up_proj) base,
# `liandan export lora-gguf` writes the adapter, llama.cpp loads the base GGUF with it, and
# its greedy tokens equal liandan's with the adapter merged (`generate --adapter`); they
# also differ from the base's, so the adapter is really applied. Also `export gguf --adapter`
# (a merged GGUF) gives the same tokens in llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=lora_oracle
source tests/e2e/lib.bash
ORACLE=tests/oracle/llama_cpp.mjs
LIB=tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.5.0.so
[ -f "$LIB" ] || fail "$LIB is missing: run scripts/setup.sh (npm ci)"

head -n 1500 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
# the adapter learns one quatrain, so its greedy tokens differ from the base's (lr 3e-2 with
# alpha/rank = 8 diverged on these 64-wide bases: gpt2's loss rose 5.7 -> 6.7; 1e-2 for 40 steps learns)
for i in $(seq 40); do echo "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"; done >"$T/quatrain.txt"
"$BIN" tokenizer train "$T/poems.tsv" --vocab-size 700 -o "$T/tok.json" 2>/dev/null
"$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.05 -o "$T/data" >/dev/null 2>&1
pretrain() { # name model-json
  cat >"$T/$1.json" <<JSON
{ "model": $2, "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "out_dir": "$T/$1",
  "batch_size": 8, "seq_len": 48, "max_steps": 30, "lr": 3e-3, "warmup_steps": 5, "eval_every": 0 }
JSON
  "$BIN" pretrain "$T/$1.json" --quiet >"$T/$1.log" 2>&1 || { cat "$T/$1.log"; fail "pretrain $1"; }
}
pretrain llama '{"model_type": "llama", "vocab_size": 704, "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
  "tie_word_embeddings": true}'
pretrain gpt2 '{"model_type": "gpt2", "vocab_size": 704, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64}'
pretrain phi3 '{"model_type": "phi3", "vocab_size": 704, "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 64,
  "sliding_window": 2047}'

prompts() {
  for p in "床前明月光，" "春眠不覺曉，" "國破山河在，"; do
    "$BIN" tokenize --tokenizer "$T/tok.json" "$p" 2>/dev/null | tr ' ' ','
  done
}
prompts >"$T/prompts.txt"
ours() { # model [adapter] -> greedy ids per prompt
  while read -r ids; do
    "$BIN" generate "$1" ${2:+--adapter "$2"} --ids --temperature 0 --max-tokens 10 "ids:$ids" 2>/dev/null \
      | sed -n 's/^generated: *//p'
  done <"$T/prompts.txt"
}
for name in llama gpt2 phi3; do
  targets='["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]'
  [ "$name" = gpt2 ] && targets='["c_attn", "c_proj"]'
  [ "$name" = phi3 ] && targets='["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]'
  cat >"$T/$name.ft.json" <<JSON
{ "base": "$T/$name/model", "method": "lora", "out_dir": "$T/$name.lora", "lora": {"rank": 4, "alpha": 32, "targets": $targets},
  "data": {"format": "text", "train": "$T/quatrain.txt", "val_fraction": 0}, "batch_size": 8, "seq_len": 48,
  "max_steps": 40, "lr": 1e-2, "warmup_steps": 2, "eval_every": 0 }
JSON
  "$BIN" finetune "$T/$name.ft.json" --quiet >"$T/$name.ft.log" 2>&1 || { cat "$T/$name.ft.log"; fail "finetune $name"; }
  A=$T/$name.lora/adapter
  "$BIN" export gguf "$T/$name/model" -o "$T/$name.gguf" >/dev/null 2>&1 || fail "export $name"
  "$BIN" export lora-gguf "$A" --base "$T/$name/model" -o "$T/$name.lora.gguf" >"$T/x.log" 2>&1 || { cat "$T/x.log"; fail "export lora-gguf $name"; }
  "$BIN" export gguf "$T/$name/model" --adapter "$A" -o "$T/$name.merged.gguf" >/dev/null 2>&1 || fail "export merged $name"
  ours "$T/$name/model" >"$T/$name.base.ours"
  ours "$T/$name/model" "$A" >"$T/$name.lora.ours"
  node "$ORACLE" greedy "$T/$name.gguf" 10 "$T/prompts.txt" >"$T/$name.base.cpp" 2>"$T/err" || { cat "$T/err"; fail "llama.cpp base $name"; }
  LORA="$T/$name.lora.gguf" node "$ORACLE" greedy "$T/$name.gguf" 10 "$T/prompts.txt" >"$T/$name.lora.cpp" 2>"$T/err" \
    || { cat "$T/err"; fail "llama.cpp with the LoRA ($name)"; }
  node "$ORACLE" greedy "$T/$name.merged.gguf" 10 "$T/prompts.txt" >"$T/$name.merged.cpp" 2>"$T/err" || { cat "$T/err"; fail "llama.cpp merged $name"; }
  [ -s "$T/$name.lora.ours" ] || fail "$name: no tokens from liandan"
  cmp -s "$T/$name.base.ours" "$T/$name.base.cpp" || { paste "$T/$name.base.ours" "$T/$name.base.cpp"; fail "$name: base tokens differ"; }
  cmp -s "$T/$name.lora.ours" "$T/$name.lora.cpp" || { paste "$T/$name.lora.ours" "$T/$name.lora.cpp"; fail "$name: llama.cpp --lora differs from liandan --adapter"; }
  cmp -s "$T/$name.lora.ours" "$T/$name.merged.cpp" || { paste "$T/$name.lora.ours" "$T/$name.merged.cpp"; fail "$name: merged GGUF differs"; }
  ! cmp -s "$T/$name.lora.ours" "$T/$name.base.ours" || fail "$name: the adapter changes no greedy token (the test would prove nothing)"
  echo "$name: llama.cpp with the GGUF LoRA gives liandan's greedy tokens on $(wc -l <"$T/prompts.txt") prompts"
done
echo "1 passed, 0 failed"
