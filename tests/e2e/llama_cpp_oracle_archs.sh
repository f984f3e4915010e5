#!/usr/bin/env bash
# llama_cpp_oracle_archs.sh — every architecture against llama.cpp (the node-llama-cpp oracle), both
# ways, on small random-weight models (a few training steps from liandan's initialisation):
#   - liandan writes the model as an F32 GGUF; llama.cpp's greedy tokens equal liandan's on
#     every prompt;
#   - llama.cpp writes the file (its own quantizer, llama_model_quantize, copying to F32 and to
#     Q8_0); liandan runs llama.cpp's F32 file with the same greedy tokens on every prompt, and
#     its Q8_0 file with the same tokens on most (quantized activations round differently);
#   - the model directory gives the same tokens as its GGUF read in place.
# Families: llama (head_dim != hidden/heads), qwen2, qwen3 (q/k norms), gemma2 (GeGLU,
# sandwich norms, soft-caps, a sliding window shorter than the prompts), phi3 (fused
# projections), gpt2, llama with Llama-3, linear and YaRN RoPE scaling, mixtral (4 experts, 2 per
# token: llama.cpp's ffn_gate_inp and ffn_{gate,up,down}_exps) and qwen2moe (the same with softmax
# gates and a sigmoid-gated shared expert: ffn_*_shexp).
# ctest runs five families (gemma2, phi3, yarn, mixtral, qwen2moe: the ones with the most of their
# own code, about 4 min of CPU); LD_ARCHS=all runs every one (about 5 min of CPU), LD_ARCHS="llama qwen3" a list:
#   LD_ARCHS=all bash tests/e2e/llama_cpp_oracle_archs.sh
# Named e2e_llama_cpp_oracle_archs so that the quick runs that leave out the heavy oracles
# (-E e2e_llama_cpp_oracle) leave it out.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=llama_cpp_oracle_archs
source tests/e2e/lib.bash
ORACLE=tests/oracle/llama_cpp.mjs
LIB=tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.5.0.so
[ -f "$LIB" ] || fail "$LIB is missing: run scripts/setup.sh (npm ci)"
cc -O1 -o "$T/llama_quantize" tests/oracle/llama_quantize.c -ldl

head -n 2000 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
"$BIN" tokenizer train "$T/poems.tsv" --vocab-size 600 -o "$T/tok.json" 2>/dev/null
"$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.05 -o "$T/data" >/dev/null 2>&1
for p in "床前明月光，" "春眠不覺曉，" "白日依山盡，" "國破山河在，"; do
  "$BIN" tokenize --tokenizer "$T/tok.json" "$p" 2>/dev/null | tr ' ' ','
done >"$T/prompts"

# name model-json: a model briefly trained from its random initialisation
make_model() {
  cat >"$T/$1.cfg.json" <<JSON
{ "model": $2, "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "val_data": "$T/data/val",
  "out_dir": "$T/$1.run", "batch_size": 4, "seq_len": 32, "max_steps": 3, "lr": 1e-3, "warmup_steps": 1,
  "eval_every": 3, "eval_batches": 1, "checkpoint_every": 1000, "sample_every": 0 }
JSON
  "$BIN" pretrain "$T/$1.cfg.json" --quiet >"$T/$1.log" 2>&1 || { cat "$T/$1.log"; fail "pretrain $1"; }
}
ours() { # model prompts -> greedy continuations, one line each (one process for all prompts)
  local args=()
  while read -r ids; do args+=("ids:$ids"); done <"$2"
  "$BIN" generate "$1" --ids --temperature 0 --max-tokens 16 "${args[@]}" 2>/dev/null | sed -n 's/^generated: *//p'
}
same_lines() { paste -d '|' "$1" "$2" | awk -F'|' '$1 == $2' | wc -l; }

