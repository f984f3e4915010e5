#!/usr/bin/env bash
# encoder_cli.sh — the encoder end to end on real protein data: `liandan pretrain` with
# "objective": "mlm" (a tiny ESM-2-style model on 300 UniProt sequences, with a resume that
# continues at the saved step), the EsmForMaskedLM directory it writes, `eval mlm`, `fill-mask`,
# `embed` (JSON and .npy), `eval probe` (DeepLoc baselines and the model's probe; SS3 on layers
# 0 and 2 side by side; a layer the model lacks), `eval classify` (fine-tuning with a head), the GGUF
# export refusing esm, and errors for bad FASTA and a bad objective.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=encoder_cli
source tests/e2e/lib.bash

P="$DATA/protein"
awk '/^>/{n++} n<=300' "$P/uniprot_pretrain/uniprot_train.fasta" >"$T/train.fasta"
awk '/^>/{n++} n<=40' "$P/uniprot_pretrain/uniprot_valid.fasta" >"$T/valid.fasta"
cat >"$T/mlm.json" <<JSON
{ "objective": "mlm",
  "model": {"model_type": "esm", "vocab_size": 33, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 66,
            "position_embedding_type": "rotary", "token_dropout": true, "mask_token_id": 32, "pad_token_id": 1},
  "tokenizer": "esm", "train_data": "$T/train.fasta", "val_data": "$T/valid.fasta",
  "out_dir": "$T/run", "batch_size": 8, "seq_len": 64, "max_steps": 8, "lr": 2e-3,
  "warmup_steps": 2, "eval_every": 4, "eval_batches": 2, "checkpoint_every": 3 }
JSON
"$BIN" pretrain "$T/mlm.json" --max-steps 5 --quiet >"$T/p1.log" 2>&1 || { cat "$T/p1.log"; fail "pretrain mlm"; }
grep -q "esm encoder" "$T/p1.log" || { cat "$T/p1.log"; fail "pretrain should describe the encoder"; }
"$BIN" pretrain "$T/mlm.json" --resume --quiet >"$T/p2.log" 2>&1 || { cat "$T/p2.log"; fail "pretrain mlm --resume"; }
grep -q "resumed at step 5" "$T/p2.log" || { cat "$T/p2.log"; fail "mlm training did not resume at step 5"; }
[ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 8 ] || fail "metrics.jsonl should hold 8 steps"
grep -q '"val_loss"' "$T/run/metrics.jsonl" || fail "no validation loss in metrics.jsonl"
for f in config.json model.safetensors vocab.txt tokenizer_config.json special_tokens_map.json; do
  [ -f "$T/run/model/$f" ] || fail "the model directory lacks $f"
done
grep -q '"EsmForMaskedLM"' "$T/run/model/config.json" || fail "config.json should name EsmForMaskedLM"

"$BIN" eval mlm "$T/run/model" --data "$T/valid.fasta" --train "$T/train.fasta" >"$T/e.log" 2>&1 \
  || { cat "$T/e.log"; fail "eval mlm"; }
grep -q '"unigram_accuracy"' "$T/e.log" || { cat "$T/e.log"; fail "eval mlm should print the unigram baseline"; }
"$BIN" fill-mask "$T/run/model" "MKT<mask>LLV" --top 3 >"$T/f.log" 2>&1 || { cat "$T/f.log"; fail "fill-mask"; }
[ "$(grep -c '^  0\.' "$T/f.log")" -eq 3 ] || { cat "$T/f.log"; fail "fill-mask should print 3 candidates"; }
"$BIN" embed "$T/run/model" --text MKTAYIAKQR --text MLLV >"$T/emb.jsonl" 2>&1 || { cat "$T/emb.jsonl"; fail "embed"; }
[ "$(grep -c '"embedding"' "$T/emb.jsonl")" -eq 2 ] || fail "embed should print 2 embeddings"
"$BIN" embed "$T/run/model" --file "$T/valid.fasta" --npy "$T/v.npy" --pooling cls 2>/dev/null || fail "embed --npy"
head -c 6 "$T/v.npy" | contains NUMPY || fail "embed --npy should write a .npy file"
"$BIN" eval probe "$T/run/model" --task deeploc --data "$P/deeploc/deeploc_subset.tsv" --max-train 60 --max-test 30 \
  --max-len 64 --iters 30 >"$T/probe.log" 2>&1 || { cat "$T/probe.log"; fail "eval probe"; }
