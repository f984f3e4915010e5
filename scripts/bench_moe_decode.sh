#!/usr/bin/env bash
# bench_moe_decode.sh — issue 17's MoE decode target: a Mixtral-shaped model with random
# weights (8 layers x 1024, 16 heads / 4 KV heads, 8 experts of width 1408, 2 per token,
# vocabulary 32,000 untied: 363 M parameters, 387 MB in Q8_0) written as a Q8_0 GGUF by
# `liandan init`, then `liandan bench infer` on it: decode at batch 1 against the read
# bandwidth over the bytes one token reads (ld_lm_session_weight_bytes counts 2/8 of the
# experts: 142 MB), warm and with the caches flushed before each step ("cold"), and prefill.
#   THREADS=N  threads of the bench (default 1)      REPS=N  repetitions (default 5)
#   TYPE=T     the GGUF's weight type (default q8_0)  BIN=PATH (default build/liandan)
# The model goes to runs/bench/ and is made once.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/liandan}
TYPE=${TYPE:-q8_0}
OUT=runs/bench
mkdir -p "$OUT"
cat >"$OUT/mixtral_363m.json" <<'JSON'
{"model_type": "mixtral", "vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 1408,
 "num_local_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 8, "num_attention_heads": 16,
 "num_key_value_heads": 4, "max_position_embeddings": 2048, "tie_word_embeddings": false}
JSON
# a byte-level tokenizer is enough for random weights (the model's vocabulary may be larger)
[ -s "$OUT/bytes_tok.json" ] || printf 'the quick brown fox jumps over the lazy dog\n' >"$OUT/tiny.txt"
[ -s "$OUT/bytes_tok.json" ] || "$BIN" tokenizer train "$OUT/tiny.txt" --vocab-size 300 -o "$OUT/bytes_tok.json" --min-frequency 1
MODEL="$OUT/mixtral_363m_$TYPE.gguf"
[ -s "$MODEL" ] || "$BIN" init "$OUT/mixtral_363m.json" -o "$MODEL" --tokenizer "$OUT/bytes_tok.json" --type "$TYPE"
uptime
"$BIN" bench infer --model "$MODEL" --threads "${THREADS:-1}" --reps "${REPS:-5}"
uptime
