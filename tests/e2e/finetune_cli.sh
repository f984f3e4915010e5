#!/usr/bin/env bash
# finetune_cli.sh — `liandan finetune` end to end on real data: a tiny base pretrained on
# poems, then LoRA with a classification head on ChnSentiCorp rows (with a cancel-free resume
# check through --max-steps), full fine-tuning, prompt tuning, chat and text data; the PEFT
# files it writes; two continual stages and `eval forgetting`; and errors that name the config
# key or the file and line.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=finetune_cli
source tests/e2e/lib.bash

head -n 1500 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
head -n 201 "$DATA/zh_eval/chnsenticorp/train.tsv" >"$T/senti.tsv"
head -n 41 "$DATA/zh_eval/chnsenticorp/dev.tsv" >"$T/dev.tsv"
cut -f2 "$T/senti.tsv" >>"$T/poems.tsv"
"$BIN" tokenizer train "$T/poems.tsv" --vocab-size 800 -o "$T/tok.json" 2>/dev/null
"$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.05 -o "$T/data" >/dev/null 2>&1
cat >"$T/base.json" <<JSON
{ "model": {"model_type": "llama", "vocab_size": 800, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 48, "tie_word_embeddings": true},
  "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "out_dir": "$T/base",
  "batch_size": 4, "seq_len": 32, "max_steps": 8, "lr": 3e-3, "warmup_steps": 1, "eval_every": 0 }
JSON
"$BIN" pretrain "$T/base.json" --quiet >"$T/p.log" 2>&1 || { cat "$T/p.log"; fail "pretrain the base"; }

