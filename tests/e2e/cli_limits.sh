#!/usr/bin/env bash
# cli_limits.sh — the CLI never cuts input silently and never overruns a buffer: every prompt of
# a long --file is answered, every continuation is scored (more than any old cap, the best one
# last), >256 tokenizer training files all count, chat survives a 2 MB line, a line of exactly
# 1 MiB - 1 bytes and an empty line (also run under ASan by scripts/sanitize.sh), out-of-range
# numbers are refused, input with NUL bytes is never cut short, a truncated --val-data or a
# missing --corpus fails `eval poetry`, and scoring many continuations of a large-vocabulary
# model stays within a memory bound.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=cli_limits
source tests/e2e/lib.bash

tiny_data
tiny_model 300 "$T/run"
M=$T/run/model

# 1b: 70 prompts from a file give 70 answers (there was a cap of 64)
for i in $(seq 70); do echo "月$i"; done >"$T/prompts.txt"
"$BIN" generate "$M" --file "$T/prompts.txt" --no-stream --temperature 0 --max-tokens 2 --threads 1 >"$T/gen" 2>"$T/err" \
  || fail "generate --file: $(cat "$T/err")"
[ "$(wc -l <"$T/gen")" -eq 70 ] || fail "generate --file with 70 prompts printed $(wc -l <"$T/gen") lines"
head -n 1 "$T/gen" | contains '^月1' && tail -n 1 "$T/gen" | contains '^月70' || fail "generate --file: outputs out of order"

# 1b: 71 continuations, the best (one token, the others ten) last: it must be scored and starred
long=$(printf '春眠不覺曉處處聞啼鳥%.0s' 1)
{ printf '床前'; for i in $(seq 70); do printf '\t%s' "$long"; done; printf '\t月\n'; } >"$T/score.tsv"
"$BIN" score "$M" --file "$T/score.tsv" --threads 1 >"$T/score" || fail "score --file"
[ "$(grep -c $'\t' "$T/score")" -eq 71 ] || fail "score --file scored $(grep -c $'\t' "$T/score") of 71 continuations"
grep '^\*' "$T/score" | contains $'\t月$' || { cat "$T/score"; fail "score --file did not star the best (last) continuation"; }
args=(); for i in $(seq 70); do args+=(--continuation "$long"); done
"$BIN" score "$M" --context 床前 "${args[@]}" --continuation 月 --threads 1 >"$T/score2" || fail "score with 71 --continuation"
[ "$(grep -c $'\t' "$T/score2")" -eq 71 ] && grep '^\*' "$T/score2" | contains $'\t月$' || fail "score --continuation x71"

# 1b: input with a NUL byte is read whole or refused, never cut at the NUL (getdelim stopped
# there: tokenize encoded 2 of 5 bytes, generate --file dropped every prompt after it, score
# --file every field after it, all with exit 0); a directory is a read error, not empty input
[ "$(printf 'ab\0cd' | "$BIN" tokenize --tokenizer "$T/tok.json" - 2>/dev/null | wc -w)" -eq 5 ] \
  || fail "tokenize cut standard input at a NUL byte"
expect_error "cannot read" "$BIN" tokenize --tokenizer "$T/tok.json" --lines "$T"
printf '月1\n\0月2\n' >"$T/nul.txt"
expect_error "is NUL" "$BIN" generate "$M" --file "$T/nul.txt" --max-tokens 1
printf '床前\t月\0x\t光\n' >"$T/nul.tsv"
expect_error "nul.tsv:1: a NUL byte" "$BIN" score "$M" --file "$T/nul.tsv"

