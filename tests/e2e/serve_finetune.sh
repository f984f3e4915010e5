#!/usr/bin/env bash
# serve_finetune.sh — fine-tuning as a service on a tiny model: files (multipart upload, JSONL
# errors naming the line, content addressing, list / get / content / delete), jobs (a LoRA job
# to succeeded, its events and checkpoints, the adapter registered and served as model
# "base:adapter" beside the base),
# a server killed mid-job and restarted (the job resumes and ends with the
# same final loss as an uninterrupted run), cancel, a worker that crashes (the job fails, the
# server stays up), and a table of bad requests.
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

# ---- bad job requests: a table of (status, substring, body) ----
while IFS='|' read -r want sub body; do
  expect "$want" "$sub" POST /v1/fine_tuning/jobs "${A[@]}" -d "$body"
done <<TABLE
404|model_not_found|{"model": "nope", "training_file": "$FILE"}
404|model_not_found|{"model": "../poet", "training_file": "$FILE"}
400|training_file|{"model": "poet"}
404|No such File|{"model": "poet", "training_file": "file-000000000000000000000000"}
400|method|{"model": "poet", "training_file": "$FILE", "method": "dpo"}
400|unknown key 'warp'|{"model": "poet", "training_file": "$FILE", "hyperparameters": {"warp": 9}}
400|positive number|{"model": "poet", "training_file": "$FILE", "hyperparameters": {"n_epochs": -1}}
400|suffix|{"model": "poet", "training_file": "$FILE", "suffix": "a/b"}
400|Unrecognized request argument|{"model": "poet", "training_file": "$FILE", "temperature": 1}
400|not a JSON object|[1]
TABLE
expect 404 "No such fine-tuning job" GET /v1/fine_tuning/jobs/ftjob-nope

# ---- a LoRA job to succeeded ----
HP='"hyperparameters": {"max_steps": 60, "batch_size": 2, "seq_len": 96, "checkpoint_every": 5, "learning_rate": 0.01}'
wait_status() { # job statuses... : polls until the job's status is one of them (60 s)
  local job=$1; shift
  for _ in $(seq 600); do
    call GET "/v1/fine_tuning/jobs/$job" >/dev/null
    local s; s=$(field status)
    for want in "$@"; do [ "$s" = "$want" ] && return 0; done
    sleep 0.1
  done
  cat "$T/body"; tail -n 20 "$T/serve.log"; fail "job $job did not reach $* (it is $(field status))"
}
final_loss() { # job: the final training loss its last event reports
  call GET "/v1/fine_tuning/jobs/$1/events?limit=1" >/dev/null
  field data.0.data.final_train_loss
}
expect 200 '"status":"validating_files"' POST /v1/fine_tuning/jobs "${A[@]}" \
  -d "{\"model\": \"poet\", \"training_file\": \"$FILE\", \"method\": {\"type\": \"lora\"}, \"suffix\": \"tang\", $HP}"
JOB=$(field id)
wait_status "$JOB" succeeded
MODEL=$(field fine_tuned_model)
[[ "$MODEL" == poet:ft-tang-* ]] || fail "fine_tuned_model '$MODEL'"
LOSS=$(final_loss "$JOB")
[ -n "$LOSS" ] || fail "no final loss in the events"
expect 200 '"type":"metrics"' GET "/v1/fine_tuning/jobs/$JOB/events?limit=100"
expect 200 "Step 60/60" GET "/v1/fine_tuning/jobs/$JOB/events?limit=100"
expect 200 '"step_number":60' GET "/v1/fine_tuning/jobs/$JOB/checkpoints"
expect 200 "\"id\":\"$JOB\"" GET /v1/fine_tuning/jobs
expect 409 "already succeeded" POST "/v1/fine_tuning/jobs/$JOB/cancel"
# the loss went down
call GET "/v1/fine_tuning/jobs/$JOB/events?limit=1000" >/dev/null
node -e 'const ev = JSON.parse(require("fs").readFileSync(process.argv[1])).data.filter((e) => e.type === "metrics").reverse();
  const first = ev[0].data.train_loss, last = ev[ev.length - 1].data.train_loss;
  if (!(last < first)) { console.error(`loss ${first} -> ${last}`, JSON.stringify(ev.slice(0, 3))); process.exit(1) }' "$T/body" || fail "the job's loss did not fall"

