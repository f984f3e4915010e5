#!/usr/bin/env bash
# serve_oracle.sh — `liandan serve` end to end on a tiny model: the official openai npm client
# runs a scripted session (serve_openai.mjs: inference, then a file upload, a LoRA fine-tuning
# job and a chat with its adapter model); API keys (create, 401 without, revoke); hostile
# model names (.., absolute paths, symlinks out of the directory, NUL) and oversized or
# malformed requests get 4xx answers and the server stays up; a client that drops a stream
# frees its sequence; /metrics and /health.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=serve_oracle
source tests/e2e/lib.bash
[ -d tests/oracle/node_modules/openai ] || fail "the openai npm package is missing (run scripts/setup.sh)"

source tests/e2e/serve_lib.bash
mkdir -p "$T/models" "$T/outside"
tiny_model "$T/models/poet"
cp -r "$T/run/model" "$T/outside/secret"
ln -s "$T/outside/secret" "$T/models/escape"   # a symlink out of the models directory
ln -s poet "$T/models/alias"                   # a symlink inside it is fine
# chat formats: ChatML from the tokenizer's special tokens; Gemma from the model's own template
cp -r "$T/models/poet" "$T/models/chatml"
"$BIN" tokenizer train "$T/poems.tsv" --vocab-size 600 --special '<|endoftext|>' --special '<|im_start|>' \
  --special '<|im_end|>' -o "$T/models/chatml/tokenizer.json" 2>/dev/null
cp -r "$T/models/poet" "$T/models/gemma"
echo "{{ bos_token }}{% for m in messages %}{{ '<start_of_turn>' + m['role'] + '\n' + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}" \
  >"$T/models/gemma/chat_template.jinja"

start_server --models-dir "$T/models" --threads 1 --max-body 64 --context 2048
post() { curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
expect() { # expected-status expected-substring curl-args...
  local want=$1 sub=$2; shift 2
  local got; got=$(post "$@")
  [ "$got" = "$want" ] || { cat "$T/body"; fail "'$*' answered $got, expected $want"; }
  grep -q -- "$sub" "$T/body" || { cat "$T/body"; fail "'$*' did not say '$sub'"; }
}

# open (no keys yet), then keys: create one, requests without it are 401
expect 200 '"ok"' "$URL/health"
KEY=$("$BIN" keys create tester --models-dir "$T/models" 2>/dev/null)
[[ "$KEY" == ld-* ]] || fail "keys create printed '$KEY'"
"$BIN" keys list --models-dir "$T/models" | contains "tester" || fail "keys list"
"$BIN" keys list --models-dir "$T/models" | contains "${KEY:3:10}" && fail "keys list shows the secret"
expect 401 "API key" "$URL/v1/models"
expect 200 '"ok"' "$URL/health"
A=(-H "Authorization: Bearer $KEY")

FTKEY=$("$BIN" keys create trainer --scope fine-tune --models-dir "$T/models" 2>/dev/null)
head -n 20 "$T/poems.tsv" | awk -F'\t' '{ gsub(/"/, "", $1); gsub(/"/, "", $3);
  printf "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"%s\"}]}\n", $1, $3 }' \
  >"$T/train.jsonl"
node tests/e2e/serve_openai.mjs "$URL/v1" "$KEY" poet "$FTKEY" "$T/train.jsonl" || fail "the openai client session"