# 6: more than 256 training files all count (the last one alone holds 龘)
mkdir "$T/many"
for i in $(seq 300); do sed -n "$((i % 300 + 1))p" "$T/poems.tsv" >"$T/many/$i.tsv"; done
for i in $(seq 50); do printf 'x\t龘龘龘龘\n'; done >"$T/many/zzz.tsv"
"$BIN" tokenizer train "$T"/many/*.tsv --vocab-size 400 -o "$T/tok_many.json" 2>/dev/null || fail "tokenizer train with 301 files"
[ "$("$BIN" tokenize --tokenizer "$T/tok_many.json" 龘 2>/dev/null | wc -w)" -eq 1 ] \
  || fail "tokenizer train ignored files past the 256th (龘 was not learned)"

# 1: chat with a 2 MB line, a line of exactly 1,048,575 bytes, an empty line
awk 'BEGIN { for (i = 0; i < 120000; i++) printf "床前明月光，"; print "" }' >"$T/chat1"
head -c 1048575 /dev/zero | tr '\0' 'a' >"$T/chat2" && echo >>"$T/chat2"
{ cat "$T/chat1"; echo; cat "$T/chat2"; echo 月; } >"$T/chat_in"
"$BIN" chat "$M" --max-tokens 4 --threads 1 <"$T/chat_in" >"$T/chat_out" 2>"$T/chat_err" \
  || { tail -c 2000 "$T/chat_err"; fail "chat with a 2 MB line"; }
[ "$(grep -c '' "$T/chat_out")" -eq 4 ] || fail "chat answered $(grep -c '' "$T/chat_out") of 4 lines"
"$BIN" chat "$M" --max-tokens 64 </dev/null >/dev/null 2>"$T/err" && fail "chat with --max-tokens filling the context"
grep -q "leaves no room" "$T/err" || fail "chat --max-tokens 64: $(cat "$T/err")"

# 1f: numbers out of range are refused, naming the option
expect_error "--max-tokens: '9999999999999999999' is not an integer" "$BIN" generate "$M" x --max-tokens 9999999999999999999
expect_error "--top-p: 'nan' is not a number" "$BIN" generate "$M" x --top-p nan
expect_error "--temperature: '-1' is not a number" "$BIN" chat "$M" --temperature -1
expect_error "'1e39' is not a valid f32" "$BIN" gguf write "$T/g.gguf" --from "$M" --set x.y=f32:1e39 # was inf
[ ! -e "$T/g.gguf" ] || fail "gguf write wrote a file after a bad --set"

# 1b: eval poetry fails (not exit 0) on a truncated --val-data or a missing --corpus
mkdir "$T/bad" && cp "$T"/data/val-*.bin "$T/bad/"
for f in "$T"/bad/val-*.bin; do truncate -s -7 "$f"; done
expect_error "bad/val-" "$BIN" eval poetry "$M" --n 1 --max-tokens 2 --val-data "$T/bad/val"
expect_error "nowhere.tsv" "$BIN" eval poetry "$M" --n 1 --max-tokens 2 --corpus "$T/nowhere.tsv"
# ... and before sampling (it sampled every poem and printed their verdict first)
! grep -q "poems:" "$T/out" || fail "eval poetry sampled before reading --corpus"
expect_error "bad/val-" "$BIN" eval poetry "$M" --n 1 --max-tokens 2 --val-data "$T/bad/val"
! grep -q "poems:" "$T/out" || fail "eval poetry sampled before reading --val-data"

# 2: scoring many continuations of a 50k-vocabulary model stays within a memory bound (the
# logits of all continuations at once were 300 x ~30 tokens x 50k x 4 bytes, about 1.8 GB)
if [ -x /usr/bin/time ] && [ -z "${LD_SANITIZED:-}" ]; then
  tiny_model 50000 "$T/big"
  { printf '床前'; for i in $(seq 300); do printf '\t%s' "$long"; done; printf '\n'; } >"$T/big.tsv"
  /usr/bin/time -f '%M' -o "$T/rss" "$BIN" score "$T/big/model" --file "$T/big.tsv" --threads 1 >/dev/null \
    || fail "score (50k vocab)"
  rss=$(tail -n 1 "$T/rss")
  echo "score: $rss KB peak RSS"
  [ "$rss" -lt 300000 ] || fail "score used $rss KB (bound 300000 KB)"
fi
echo "1 passed, 0 failed"