COMMON='"vocab_size": 600, "max_position_embeddings": 64, "num_hidden_layers": 2, "initializer_range": 0.1'
declare -A MODELS=(
  [llama]="{\"model_type\": \"llama\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
           \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 24}"
  [qwen2]="{\"model_type\": \"qwen2\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
           \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"tie_word_embeddings\": false}"
  [qwen3]="{\"model_type\": \"qwen3\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
           \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 32, \"tie_word_embeddings\": true}"
  [gemma2]="{\"model_type\": \"gemma2\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
            \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 32, \"query_pre_attn_scalar\": 32,
            \"sliding_window\": 6, \"attn_logit_softcapping\": 5.0, \"final_logit_softcapping\": 3.0}"
  [phi3]="{\"model_type\": \"phi3\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
           \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"sliding_window\": 2047}"
  [gpt2]="{\"model_type\": \"gpt2\", \"vocab_size\": 600, \"n_embd\": 64, \"n_layer\": 2, \"n_head\": 4,
          \"n_positions\": 64, \"initializer_range\": 0.1}"
  [llama3rope]="{\"model_type\": \"llama\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
                \"num_attention_heads\": 4, \"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\",
                \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8}}"
  [linear]="{\"model_type\": \"llama\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
            \"num_attention_heads\": 4, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}}"
  [mixtral]="{\"model_type\": \"mixtral\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 48,
             \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_local_experts\": 4,
             \"num_experts_per_tok\": 2, \"tie_word_embeddings\": false}"
  [qwen2moe]="{\"model_type\": \"qwen2_moe\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
              \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_experts\": 4, \"num_experts_per_tok\": 2,
              \"moe_intermediate_size\": 32, \"shared_expert_intermediate_size\": 48, \"tie_word_embeddings\": false}"
  [yarn]="{\"model_type\": \"qwen2\", $COMMON, \"hidden_size\": 64, \"intermediate_size\": 96,
          \"num_attention_heads\": 4, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0,
          \"original_max_position_embeddings\": 16}}"
)
ALL="llama qwen2 qwen3 gemma2 phi3 gpt2 llama3rope linear yarn mixtral qwen2moe"
ARCHS=${LD_ARCHS:-gemma2 phi3 yarn mixtral qwen2moe}
[ "$ARCHS" = all ] && ARCHS=$ALL
for name in $ARCHS; do [ -n "${MODELS[$name]+x}" ] || fail "LD_ARCHS: no family '$name' (one of: $ALL, or all)"; done
# the files of every family first, then llama.cpp on all of them in one node process (each
# start of the package costs seconds: it tests its binary in a child process)
for name in $ARCHS; do
  make_model "$name" "${MODELS[$name]}"
  "$BIN" export gguf "$T/$name.run/model" -o "$T/$name.gguf" 2>/dev/null || fail "$name: export gguf"
  "$T/llama_quantize" "$LIB" "$T/$name.gguf" "$T/$name.lc32.gguf" 0 >/dev/null 2>&1 || fail "$name: llama.cpp F32 copy"
  "$T/llama_quantize" "$LIB" "$T/$name.gguf" "$T/$name.lc8.gguf" 7 >/dev/null 2>&1 || fail "$name: llama.cpp Q8_0"
  for f in "$name" "$name.lc32" "$name.lc8"; do echo "$T/$f.gguf $T/prompts $T/$f.lc"; done >>"$T/jobs"
done
node "$ORACLE" greedy-batch 16 "$T/jobs" || fail "llama.cpp greedy-batch"
total=0; agree=0
for name in $ARCHS; do
  M=$T/$name.run/model
  # liandan's file in llama.cpp
  ours "$T/$name.gguf" "$T/prompts" >"$T/$name.ld"
  [ "$(awk 'NF >= 8' "$T/$name.ld" | wc -l)" -ge 3 ] || { cat "$T/$name.ld"; fail "$name: continuations too short to compare"; }
  cmp -s "$T/$name.lc" "$T/$name.ld" || { paste "$T/$name.lc" "$T/$name.ld"; fail "$name: llama.cpp's greedy tokens differ on liandan's file"; }
  # the model directory computes what its GGUF does
  ours "$M" "$T/prompts" >"$T/$name.dir"
  cmp -s "$T/$name.dir" "$T/$name.ld" || { paste "$T/$name.dir" "$T/$name.ld"; fail "$name: directory and GGUF differ"; }
  # llama.cpp's files in liandan
  ours "$T/$name.lc32.gguf" "$T/prompts" >"$T/$name.lc32.ld"
  cmp -s "$T/$name.lc32.lc" "$T/$name.lc32.ld" || { paste "$T/$name.lc32.lc" "$T/$name.lc32.ld"; fail "$name: greedy tokens differ on llama.cpp's F32 file"; }
  ours "$T/$name.lc8.gguf" "$T/prompts" >"$T/$name.lc8.ld"
  n=$(wc -l <"$T/prompts"); s=$(same_lines "$T/$name.lc8.lc" "$T/$name.lc8.ld")
  total=$((total + n)); agree=$((agree + s))
  echo "llama_cpp_oracle_archs: $name: F32 both ways identical to llama.cpp; llama.cpp's Q8_0: $s of $n identical"
done
# quantized activations round differently in the two tools, and random weights have near-ties:
# most continuations agree (a broken Q8_0 path agrees on none)
[ $((agree * 2)) -ge "$total" ] || fail "llama.cpp's Q8_0 files: only $agree of $total continuations agree"
echo "llama_cpp_oracle_archs: ok"
