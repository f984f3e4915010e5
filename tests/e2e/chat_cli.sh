#!/usr/bin/env bash
# chat_cli.sh — chat templates and chat end to end:
#   - every template family renders conversations exactly as its Jinja template does under
#     @huggingface/jinja (the engine node-llama-cpp uses; tests/oracle/chat_template.mjs), for
#     the template texts in tests/oracle/chat_templates/ (each also recognised from its text);
#   - `chat` on a ChatML model directory (tokenizer_config.json) and a Llama-3 template GGUF
#     (tokenizer.chat_template) keeps its KV cache: turn 2 evaluates only the tokens the
#     conversation gained (--stats counts them);
#   - generate --chat, --chat-template overrides and the errors for unknown templates.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=chat_cli
source tests/e2e/lib.bash
TPL=tests/oracle/chat_templates
[ -d tests/oracle/node_modules/@huggingface/jinja ] || fail "tests/oracle/node_modules is missing: run scripts/setup.sh"

# ---- templates against the Jinja engine ----
cat >"$T/c1.json" <<'JSON'
[{"role": "user", "content": " Hi there \n"}, {"role": "assistant", "content": "Hello! "},
 {"role": "user", "content": "床前明月光，\n疑是地上霜。"}]
JSON
cat >"$T/c2.json" <<'JSON'
[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"},
 {"role": "assistant", "content": "\n  hello\t"}, {"role": "user", "content": "　全角空格　"}]
JSON
printf '[{"role": "user", "content": "one"}]' >"$T/c3.json"
n=0
for f in "$TPL"/*.jinja; do
  fam=$(basename "$f" .jinja)
  got=$("$BIN" chat-template "$f") || fail "$fam: not recognised"
  [ "$got" = "$fam" ] || fail "$f recognised as '$got'"
  for c in c1 c2 c3; do
    case "$fam/$c" in gemma/c2 | mistral/c2) continue ;; esac # their templates refuse system messages
    for flag in "" --no-generation-prompt; do
      node tests/oracle/chat_template.mjs "$f" "$T/$c.json" "<s>" "</s>" $flag >"$T/want" || fail "$fam $c: jinja"
      "$BIN" chat-template "$f" --messages "$T/$c.json" --bos "<s>" --eos "</s>" $flag >"$T/got" || fail "$fam $c: liandan"
      cmp -s "$T/want" "$T/got" || { diff "$T/want" "$T/got" | head; fail "$fam $c $flag: rendering differs from Jinja"; }
      n=$((n + 1))
    done
  done
done
echo "chat_cli: $n renderings identical to @huggingface/jinja"
printf '{{ "### Human: " + message }}' >"$T/odd.jinja"
expect_error "unknown chat template \"{{ \"### Human: \" + message }}\"" "$BIN" chat-template "$T/odd.jinja"
printf '[{"role": "tool", "content": "x"}]' >"$T/bad.json"
expect_error "role 'tool'" "$BIN" chat-template chatml --messages "$T/bad.json"

# ---- chat with KV reuse ----
head -n 2000 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
model() { # name specials... -> $T/name.run/model, a briefly trained model whose tokenizer has the specials
  local name=$1; shift
  local sp=()
  for s in "$@"; do sp+=(--special "$s"); done
  "$BIN" tokenizer train "$T/poems.tsv" --vocab-size 500 "${sp[@]}" -o "$T/$name.tok.json" 2>/dev/null
  "$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/$name.tok.json" --val-fraction 0.05 -o "$T/$name.data" >/dev/null 2>&1
  cat >"$T/$name.cfg.json" <<JSON
{ "model": {"model_type": "llama", "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 256},
  "tokenizer": "$T/$name.tok.json", "train_data": "$T/$name.data/train", "val_data": "$T/$name.data/val",
  "out_dir": "$T/$name.run", "batch_size": 4, "seq_len": 32, "max_steps": 2, "lr": 1e-3, "warmup_steps": 1,
  "eval_every": 2, "eval_batches": 1, "checkpoint_every": 1000, "sample_every": 0 }
JSON
  "$BIN" pretrain "$T/$name.cfg.json" --quiet >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; fail "pretrain $name"; }
}
check_reuse() { # label stats-file: turn 2 evaluates only what the conversation gained
  local p1 r2 p2 e2
  p1=$(sed -n 's/.*turn 1: \([0-9]*\) prompt tokens.*/\1/p' "$2")
  read -r p2 r2 e2 < <(sed -n 's/.*turn 2: \([0-9]*\) prompt tokens, \([0-9]*\) reused from the cache, \([0-9]*\) evaluated.*/\1 \2 \3/p' "$2")
  [ -n "$p1" ] && [ -n "$p2" ] || { cat "$2"; fail "$1: no --stats lines"; }
  [ "$r2" -ge "$p1" ] || { cat "$2"; fail "$1: turn 2 reused $r2 tokens, less than turn 1's prompt ($p1)"; }
  [ $((r2 + e2)) -eq "$p2" ] || { cat "$2"; fail "$1: reused + evaluated != prompt"; }
  [ $((e2 * 2)) -lt "$p2" ] || { cat "$2"; fail "$1: turn 2 evaluated $e2 of $p2 tokens"; }
  echo "chat_cli: $1: turn 2 evaluated $e2 new tokens of $p2 (reused $r2)"
}