grep -q '"model": 0\.' "$T/probe.log" || { cat "$T/probe.log"; fail "eval probe should report the model's accuracy"; }
# several layers side by side (0 = the embeddings, 2 = the final states), and a layer the model lacks
"$BIN" eval probe "$T/run/model" --task ss3 --data "$P/flip_secondary_structure/ss3_sampled.tsv" --max-train 20 \
  --max-test 10 --max-len 64 --iters 30 --layers 0,2 >"$T/probe2.log" 2>&1 || { cat "$T/probe2.log"; fail "eval probe --layers 0,2"; }
grep -q '"model": 0\..*"layers": "0,2"' "$T/probe2.log" || { cat "$T/probe2.log"; fail "eval probe --layers should report the layers"; }
expect_error "--layers '3': want last, all or layer numbers 0..2" "$BIN" eval probe "$T/run/model" --task deeploc \
  --data "$P/deeploc/deeploc_subset.tsv" --layers 3
# fine-tuning for classification: membrane-bound (M) or soluble (S) from the first 40 residues
awk -F'\t' 'NR > 1 && ($3 == "M" || $3 == "S") {r[$3, c[$3]++] = $3 "\t" substr($6, 1, 40)}
  END {print "label\ttext_a"; for (i = 0; i < 48; i++) print r["M", i] "\n" r["S", i]}' "$P/deeploc/deeploc_subset.tsv" >"$T/mem.tsv"
head -n 65 "$T/mem.tsv" >"$T/mem_train.tsv"
{ head -n 1 "$T/mem.tsv"; tail -n 32 "$T/mem.tsv"; } >"$T/mem_test.tsv"
"$BIN" eval classify "$T/run/model" --train "$T/mem_train.tsv" --test "$T/mem_test.tsv" --seq-len 32 --epochs 2 \
  --lr 1e-3 >"$T/cls.log" 2>&1 || { cat "$T/cls.log"; fail "eval classify"; }
grep -q '"train": 64, "test": 32, "steps": 8, .*"accuracy": [01]\.' "$T/cls.log" || { cat "$T/cls.log"; fail "eval classify should report its run"; }
{ cat "$T/mem_test.tsv"; printf 'U\tMKV\n'; } >"$T/mem_bad.tsv"
expect_error "mem_bad.tsv:34: unknown label 'U'" "$BIN" eval classify "$T/run/model" --train "$T/mem_train.tsv" \
  --test "$T/mem_bad.tsv" --seq-len 32

expect_error "no architecture for esm" "$BIN" export gguf "$T/run/model" -o "$T/x.gguf"
printf '>a\nMK-V\n' >"$T/gap.fasta"
sed "s|$T/train.fasta|$T/gap.fasta|; s|$T/run|$T/run2|" "$T/mlm.json" >"$T/bad.json"
expect_error "gap.fasta:2:3: '-' is not an amino-acid letter" "$BIN" pretrain "$T/bad.json" --quiet
sed 's|"objective": "mlm"|"objective": "xlm"|' "$T/mlm.json" >"$T/bad2.json"
expect_error "objective 'xlm' is not clm" "$BIN" pretrain "$T/bad2.json" --quiet
# the shipped protein config parses and trains (one step)
"$BIN" pretrain configs/esm_small.json --max-steps 1 -o "$T/cfg" --quiet >"$T/c.log" 2>&1 \
  || { cat "$T/c.log"; fail "configs/esm_small.json"; }
[ -f "$T/cfg/model/config.json" ] || fail "configs/esm_small.json: no model written"
echo "$NAME: ok"
