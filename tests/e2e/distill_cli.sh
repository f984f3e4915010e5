#!/usr/bin/env bash
# distill_cli.sh — `liandan distill` end to end on real data: a tiny teacher trained by
# `liandan pretrain`, a smaller student distilled from it (with a resume), the student loaded
# by generate / eval ppl, and the errors for a missing teacher, a teacher with another
# tokenizer, alpha outside [0, 1] and a temperature <= 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=distill_cli
source tests/e2e/lib.bash

head -n 2000 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
"$BIN" tokenizer train "$T/poems.tsv" --vocab-size 1200 -o "$T/tok.json" 2>/dev/null
"$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/tok.json" --val-fraction 0.05 -o "$T/data" >/dev/null 2>&1
config() { # out_dir hidden layers -> a config on stdout
  cat <<JSON
{ "model": {"model_type": "llama", "vocab_size": 1200, "hidden_size": $2, "intermediate_size": $(($2 * 2)),
            "num_hidden_layers": $3, "num_attention_heads": 2, "max_position_embeddings": 32,
            "tie_word_embeddings": true},
  "tokenizer": "$T/tok.json", "train_data": "$T/data/train", "val_data": "$T/data/val",
  "out_dir": "$1", "batch_size": 4, "seq_len": 32, "max_steps": 10, "lr": 3e-3,
  "warmup_steps": 2, "eval_every": 5, "eval_batches": 2, "checkpoint_every": 4 }
JSON
}
config "$T/teacher" 48 2 >"$T/teacher.json"
config "$T/student" 24 1 >"$T/student.json"
"$BIN" pretrain "$T/teacher.json" --quiet >"$T/t.log" 2>&1 || { cat "$T/t.log"; fail "pretrain the teacher"; }

"$BIN" distill --help | contains "student-config" || fail "distill --help"
"$BIN" distill --teacher "$T/teacher/model" --student-config "$T/student.json" --max-steps 6 \
  --temperature 2 --alpha 0.7 >"$T/d1.log" 2>&1 || { cat "$T/d1.log"; fail "distill"; }
grep -q "distilling from $T/teacher/model" "$T/d1.log" && grep -q "temperature 2 | alpha 0.7" "$T/d1.log" \
  || { cat "$T/d1.log"; fail "distill should say what it distils from"; }
grep -q "val loss" "$T/d1.log" || { cat "$T/d1.log"; fail "distill should report a validation loss"; }
"$BIN" distill --teacher "$T/teacher/model" --student-config "$T/student.json" --temperature 2 --alpha 0.7 \
  --resume >"$T/d2.log" 2>&1 || { cat "$T/d2.log"; fail "distill --resume"; }
grep -q "resumed at step 6" "$T/d2.log" || { cat "$T/d2.log"; fail "distill did not resume at step 6"; }
[ "$(grep -c '"step"' "$T/student/metrics.jsonl")" -eq 10 ] || fail "metrics.jsonl should hold 10 steps"
for f in config.json model.safetensors tokenizer.json; do
  [ -f "$T/student/model/$f" ] || fail "student model directory lacks $f"
done
grep -q '"hidden_size":[[:space:]]*24,' "$T/student/model/config.json" || fail "the student is not the student config's model"
"$BIN" generate "$T/student/model" "床前" --max-tokens 6 --seed 1 >/dev/null 2>&1 || fail "generate with the student"
"$BIN" eval ppl "$T/student/model" --data "$T/poems.tsv" --max-windows 2 2>/dev/null | contains "bits/byte" \
  || fail "eval ppl with the student"


# a config without "tokenizer" takes the teacher's; -o places the run
sed 's#"tokenizer": "[^"]*", ##' "$T/student.json" >"$T/notok.json"
"$BIN" distill --teacher "$T/teacher/model" --student-config "$T/notok.json" --max-steps 2 -o "$T/s2" --quiet \
  >"$T/s2.log" 2>&1 || { cat "$T/s2.log"; fail "distill with the teacher's tokenizer"; }
[ -f "$T/s2/model/model.safetensors" ] && [ -f "$T/s2/model/tokenizer.json" ] || fail "-o should place the run"

# errors that name the problem
expect_error "could not load the teacher '$T/nowhere'" \
  "$BIN" distill --teacher "$T/nowhere" --student-config "$T/student.json" -o "$T/e1"
"$BIN" tokenizer train "$T/poems.tsv" --vocab-size 1000 -o "$T/tok2.json" 2>/dev/null
sed "s#$T/tok.json#$T/tok2.json#; s/\"vocab_size\": 1200/\"vocab_size\": 1000/" "$T/student.json" >"$T/other_tok.json"
expect_error "uses another tokenizer than the student's" \
  "$BIN" distill --teacher "$T/teacher/model" --student-config "$T/other_tok.json" -o "$T/e2"
sed 's/"vocab_size": 1200/"vocab_size": 1300/' "$T/student.json" >"$T/other_vocab.json"
expect_error "the teacher's vocab_size is 1200 but the student's is 1300" \
  "$BIN" distill --teacher "$T/teacher/model" --student-config "$T/other_vocab.json" -o "$T/e3"
expect_error "--alpha: '1.5' is not a number in \[0, 1\]" \
  "$BIN" distill --teacher "$T/teacher/model" --student-config "$T/student.json" --alpha 1.5
expect_error "--temperature: '0' is not a number in (0, 10000\]" \
  "$BIN" distill --teacher "$T/teacher/model" --student-config "$T/student.json" --temperature 0
expect_error "'temperature' must be greater than 0" \
  "$BIN" distill --teacher "$T/teacher/model" --student-config "$T/student.json" --set temperature=-1 -o "$T/e4"
expect_error "'alpha' must be a number in \[0, 1\]" \
  "$BIN" distill --teacher "$T/teacher/model" --student-config "$T/student.json" --set alpha=2 -o "$T/e5"
expect_error "distillation needs a teacher: give --teacher" "$BIN" distill --student-config "$T/student.json" -o "$T/e6"
expect_error "distil with \`liandan distill\`" "$BIN" pretrain "$T/student.json" --set teacher=x -o "$T/e7"
echo "1 passed, 0 failed"
