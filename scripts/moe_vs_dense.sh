#!/usr/bin/env bash
# moe_vs_dense.sh — issue 17's MoE acceptance (docs/moe.md): a small mixture-of-experts model
# against the dense model of the same active compute, trained the same steps on the same
# zh_pretrain tokens, one thread each, side by side:
#   configs/zh_dense.json  qwen2, 4 layers x 128, SwiGLU MLP of width 384
#   configs/zh_moe.json    qwen2_moe, the same but the MLP: a shared expert of width 192 and
#                          16 routed experts of width 96, 2 per token (active width 384)
# Prints each run's validation loss every eval_every steps and the final one.
#   STEPS=N      steps of each run (default: the configs' max_steps, 800)
#   RUN=DIR      where the tokenizer, the token shards and both runs go (default runs/moe_vs_dense;
#                the configs name that directory, so another RUN rewrites their paths with --set)
#   BIN=PATH     the liandan binary (default build/liandan)
#   NICE=N       nice level of the two runs (default 15: a shared machine)
# Data: $LD_DATA_DIR/zh_pretrain, else ../shared/data/zh_pretrain beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/liandan}
RUN=${RUN:-runs/moe_vs_dense}
DATA=${LD_DATA_DIR:-../shared/data}/zh_pretrain
NICE=${NICE:-15}
[ -x "$BIN" ] || { echo "moe_vs_dense: no binary at $BIN (build first, or set BIN)" >&2; exit 1; }
[ -d "$DATA" ] || { echo "moe_vs_dense: no zh_pretrain data at $DATA (set LD_DATA_DIR)" >&2; exit 1; }
mkdir -p "$RUN"
[ -s "$RUN/tok.json" ] || "$BIN" tokenizer train "$DATA"/*.tsv --vocab-size 4000 -o "$RUN/tok.json" --threads 1
[ -s "$RUN/data/val-00000.bin" ] \
  || "$BIN" data prepare "$DATA"/*.tsv --tokenizer "$RUN/tok.json" --val-fraction 0.01 -o "$RUN/data" --threads 1
args=(--quiet --set "tokenizer=$RUN/tok.json" --set "train_data=$RUN/data/train" --set "val_data=$RUN/data/val")
# another length keeps the configs' proportions: warm-up 1/20, 4 evaluations, one checkpoint
[ -n "${STEPS:-}" ] && args+=(--max-steps "$STEPS" --set "warmup_steps=$((STEPS / 20))" \
  --set "eval_every=$((STEPS / 4))" --set "checkpoint_every=$STEPS")
for m in dense moe; do
  start=$(date +%s)
  ( nice -n "$NICE" "$BIN" pretrain "configs/zh_$m.json" --set "out_dir=$RUN/$m" "${args[@]}" >"$RUN/$m.log" 2>&1
    echo "wall_s $(( $(date +%s) - start ))" >>"$RUN/$m.log" ) &
done
wait
for m in dense moe; do
  echo "== $m ($(tail -1 "$RUN/$m.log"))"
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
    const v = lines.filter(o => "val_loss" in o);
    for (const o of v) console.log(`step ${o.step}\tval_loss ${o.val_loss.toFixed(4)}`);
  ' "$RUN/$m/metrics.jsonl"
done
