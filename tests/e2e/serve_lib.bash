# serve_lib.bash — sourced by the `liandan serve` end-to-end scripts after lib.bash (not a test
# itself): a tiny model made in a few seconds, and a server started on a free port.

# tiny_model DIR [max_position]: a byte-level BPE and two training steps of a 2-layer model.
tiny_model() {
  local out=$1 ctx=${2:-2048}
  head -n 400 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
  "$BIN" tokenizer train "$T/poems.tsv" --vocab-size 600 -o "$T/tok.json" 2>/dev/null
  "$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.05 -o "$T/data" >/dev/null 2>&1
  cat >"$T/cfg.json" <<JSON
{ "model": {"model_type": "llama", "vocab_size": 600, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": $ctx,
            "tie_word_embeddings": true},
  "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "val_data": "$T/data/val",
  "out_dir": "$T/run", "batch_size": 2, "seq_len": 16, "max_steps": 2, "lr": 1e-3, "eval_every": 100 }
JSON
  "$BIN" pretrain "$T/cfg.json" >"$T/train.log" 2>&1 || { cat "$T/train.log"; fail "pretrain"; }
  cp -r "$T/run/model" "$out"
}

# start_server ARGS...: runs `liandan serve ARGS --port 0` in the background; sets PID, PORT, URL
# and stops it on exit.
start_server() {
  : >"$T/serve.log" # emptied before the server starts: a restart must not find the last server's line
  "$BIN" serve "$@" --port 0 >"$T/serve.log" 2>&1 &
  PID=$!
  trap 'kill $PID 2>/dev/null || true; rm -rf "$T"' EXIT
  for _ in $(seq 200); do grep -q "listening on" "$T/serve.log" && break; sleep 0.1; done
  PORT=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$T/serve.log")
  [ -n "$PORT" ] || { cat "$T/serve.log"; fail "the server did not start"; }
  URL=http://127.0.0.1:$PORT
}
