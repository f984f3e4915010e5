#!/usr/bin/env bash
# demo.sh — the README's first command: trains a small Chinese poetry model from scratch and
# writes poems with it.
#   1. the corpus: regular Tang verse from the npm package chinese-poetry (MIT), fetched once
#      with npm into scripts/demo/node_modules (cached),
#   2. a byte-level BPE tokenizer trained on it, token shards with a validation split,
#   3. a Llama-style model (configs/poetry.json) trained for about ten minutes on 2 cores,
#   4. poems for a few opening lines, and the share of sampled poems that are regular verse.
# Everything goes to runs/poetry/. DEMO_STEPS=N shortens the run (e.g. for a smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=runs/poetry
BIN=build/liandan
mkdir -p "$RUN"

echo "== 1/5 corpus: chinese-poetry (npm) -> $RUN/poems.tsv"
if [ ! -d scripts/demo/node_modules/chinese-poetry ]; then
  (cd scripts/demo && npm ci --no-audit --no-fund --loglevel=error)
fi
[ -s "$RUN/poems.tsv" ] || node scripts/demo/poetry_corpus.mjs "$RUN/poems.tsv"

echo "== 2/5 tokenizer and token shards"
[ -s "$RUN/tokenizer.json" ] || "$BIN" tokenizer train "$RUN/poems.tsv" --vocab-size 6000 -o "$RUN/tokenizer.json"
[ -s "$RUN/data/train-00000.bin" ] || "$BIN" data prepare "$RUN/poems.tsv" --tokenizer "$RUN/tokenizer.json" \
  --val-fraction 0.01 -o "$RUN/data"

echo "== 3/5 training (Ctrl-C checkpoints; run again to resume)"
EXTRA=()
[ -n "${DEMO_STEPS:-}" ] && EXTRA+=(--max-steps "$DEMO_STEPS")
"$BIN" pretrain configs/poetry.json --resume "${EXTRA[@]}"

echo "== 4/5 poems"
for opening in "床前明月光，" "春眠不覺曉，" "白日依山盡，" "獨在異鄉為異客，"; do
  "$BIN" generate "$RUN/model" "$opening" --temperature 0.8 --max-tokens 60 --seed 7 2>/dev/null
done

echo "== 5/5 how regular are its poems?"
"$BIN" eval poetry "$RUN/model" --n 100 --temperature 0.8 --val-data "$RUN/data/val" --corpus "$RUN/poems.tsv"

cat <<MSG

Next:
  $BIN chat $RUN/model                      type an opening line, get a poem
  $BIN generate $RUN/model "山中" --top-k 20  more options: $BIN generate --help
  $BIN plot $RUN                             loss curves ($RUN/loss.svg)
  $BIN eval poetry $RUN/model --show         see which poems are regular
MSG