model chatml "<|endoftext|>" "<|im_start|>" "<|im_end|>"
M=$T/chatml.run/model
printf '{"chat_template": "%s"}' "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\\\n' + message['content'] + '<|im_end|>' + '\\\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\\\n' }}{% endif %}" >"$M/tokenizer_config.json"
[ "$("$BIN" chat-template "$M")" = chatml ] || fail "the ChatML directory's template is not recognised"
printf 'The moon over the bed\nwhat comes next?\n' | "$BIN" chat "$M" --max-tokens 6 --temperature 0 --stats >"$T/chat.out" 2>"$T/chat.err" \
  || { cat "$T/chat.err"; fail "chat (ChatML)"; }
grep -q "template chatml" "$T/chat.err" || fail "chat did not say its template"
check_reuse ChatML "$T/chat.err"
if grep -q "<|im_start|>" "$T/chat.out"; then fail "the reply shows the template's markers"; fi

model llama3 "<|end_of_text|>" "<|begin_of_text|>" "<|start_header_id|>" "<|end_header_id|>" "<|eot_id|>"
M=$T/llama3.run/model
cp "$TPL/llama3.jinja" "$M/chat_template.jinja"
"$BIN" export gguf "$M" -o "$T/llama3.gguf" 2>/dev/null || fail "export gguf with a chat template"
[ "$("$BIN" chat-template "$T/llama3.gguf")" = llama3 ] || fail "the GGUF's tokenizer.chat_template is not recognised"
printf 'The moon over the bed\nwhat comes next?\n' | "$BIN" chat "$T/llama3.gguf" --max-tokens 6 --temperature 0 --stats --system "Be brief." \
  >"$T/chat3.out" 2>"$T/chat3.err" || { cat "$T/chat3.err"; fail "chat (Llama 3 GGUF)"; }
check_reuse Llama-3 "$T/chat3.err"

# ---- generate --chat and the errors ----
"$BIN" generate "$T/llama3.gguf" --chat --max-tokens 4 --temperature 0 "hello" >"$T/gen.out" 2>"$T/gen.err" \
  || { cat "$T/gen.err"; fail "generate --chat"; }
if grep -q "hello\|<|start_header_id|>" "$T/gen.out"; then fail "generate --chat printed the prompt or the template"; fi
"$BIN" generate "$T/llama3.gguf" --chat --chat-template chatml --max-tokens 2 "hello" >/dev/null 2>&1 || fail "--chat-template override"
# a grammar constrains the reply of a --chat prompt (the template's text is not the grammar's)
printf 'root ::= "<" [0-9]{2,4} ">"\n' >"$T/g.gbnf"
out=$("$BIN" generate "$T/llama3.gguf" --chat --grammar "$T/g.gbnf" --seed 6 --max-tokens 40 "hello" 2>"$T/gen.err") \
  || { cat "$T/gen.err"; fail "generate --chat --grammar"; }
grep -qP '^<[0-9]{2,4}>$' <<<"$out" || fail "generate --chat --grammar: $out"
expect_error "do not go together" "$BIN" generate "$T/llama3.gguf" --chat --rerank inverse "hello"
expect_error "no template family 'jinja'" "$BIN" generate "$T/llama3.gguf" --chat --chat-template jinja "hello"
expect_error "need --chat" "$BIN" generate "$T/llama3.gguf" --system "x" "hello"
cp -r "$T/chatml.run/model" "$T/odd"
printf '{"chat_template": "{{ messages }}"}' >"$T/odd/tokenizer_config.json"
expect_error "unknown chat template \"{{ messages }}\"" "$BIN" chat "$T/odd"
printf 'hi\n' | "$BIN" chat "$T/odd" --chat-template plain --max-tokens 2 >/dev/null 2>&1 || fail "--chat-template plain"
# an empty --stop would end every sequence at once; a NUL byte in a chat line is refused, not cut
expect_error "--stop: an empty string" "$BIN" generate "$T/llama3.gguf" --stop "" "hello"
printf 'hi\0there\n/quit\n' | "$BIN" chat "$T/llama3.gguf" --max-tokens 2 --stats >"$T/nul.out" 2>"$T/nul.err" \
  || { cat "$T/nul.err"; fail "chat with a NUL byte in a line"; }
grep -q "NUL byte: not sent" "$T/nul.err" || { cat "$T/nul.err"; fail "chat did not refuse the line with a NUL byte"; }
if grep -q "turn 1:" "$T/nul.err"; then fail "chat answered the line with a NUL byte"; fi
echo "chat_cli: ok"
