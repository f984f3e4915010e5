#!/usr/bin/env bash
# serve_finetune.sh — fine-tuning as a service on a tiny model: files (multipart upload, JSONL
# errors naming the line, the size limit, content addressing, list / get / content / delete).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=serve_finetune
source tests/e2e/lib.bash
source tests/e2e/serve_lib.bash
mkdir -p "$T/models"
tiny_model "$T/models/poet"

# chat examples: a title asks for its poem
head -n 60 "$T/poems.tsv" | awk -F'\t' '{ gsub(/"/, "", $1); gsub(/"/, "", $3);
  printf "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", \"content\": \"%s\"}]}\n", $1, $3 }' \
  >"$T/train.jsonl"
printf '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n{"messages": [{"role": "user", "content": "x"}]}\n' \
  >"$T/bad.jsonl"

start_server --models-dir "$T/models" --threads 1 --max-file 1
A=(-H "Content-Type: application/json")
call() { # method path [curl args...] -> status; body in $T/body
  local m=$1 p=$2; shift 2
  curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$URL$p" "$@"
}
expect() { # status substring method path [curl args...]
  local want=$1 sub=$2; shift 2
  local got; got=$(call "$@")
  [ "$got" = "$want" ] || { cat "$T/body"; fail "'$*' answered $got, expected $want"; }
  grep -q -- "$sub" "$T/body" || { cat "$T/body"; fail "'$*' did not say '$sub'"; }
}
field() { node -e 'let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => {
  let v = JSON.parse(s); for (const k of process.argv[1].split(".")) v = v == null ? v : v[k]; console.log(v ?? "") })' "$1" <"$T/body"; }

# ---- files ----
expect 400 'line 2: the chat has no assistant message' POST /v1/files -F purpose=fine-tune -F "file=@$T/bad.jsonl"
expect 400 "purpose" POST /v1/files -F purpose=assistants -F "file=@$T/train.jsonl"
expect 400 "multipart" POST /v1/files "${A[@]}" -d '{"purpose": "fine-tune"}'
head -c 1100000 /dev/zero | tr '\0' 'x' >"$T/big.jsonl"
expect 413 "larger than" POST /v1/files -F purpose=fine-tune -F "file=@$T/big.jsonl"
expect 200 '"object":"file"' POST /v1/files -F purpose=fine-tune -F "file=@$T/train.jsonl"
FILE=$(field id)
[[ "$FILE" == file-* ]] || fail "file id '$FILE'"
[ "$(field sha256)" = "$(sha256sum "$T/train.jsonl" | cut -c1-64)" ] || fail "the file is not addressed by its sha256"
[ "$(field examples)" = 60 ] || fail "60 examples, the server counted $(field examples)"
expect 200 "\"id\":\"$FILE\"" POST /v1/files -F purpose=fine-tune -F "file=@$T/train.jsonl;filename=again.jsonl"
expect 200 "\"id\":\"$FILE\"" GET /v1/files
expect 200 "\"filename\":\"train.jsonl\"" GET "/v1/files/$FILE"
call GET "/v1/files/$FILE/content" >/dev/null
cmp -s "$T/body" "$T/train.jsonl" || fail "the file's content differs from the upload"
expect 404 "No such File" GET /v1/files/file-000000000000000000000000
expect 404 "not_found" GET "/v1/files/..%2F..%2Fetc%2Fpasswd"
printf '{"text": "a"}\n' >"$T/del.jsonl"
expect 200 '"object":"file"' POST /v1/files -F purpose=fine-tune -F "file=@$T/del.jsonl"
DEL=$(field id)
expect 200 '"deleted":true' DELETE "/v1/files/$DEL"
expect 404 "No such File" DELETE "/v1/files/$DEL"

echo "$NAME: ok"