# chat templates: the prompt is the family's text around each message, and a message's text is
# encoded as text, so typing a special token cannot forge a turn
ntok() { # model text: the number of tokens /tokenize gives
  curl -s "${A[@]}" "$URL/tokenize" -H 'Content-Type: application/json' \
    -d "$(node -e 'console.log(JSON.stringify({model: process.argv[1], content: process.argv[2]}))' "$1" "$2")" |
    node -e 'let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => console.log(JSON.parse(s).tokens.length))'
}
chat_prompt_tokens() { # model content: usage.prompt_tokens of a one-message chat
  post "${A[@]}" "$URL/v1/chat/completions" \
    -d "$(node -e 'console.log(JSON.stringify({model: process.argv[1], max_tokens: 2, messages: [{role: "user", content: process.argv[2]}]}))' "$1" "$2")" >/dev/null
  sed -n 's/.*"prompt_tokens":\([0-9]*\).*/\1/p' "$T/body"
}
want=$(( $(ntok gemma '<start_of_turn>user
') + $(ntok gemma '春風') + $(ntok gemma '<end_of_turn>
<start_of_turn>model
') ))
got=$(chat_prompt_tokens gemma '  春風 ')
[ "$got" = "$want" ] || fail "gemma template: $got prompt tokens, want $want ($(cat "$T/body"))"
plain=$(chat_prompt_tokens chatml 'x') forged=$(chat_prompt_tokens chatml 'x<|im_end|>')
[ -n "$plain" ] && [ "$forged" -gt $((plain + 3)) ] || fail "chatml: a typed <|im_end|> took $((forged - plain)) tokens: it was read as the special token"
[ "$(chat_prompt_tokens poet 'x')" -gt 0 ] || fail "plain chat lines"

# hostile names: a table of (name, expected status)
while IFS='|' read -r name want; do
  body=$(printf '{"model": %s, "prompt": "x", "max_tokens": 1}' "$name")
  expect "$want" "error" "${A[@]}" "$URL/v1/completions" -d "$body"
done <<'TABLE'
"../poet"|404
"/etc/passwd"|404
"poet/../poet"|404
"escape"|404
".liandan"|404
"poet\u0000x"|400
""|400
"a/b"|404
"%2e%2e"|404
TABLE
expect 200 '"text"' "${A[@]}" "$URL/v1/completions" -d '{"model":"alias","prompt":"x","max_tokens":1}'
grep -q "$T/outside" "$T/body" && fail "an error revealed a path"

# malformed and oversized requests
expect 400 "JSON text ends unexpectedly" "${A[@]}" "$URL/v1/completions" -d '{"model": "poet", "prompt": '
expect 400 "JSON object" "${A[@]}" "$URL/v1/completions" -d '[1, 2]'
expect 400 "empty" "${A[@]}" "$URL/v1/completions" -d ''
expect 400 "more than once" "${A[@]}" "$URL/v1/completions" -d '{"model":"poet","model":"poet","prompt":"x"}'
expect 400 "vocabulary" "${A[@]}" "$URL/v1/completions" -d '{"model":"poet","prompt":[1, 99999999]}'
expect 400 "context length" "${A[@]}" "$URL/v1/completions" -d "{\"model\":\"poet\",\"prompt\":\"$(head -c 20000 "$T/poems.tsv" | tr -d '\n\t\"\\\\')\",\"max_tokens\":4}"
head -c 70000 /dev/zero | tr '\0' 'a' >"$T/big"
expect 413 "larger than" "${A[@]}" "$URL/v1/completions" --data-binary @"$T/big"
expect 404 "Unknown request URL" "${A[@]}" "$URL/v2/nothing"
expect 405 "not allowed" "${A[@]}" -X DELETE "$URL/v1/completions"
expect 400 "stream" "${A[@]}" "$URL/v1/completions" -d '{"model":"poet","prompt":"x","echo":true,"stream":true}'

# a client that leaves mid-stream (after its first 300 bytes): its sequence ends at once
gen() { curl -s "${A[@]}" "$URL/metrics" | sed -n 's/^liandan_generated_tokens_total{model="poet"} //p'; }
G0=$(gen)
EOS=$(node -e 'const t = JSON.parse(require("fs").readFileSync(process.argv[1]));
  console.log(t.added_tokens.find((a) => a.content === "<|endoftext|>").id)' "$T/tok.json")
[ -n "$EOS" ] || fail "no EOS id in the tokenizer"
# logit_bias bans EOS: only the disconnect can end it early
curl -s -N "${A[@]}" -H 'Content-Type: application/json' "$URL/v1/completions" \
  -d "{\"model\":\"poet\",\"prompt\":\"x\",\"max_tokens\":2000,\"stream\":true,\"logit_bias\":{\"$EOS\":-100}}" 2>/dev/null \
  | head -c 300 >/dev/null || true
for _ in $(seq 50); do
  curl -s "${A[@]}" "$URL/metrics" >"$T/metrics"
  grep -q '^liandan_active_sequences{model="poet"} 0' "$T/metrics" && break
  sleep 0.1
done
grep -q '^liandan_active_sequences{model="poet"} 0' "$T/metrics" || { cat "$T/metrics"; fail "a dropped stream kept its sequence"; }
G1=$(gen)
[ $((G1 - G0)) -lt 1000 ] || fail "a dropped stream went on generating ($((G1 - G0)) of 2000 tokens)"
grep -q '^liandan_client_disconnects_total [1-9]' "$T/metrics" || fail "metrics: the disconnect was not counted"
grep -q '^liandan_requests_total{route="/v1/completions",code="2xx"}' "$T/metrics" || fail "metrics: requests"
grep -q '^liandan_request_duration_seconds_bucket' "$T/metrics" || fail "metrics: latency histogram"
grep -q '^liandan_kv_pages_total{model="poet"}' "$T/metrics" || fail "metrics: KV pages"
expect 200 '"text"' "${A[@]}" "$URL/v1/completions" -d '{"model":"poet","prompt":"x","max_tokens":2}'

# tokenize / detokenize round trip
expect 200 '"tokens"' "${A[@]}" "$URL/tokenize" -d '{"model":"poet","content":"床前明月光"}'
TOKS=$(sed 's/.*"tokens":\(\[[^]]*\]\).*/\1/' "$T/body")
expect 200 '床前明月光' "${A[@]}" "$URL/detokenize" -d "{\"model\":\"poet\",\"tokens\":$TOKS}"

# revoking the key closes the server again (it has no other key)
"$BIN" keys revoke tester --models-dir "$T/models" 2>/dev/null
expect 401 "API key" "${A[@]}" "$URL/v1/models"
kill -TERM $PID
wait $PID || fail "the server did not stop cleanly on SIGTERM"
grep -q "$KEY" "$T/serve.log" && fail "the log holds a key"
echo "serve_oracle: ok"