# ---- the adapter served as "base:adapter" beside the base ----
logprob() { # model: the log-probability of the first generated token (greedy)
  expect 200 '"logprobs"' POST /v1/completions "${A[@]}" \
    -d "{\"model\": \"$1\", \"prompt\": \"春\", \"max_tokens\": 1, \"temperature\": 0, \"logprobs\": 1}"
  field choices.0.logprobs.token_logprobs.0
}
LP_BASE=$(logprob poet)
LP_LORA=$(logprob "$MODEL")
[ -n "$LP_LORA" ] && [ "$LP_LORA" != "$LP_BASE" ] || fail "the adapter model gives the base's logprob ($LP_BASE, $LP_LORA)"
expect 200 '"content"' POST /v1/chat/completions "${A[@]}" -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"春晓\"}], \"max_tokens\": 8}"
expect 404 model_not_found POST /v1/chat/completions "${A[@]}" -d '{"model": "poet:nope", "messages": [{"role": "user", "content": "a"}]}'
expect 404 model_not_found POST /v1/chat/completions "${A[@]}" -d '{"model": "poet:../poet", "messages": [{"role": "user", "content": "a"}]}'
expect 404 model_not_found POST /v1/chat/completions "${A[@]}" -d '{"model": "nope:'"${MODEL#poet:}"'", "messages": [{"role": "user", "content": "a"}]}'

# ---- the server killed mid-job: the job resumes and ends at the same loss ----
# (LD_JOB_HOLD_STEP holds the worker after step 20, checkpointed, however fast the host trains)
kill "$PID"
wait "$PID" 2>/dev/null || true
LD_JOB_HOLD_STEP=20 start_server --models-dir "$T/models" --threads 1 --max-file 1
expect 200 '"status"' POST /v1/fine_tuning/jobs "${A[@]}" \
  -d "{\"model\": \"poet\", \"training_file\": \"$FILE\", \"method\": \"lora\", \"suffix\": \"again\", $HP}"
JOB2=$(field id)
for _ in $(seq 600); do # until the checkpoint of step 20
  call GET "/v1/fine_tuning/jobs/$JOB2/checkpoints" >/dev/null
  n=$(field data.0.step_number)
  [ "$n" = 20 ] && break
  sleep 0.1
done
[ "$n" = 20 ] || fail "job $JOB2 did not reach its checkpoint at step 20 (at '$n')"
wait_status "$JOB2" running
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
start_server --models-dir "$T/models" --threads 1 --max-file 1
wait_status "$JOB2" succeeded
[ "$(field attempts)" = 2 ] || fail "job $JOB2 ran $(field attempts) times, expected 2 (one restart)"
call GET "/v1/fine_tuning/jobs/$JOB2/events?limit=1000" >/dev/null
contains "resumes from its last checkpoint" <"$T/body" || fail "no resume event"
LOSS2=$(final_loss "$JOB2")
[ "$LOSS2" = "$LOSS" ] || fail "interrupted job's final loss $LOSS2 differs from the uninterrupted one's $LOSS"

# ---- cancel, and a worker that crashes ----
LONG='"hyperparameters": {"max_steps": 100000, "batch_size": 2, "seq_len": 96, "checkpoint_every": 1000}'
expect 200 '"status"' POST /v1/fine_tuning/jobs "${A[@]}" -d "{\"model\": \"poet\", \"training_file\": \"$FILE\", $LONG}"
JOB3=$(field id)
wait_status "$JOB3" running
sleep 0.5
expect 200 '"status":"cancelled"' POST "/v1/fine_tuning/jobs/$JOB3/cancel"
for _ in $(seq 100); do pgrep -f "job-worker.*$JOB3" >/dev/null || break; sleep 0.1; done
pgrep -f "job-worker.*$JOB3" >/dev/null && fail "the cancelled job's worker is still running"
expect 200 '"status"' POST /v1/fine_tuning/jobs "${A[@]}" -d "{\"model\": \"poet\", \"training_file\": \"$FILE\", $LONG}"
JOB4=$(field id)
wait_status "$JOB4" running
for _ in $(seq 100); do W=$(pgrep -f "job-worker.*$JOB4" || true); [ -n "$W" ] && break; sleep 0.1; done
[ -n "$W" ] || fail "no worker process for $JOB4"
kill -9 "$W"
wait_status "$JOB4" failed
[ "$(field error.message)" != "" ] && field error.message | contains "signal 9" || fail "the crash is not the job's error: $(cat "$T/body")"
expect 200 '"ok"' GET /health
echo "$NAME: ok (final loss $LOSS, restarted job $LOSS2)"
