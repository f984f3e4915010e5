#!/usr/bin/env bash
# serve_load.sh — load test of `liandan serve` (a benchmark, not part of `make test`):
#   scripts/serve_load.sh MODEL [SECONDS=120] [CLIENTS=64] [DROP=0.2]
#   scripts/serve_load.sh --make-model OUT.gguf     # a GPT-2-124M-shape Q8_0 file (random weights)
# Serves MODEL (a model directory or GGUF file) on loopback, runs CLIENTS concurrent streaming
# clients for SECONDS with a DROP share of requests aborted mid-stream (scripts/serve_load.mjs),
# then checks: no crash, every finished stream well formed, no sequence or KV page left in use
# once idle (pages kept for prefix reuse excepted), RSS flat after warm-up. Prints the load
# report (latency p50/p99, tokens/s) and the server's generated tokens/s from /metrics.
# Environment: LD_BIN (default build/liandan), LD_DATA_DIR (default ../shared/data), THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${LD_BIN:-build/liandan}
DATA=${LD_DATA_DIR:-../shared/data}
T=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "serve_load: $*" >&2; exit 1; }

if [ "${1:-}" = "--make-model" ]; then
  OUT=${2:?usage: serve_load.sh --make-model OUT.gguf}
  head -n 3000 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
  "$BIN" tokenizer train "$T/poems.tsv" --vocab-size 4000 -o "$T/tok.json" 2>/dev/null
  "$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.05 -o "$T/data" >/dev/null 2>&1
  cat >"$T/cfg.json" <<JSON
{ "model": {"model_type": "gpt2", "vocab_size": 50304, "n_embd": 768, "n_layer": 12, "n_head": 12,
            "n_positions": 1024},
  "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "val_data": "$T/data/val",
  "out_dir": "$T/run", "batch_size": 1, "seq_len": 32, "max_steps": 1, "lr": 1e-4, "eval_every": 100 }
JSON
  echo "serve_load: one training step of a GPT-2-124M-shape model (random weights)..." >&2
  "$BIN" pretrain "$T/cfg.json" >"$T/train.log" 2>&1 || { cat "$T/train.log"; fail "pretrain"; }
  "$BIN" quantize "$T/run/model" --type q8_0 -o "$OUT" >/dev/null 2>&1 || fail "quantize"
  echo "serve_load: wrote $OUT" >&2
  exit 0
fi

MODEL=${1:?usage: serve_load.sh MODEL [SECONDS] [CLIENTS] [DROP] | --make-model OUT.gguf}
SECS=${2:-120}
CLIENTS=${3:-64}
DROP=${4:-0.2}
mkdir -p "$T/models"
# a copy (hard link where it can): the server refuses symlinks out of its models directory
case "$MODEL" in
  *.gguf) ln "$MODEL" "$T/models/m.gguf" 2>/dev/null || cp "$MODEL" "$T/models/m.gguf" ;;
  *) cp -r "$MODEL" "$T/models/m" ;;
esac
"$BIN" serve --models-dir "$T/models" --port 0 --max-seqs 16 --max-queue 256 --context 256 \
  ${THREADS:+--threads $THREADS} >"$T/serve.log" 2>&1 &
PID=$!
for _ in $(seq 300); do grep -q "listening on" "$T/serve.log" && break; sleep 0.1; done
PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$T/serve.log")
[ -n "$PORT" ] || { cat "$T/serve.log"; fail "the server did not start"; }
URL=http://127.0.0.1:$PORT
metric() { curl -s "$URL/metrics" | sed -n "s/^$1{model=\"m\"} //p"; }
curl -sS -f "$URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model":"m","prompt":"床前明月光","max_tokens":4}' >/dev/null || { tail -5 "$T/serve.log"; fail "warm-up request"; }

# RSS every 2 s while the load runs
( while kill -0 "$PID" 2>/dev/null; do
    awk '/VmRSS/ {print $2}' "/proc/$PID/status" 2>/dev/null >>"$T/rss"; sleep 2
  done ) &
G0=$(metric liandan_generated_tokens_total)
T0=$(date +%s.%N)
node scripts/serve_load.mjs "$URL" m "$CLIENTS" "$SECS" "$DROP" >"$T/report.json" || fail "the load client failed"
T1=$(date +%s.%N)
G1=$(metric liandan_generated_tokens_total)
kill -0 "$PID" 2>/dev/null || { tail -20 "$T/serve.log"; fail "the server died"; }
cat "$T/report.json"
grep -q '"malformed":0,' "$T/report.json" || fail "malformed streams"
grep -q '"errors":0,' "$T/report.json" || fail "requests failed"

# idle: nothing in flight, no page held for a request
for _ in $(seq 100); do [ "$(metric liandan_active_sequences)" = 0 ] && break; sleep 0.2; done
ACTIVE=$(metric liandan_active_sequences) QUEUED=$(metric liandan_queue_requests)
USED=$(metric liandan_kv_pages_used) CACHED=$(metric liandan_kv_pages_cached)
echo "idle: active $ACTIVE, queued $QUEUED, KV pages used $USED of which $CACHED hold finished sequences for prefix reuse"
[ "$ACTIVE" = 0 ] && [ "$QUEUED" = 0 ] && [ "$USED" = "$CACHED" ] || fail "sequences or pages left in use"
awk -v g0="$G0" -v g1="$G1" -v t0="$T0" -v t1="$T1" \
  'BEGIN { printf "server: %d tokens generated in %.1f s = %.1f tokens/s\n", g1 - g0, t1 - t0, (g1 - g0) / (t1 - t0) }'

# RSS after warm-up (the first quarter of the samples left out): flat within 10 %
awk '{ r[NR] = $1 } END {
  s = int(NR / 4) + 1; lo = r[s]; hi = r[s]
  for (i = s; i <= NR; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
  printf "RSS after warm-up: %.0f..%.0f MB over %d samples (%+.1f %%)\n", lo / 1024, hi / 1024, NR - s + 1, 100 * (hi - lo) / lo
  exit (hi - lo > 0.1 * lo) }' "$T/rss" || fail "RSS grew by more than 10 % after warm-up"
kill -TERM "$PID"
wait "$PID" || fail "the server did not stop cleanly"
PID=
echo "serve_load: ok"
