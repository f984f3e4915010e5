#!/usr/bin/env bash
# demo_finetune.sh — the demo's second act (`make demo-finetune`): adapt the poetry model
# `make demo` trained to a task it never saw — the sentiment of hotel, book and PC reviews
# (ChnSentiCorp) — with LoRA and a classification head (under 1 % of the weights train),
# then measure it and the untouched base with `liandan eval tasks`.
#   1. the poetry model (runs/poetry/model; `make demo` makes it when missing),
#   2. LoRA + head on 2,000 training reviews (configs/demo_finetune.json, a few minutes),
#   3. the report: the fine-tuned head on 600 test reviews, the base zero-shot by likelihood.
# Everything goes to runs/finetune/. DEMO_FT_STEPS=N shortens the run (e.g. for a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/liandan
DATA=${LD_DATA_DIR:-../shared/data}
[ -d "$DATA/zh_eval/chnsenticorp" ] || { echo "demo-finetune: $DATA/zh_eval/chnsenticorp is missing (set LD_DATA_DIR)" >&2; exit 1; }
if [ ! -f runs/poetry/model/model.safetensors ]; then
  echo "== 0/3 no poetry model yet: running the demo first"
  bash scripts/demo.sh
fi

echo "== 1/3 the base: runs/poetry/model ($(du -h runs/poetry/model/model.safetensors | cut -f1))"
echo "== 2/3 LoRA + classification head on ChnSentiCorp (Ctrl-C checkpoints; run again to resume)"
EXTRA=()
[ -n "${DEMO_FT_STEPS:-}" ] && EXTRA+=(--max-steps "$DEMO_FT_STEPS")
"$BIN" finetune configs/demo_finetune.json --resume --set data.train="$DATA/zh_eval/chnsenticorp/train.tsv" \
  --set data.val="$DATA/zh_eval/chnsenticorp/dev.tsv" "${EXTRA[@]}"

echo "== 3/3 the report (test reviews)"
"$BIN" eval tasks runs/poetry/model --adapter runs/finetune/adapter --tasks chnsenticorp --limit 600 \
  --data-dir "$DATA" -o runs/finetune/report.json
echo "the base model zero-shot (likelihood of 差评 / 好评 after each review, calibrated):"
"$BIN" eval tasks runs/poetry/model --tasks chnsenticorp --limit 600 --calibrate --data-dir "$DATA"

cat <<MSG

Next:
  $BIN finetune configs/demo_finetune.json --method full -o runs/finetune-full   every weight trains
  $BIN eval tasks runs/poetry/model --tasks tnews,ocnli,ccpm --limit 200         zero-shot on other tasks
  less runs/finetune/report.json                                                 the JSON report
MSG