"$BIN" finetune --help | contains '"method"' || fail "finetune --help"
cat >"$T/ft.json" <<JSON
{ "base": "$T/base/model", "method": "lora", "out_dir": "$T/lora",
  "lora": {"rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
  "data": {"format": "classification", "train": "$T/senti.tsv", "val": "$T/dev.tsv", "text_field": "text_a"},
  "batch_size": 4, "seq_len": 24, "max_steps": 6, "lr": 3e-3, "eval_every": 3, "checkpoint_every": 2 }
JSON
"$BIN" finetune "$T/ft.json" --max-steps 4 >"$T/l1.log" 2>&1 || { cat "$T/l1.log"; fail "finetune lora"; }
grep -q "fine-tuning $T/base/model (base) | lora |" "$T/l1.log" || { cat "$T/l1.log"; fail "finetune should say what it trains"; }
grep -q "classification over 2 labels" "$T/l1.log" && grep -q "val accuracy" "$T/l1.log" \
  || { cat "$T/l1.log"; fail "classification should report validation accuracy"; }
"$BIN" finetune "$T/ft.json" --resume >"$T/l2.log" 2>&1 || { cat "$T/l2.log"; fail "finetune --resume"; }
grep -q "resumed at step 4" "$T/l2.log" || { cat "$T/l2.log"; fail "finetune did not resume at step 4"; }
[ "$(grep -c '"step"' "$T/lora/metrics.jsonl")" -eq 6 ] || fail "metrics.jsonl should hold 6 steps"
for f in adapter_config.json adapter_model.safetensors; do [ -f "$T/lora/adapter/$f" ] || fail "adapter lacks $f"; done
[ ! -e "$T/lora/model" ] || fail "LoRA should not write a model copy"
[ ! -e "$T/lora/checkpoints/step-0000006/model.safetensors" ] || fail "LoRA checkpoints should not copy the frozen base"
grep -q '"peft_type":[[:space:]]*"LORA"' "$T/lora/adapter/adapter_config.json" || fail "PEFT config"
"$BIN" inspect "$T/lora/adapter/adapter_model.safetensors" 2>&1 \
  | contains "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" || fail "PEFT tensor names"

# full fine-tuning with a head, prompt tuning with per-layer prompts, chat and text data
"$BIN" finetune "$T/ft.json" --method full -o "$T/full" --max-steps 2 --quiet >"$T/f.log" 2>&1 || { cat "$T/f.log"; fail "full"; }
[ -f "$T/full/model/model.safetensors" ] && [ -f "$T/full/adapter/adapter_model.safetensors" ] || fail "full writes model and head"
"$BIN" finetune "$T/ft.json" --method prompt --set prompt.virtual_tokens=4 --set prompt.per_layer=true -o "$T/prompt" \
  --max-steps 2 --quiet >"$T/pr.log" 2>&1 || { cat "$T/pr.log"; fail "prompt tuning"; }
grep -q '"PROMPT_TUNING"' "$T/prompt/adapter/adapter_config.json" || fail "prompt adapter config"
printf '{"messages": [{"role": "user", "content": "床前"}, {"role": "assistant", "content": "明月光"}]}\n%.0s' 1 2 3 4 5 6 >"$T/chat.jsonl"
cat >"$T/chat.json" <<JSON
{ "base": "$T/base/model", "method": "lora", "out_dir": "$T/chat", "data": {"format": "chat", "train": "$T/chat.jsonl", "val_fraction": 0},
  "batch_size": 2, "seq_len": 32, "max_steps": 2, "eval_every": 0 }
JSON
"$BIN" finetune "$T/chat.json" --quiet >"$T/c.log" 2>&1 || { cat "$T/c.log"; fail "chat"; }
cat >"$T/text.json" <<JSON
{ "base": "$T/base/model", "out_dir": "$T/text", "data": {"format": "text", "train": "$T/poems.tsv"},
  "batch_size": 2, "seq_len": 32, "max_steps": 2, "eval_every": 2, "eval_batches": 1 }
JSON
"$BIN" finetune "$T/text.json" >"$T/t.log" 2>&1 || { cat "$T/t.log"; fail "text"; }
grep -q "val loss" "$T/t.log" || fail "text fine-tuning should validate on a held-out split"
"$BIN" generate "$T/text/model" "床前" --max-tokens 4 >/dev/null 2>&1 || fail "generate with the fine-tuned model"

# QLoRA: a Q8_0 GGUF base is read in place under the adapter and stays quantized; the LoRA
# then merges into an F32 copy for generation
"$BIN" quantize "$T/base/model" --type q8_0 -o "$T/base.q8_0.gguf" >/dev/null 2>&1 || fail "quantize the base"
"$BIN" finetune "$T/ft.json" --base "$T/base.q8_0.gguf" -o "$T/qlora" --max-steps 2 >"$T/q.log" 2>&1 \
  || { cat "$T/q.log"; fail "QLoRA"; }
grep -q "(quantized base, kept quantized) | lora" "$T/q.log" || { cat "$T/q.log"; fail "QLoRA should keep the base quantized"; }
"$BIN" generate "$T/base.q8_0.gguf" "床前" --adapter "$T/qlora/adapter" --max-tokens 4 >/dev/null 2>&1 \
  || fail "generate --adapter on the GGUF base"

# continual learning: two stages, then eval forgetting prints the matrix and writes the report
# (it aborted in free() after printing nothing: the config text was ld_alloc'd)
cat >"$T/cl.json" <<JSON
{ "base": "$T/base/model", "out_dir": "$T/cl", "data": {"format": "text", "val_fraction": 0.2},
  "batch_size": 2, "seq_len": 16, "max_steps": 2, "eval_every": 0, "eval_batches": 1, "continual": {"replay": 0.5},
  "stages": [{"name": "poems", "data": {"train": "$T/poems.tsv"}},
             {"name": "senti", "data": {"train": "$T/senti.tsv", "text_field": "text_a"}}] }
JSON
"$BIN" finetune "$T/cl.json" --quiet >"$T/cl.log" 2>&1 || { cat "$T/cl.log"; fail "two stages"; }
"$BIN" eval forgetting "$T/cl.json" --threads 1 -o "$T/forget.json" >"$T/fg.log" 2>&1 || { cat "$T/fg.log"; fail "eval forgetting"; }
grep -q "| after senti |" "$T/fg.log" && grep -q "^BWT" "$T/fg.log" || { cat "$T/fg.log"; fail "eval forgetting should print the matrix and BWT"; }
grep -q '"bwt"' "$T/forget.json" || fail "eval forgetting -o should write the report"

# errors that name the key, or the file and line
expect_error "'base' (the pretrained model) is required" "$BIN" finetune "$T/ft.json" --set base= -o "$T/e1"
expect_error "--method: 'qlora' is not one of full, lora, prompt" "$BIN" finetune "$T/ft.json" --method qlora -o "$T/e2"
expect_error "LoRA targets 'nothing' match no matrix" "$BIN" finetune "$T/ft.json" --set lora.targets=nothing -o "$T/e3"
{ head -n 3 "$T/dev.tsv"; printf 'maybe\t还行\n'; } >"$T/badlabel.tsv"
expect_error "badlabel.tsv:4: unknown label 'maybe'" "$BIN" finetune "$T/ft.json" --set data.val="$T/badlabel.tsv" -o "$T/e4"
printf '{"text": "ok", "label": 1}\n{"text": "broken"\n' >"$T/bad.jsonl"
expect_error "bad.jsonl:2: not a JSON object" "$BIN" finetune "$T/ft.json" --set data.train="$T/bad.jsonl" --set data.text_field=text -o "$T/e5"
expect_error "seq_len 48 plus the prompt's virtual tokens exceeds the base model's max_position 48" \
  "$BIN" finetune "$T/ft.json" --method prompt --set seq_len=48 -o "$T/e6"
echo "1 passed, 0 failed"
