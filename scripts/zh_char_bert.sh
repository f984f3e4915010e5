#!/usr/bin/env bash
# zh_char_bert.sh — a Chinese character-level BERT (issue 15): masked-LM pretraining on
# zh_pretrain, then ChnSentiCorp, reported next to the causal LM's number (docs/encoder.md).
#   1. text: the last column of every zh_pretrain/*.tsv, SOURCE.md's hold-out (line % 50 == 0)
#      as validation; the vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK] and the 5,995 most frequent
#      characters of the training text (the model's vocab_size is 6,000),
#   2. pretraining: configs/zh_char_bert.json (bert, 4 layers x 256, character masking),
#   3. held-out masked-character accuracy against the unigram baseline (liandan eval mlm),
#   4. ChnSentiCorp (see the end of this file).
# Everything goes to runs/zh_char_bert/. ZH_BERT_STEPS=N shortens the pretraining (a smoke test);
# LD_THREADS (1) threads; run it again to resume an interrupted pretraining.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LD_BIN:-build/liandan}
DATA=${LD_DATA_DIR:-../shared/data}
OUT=runs/zh_char_bert
THREADS=${LD_THREADS:-1}
[ -d "$DATA/zh_pretrain" ] && [ -d "$DATA/zh_eval/chnsenticorp" ] ||
  { echo "zh_char_bert: $DATA/zh_pretrain or zh_eval/chnsenticorp is missing (set LD_DATA_DIR)" >&2; exit 1; }
mkdir -p "$OUT"
t0=$(date +%s)

echo "== 1/4 text and the character vocabulary"
if [ ! -s "$OUT/vocab.txt" ]; then
  : >"$OUT/train.txt.tmp"; : >"$OUT/val.txt.tmp"
  for f in "$DATA"/zh_pretrain/*.tsv; do
    awk -F'\t' -v tr="$OUT/train.txt.tmp" -v va="$OUT/val.txt.tmp" \
      'NF && $NF != "" { if (NR % 50 == 0) print $NF >> va; else print $NF >> tr }' "$f"
  done
  mv "$OUT/train.txt.tmp" "$OUT/train.txt" && mv "$OUT/val.txt.tmp" "$OUT/val.txt"
  { printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n'
    LC_ALL=C.UTF-8 grep -o '[^[:space:]]' "$OUT/train.txt" | LC_ALL=C sort | LC_ALL=C uniq -c |
      LC_ALL=C sort -k1,1nr -k2,2 | awk '$2 != "[PAD]" && $2 != "[UNK]" && n++ < 5995 {print $2}'
  } >"$OUT/vocab.txt.tmp"
  mv "$OUT/vocab.txt.tmp" "$OUT/vocab.txt"
fi
echo "$(wc -l <"$OUT/train.txt") training and $(wc -l <"$OUT/val.txt") validation documents, $(wc -l <"$OUT/vocab.txt") tokens"

echo "== 2/4 masked-LM pretraining (configs/zh_char_bert.json)"
EXTRA=()
[ -n "${ZH_BERT_STEPS:-}" ] && EXTRA+=(--max-steps "$ZH_BERT_STEPS")
"$BIN" pretrain configs/zh_char_bert.json --resume --threads "$THREADS" "${EXTRA[@]}"
t1=$(date +%s)

echo "== 3/4 held-out masked characters against the unigram baseline"
"$BIN" eval mlm "$OUT/model" --data "$OUT/val.txt" --train "$OUT/train.txt" --seq-len 128 --threads "$THREADS" |
  tee "$OUT/eval_mlm.json"

# The protocol of the causal LM's ChnSentiCorp row in docs/training.md: the first 1,600
# training reviews cut to 64 tokens, one epoch of 100 steps of 16, mean pooling, the first
# 600 test reviews; every weight trained (full fine-tuning).
echo "== 4/4 ChnSentiCorp: fine-tuning on 1,600 reviews (64 tokens, one epoch), 600 test reviews"
C="$DATA/zh_eval/chnsenticorp"
"$BIN" eval classify "$OUT/model" --train "$C/train.tsv" --test "$C/test.tsv" --max-train 1600 --max-test 600 \
  --seq-len 64 --batch-size 16 --epochs 1 --lr "${ZH_BERT_FT_LR:-3e-4}" --pooling mean --threads "$THREADS" |
  tee "$OUT/chnsenticorp.txt"
t2=$(date +%s)
echo "wall time: pretraining $((t1 - t0)) s, evaluation and fine-tuning $((t2 - t1)) s"
