#!/usr/bin/env bash
# ui_chromium.sh — the web UI of `liandan serve` in headless Chromium (ui_chromium.mjs): catalogue,
# streamed chat in the playground, a dataset uploaded and a fine-tuning job started with its loss
# chart growing, errors shown. Screenshots go to $LD_UI_SHOTS when it is set
# (docs/images/serve_*.png: LD_UI_SHOTS=$PWD/docs/images bash tests/e2e/ui_chromium.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=ui_chromium
source tests/e2e/lib.bash
source tests/e2e/serve_lib.bash
[ -d tests/oracle/node_modules/playwright-core ] || fail "playwright-core is missing (run scripts/setup.sh)"
command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null || fail "chromium is missing (run scripts/setup.sh)"
mkdir -p "$T/models"
tiny_model "$T/models/poet"
head -n 40 "$T/poems.tsv" | awk -F'\t' '{ gsub(/"/, "", $1); gsub(/"/, "", $3);
  printf "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"%s\"}]}\n", $1, $3 }' \
  >"$T/train.jsonl"
# fine-tuning workers hold after step 5 while $T/hold exists: the page sees a running job's chart
touch "$T/hold"
LD_JOB_HOLD_STEP=5 LD_JOB_HOLD_FILE="$T/hold" start_server --models-dir "$T/models" --threads 1
KEY=$("$BIN" keys create ui --scope fine-tune --models-dir "$T/models" 2>/dev/null)
code=$(curl -s -o "$T/index" -w '%{http_code}' "$URL/") || fail "GET / failed (curl exit $?)"
grep -q "<title>liandan" "$T/index" || { head -c 300 "$T/index"; cat "$T/serve.log"; fail "GET / answered $code without the UI"; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/ui/nothing.js")" = 404 ] || fail "a missing UI file is not 404"
node tests/e2e/ui_chromium.mjs "$URL" "$KEY" poet "${LD_UI_SHOTS:-}" "$T/train.jsonl" "$T/hold" || fail "the UI in Chromium"
