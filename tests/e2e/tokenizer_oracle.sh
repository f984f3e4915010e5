#!/usr/bin/env bash
# tokenizer_oracle.sh — liandan's tokenizers against Hugging Face's Rust tokenizers (npm
# `tokenizers`) and llama.cpp (node-llama-cpp), for every model type:
#   byte-level BPE trained by liandan on zh_pretrain + en_text; a SentencePiece-style BPE and a
#   BERT WordPiece written from it (tests/oracle/make_tokenizers.mjs);
# the same ids on the whole ChnSentiCorp test file and the whole en_text corpus, on a table of
# tricky inputs (contractions, digit runs, CJK/Latin mixes, emoji, accents, spaces, newlines,
# \r, tabs) for each model and for each trained pre-tokenizer (GPT-2, Llama-3, Qwen2), with
# and without the post-processor's special tokens; and each tokenizer written as a vocab-only
# GGUF gives the same ids in liandan and in llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${LD_BIN:-build/liandan}
DATA=${LD_DATA_DIR:-../shared/data}
ORACLE=tests/oracle
if [ ! -d "$ORACLE/node_modules/tokenizers" ]; then
  echo "tokenizer_oracle: $ORACLE/node_modules/tokenizers is missing: run scripts/setup.sh" >&2
  exit 1
fi
[ -d "$DATA/zh_pretrain" ] || { echo "tokenizer_oracle: no data at $DATA" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
passed=0

same() { # file-a file-b label
  if ! cmp -s "$1" "$2"; then
    echo "tokenizer_oracle: $3: ids differ; first difference (liandan <, oracle >):" >&2
    diff <(nl -ba "$1") <(nl -ba "$2") | head -6 >&2
    exit 1
  fi
  echo "ok   $3: $(wc -l <"$1") lines, $(wc -w <"$1") tokens identical"
  passed=$((passed + 1))
}

rust() { # tokenizer text label [--add-special]
  "$BIN" tokenize --tokenizer "$1" --lines "$2" ${4:+--add-special} >"$T/ours.txt"
  node "$ORACLE/tokenize_rust.mjs" "$1" "$2" ${4:-} >"$T/theirs.txt"
  same "$T/ours.txt" "$T/theirs.txt" "$3 (Rust tokenizers)"
}

llama() { # tokenizer.gguf text label
  grep -v '^$' "$2" >"$T/nonempty.txt" || true
  "$BIN" tokenize --tokenizer "$1" --lines "$T/nonempty.txt" --special-as-text >"$T/ours.txt"
  node "$ORACLE/llama_cpp.mjs" tokenize-vocab "$1" "$T/nonempty.txt" >"$T/theirs.txt" 2>"$T/llama.log" \
    || { cat "$T/llama.log" >&2; exit 1; }
  same "$T/ours.txt" "$T/theirs.txt" "$3 (llama.cpp)"
}

"$BIN" tokenizer train "$DATA"/zh_pretrain/*.tsv "$DATA"/en_text/*.tsv --vocab-size 8000 -o "$T/bpe.json" 2>"$T/train.log" \
  || { cat "$T/train.log" >&2; exit 1; }
node "$ORACLE/make_tokenizers.mjs" "$T/bpe.json" "$T" >/dev/null

tail -n +2 "$DATA/zh_eval/chnsenticorp/test.tsv" | awk -F'\t' '{print $NF}' >"$T/chnsenticorp.txt"
cat "$DATA"/en_text/*.tsv | awk -F'\t' 'FNR > 1 {print $NF}' >"$T/en_text.txt"

# tricky inputs, one per line (a literal \r stays inside its line)
printf '%s\n' \
  "I'm sure they'll say it's fine, we've seen 'em" "DON'T YOU'LL SHE'S" "x's 'S 'll" \
  "12345678901234567890 3.14159 1,000,000 x2y3" "２０２６年１１月 ① ½ ٣٤٥" \
  "深度学习 deep learning 模型model训练" "Hello世界！World，你好。" "日本語とEnglish" \
  "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇨🇳" "   leading spaces" "trailing spaces   " "a  b   c    d" \
  "tabs	between	words	" "multiple\tescaped" "line one  " "$(printf 'carriage\rreturn')" \
  "$(printf 'crlf ending\r')" "symbols !@#\$%^&*()_+-=[]{};:,.<>/?~\`|\\" "\"quoted\" and 'single'" \
  "Ünïcödé café naïve ÀÉÎÕÜ İstanbul" "Привет мир" "مرحبا بالعالم" "🤗🤗🤗" "  " "x" \
  "ﬁne ＡＢＣ ｶﾀｶﾅ" "ends with ▁ marker ▁▁" "<s> and </s> and [CLS] as text" >"$T/tricky.txt"

head -n 20000 "$T/en_text.txt" >"$T/en20k.txt"
{ head -n 300 "$T/chnsenticorp.txt"; head -n 2000 "$T/en_text.txt"; cat "$T/tricky.txt"; } >"$T/mix.txt"
rust "$T/bpe.json" "$T/en_text.txt" "bpe: en_text"
for m in bpe spm wordpiece; do
  rust "$T/$m.json" "$T/chnsenticorp.txt" "$m: chnsenticorp test"
  [ $m = bpe ] || rust "$T/$m.json" "$T/en20k.txt" "$m: en_text, 20,000 lines"
  rust "$T/$m.json" "$T/tricky.txt" "$m: tricky inputs"
  rust "$T/$m.json" "$T/tricky.txt" "$m: tricky inputs with special tokens" --add-special
  "$BIN" tokenizer convert "$T/$m.json" -o "$T/$m.gguf" 2>/dev/null
  "$BIN" tokenize --tokenizer "$T/$m.json" --lines "$T/tricky.txt" --add-special >"$T/a.txt"
  "$BIN" tokenize --tokenizer "$T/$m.gguf" --lines "$T/tricky.txt" --add-special >"$T/b.txt"
  same "$T/a.txt" "$T/b.txt" "$m: tokenizer.json and its GGUF"
  llama "$T/$m.gguf" "$T/mix.txt" "$m GGUF: 300 chnsenticorp + 2000 en_text lines + tricky inputs"
done

{ cat "$T/tricky.txt"; head -n 4000 "$T/en_text.txt"; } >"$T/small.txt"
for pre in gpt2 llama3 qwen2; do
  "$BIN" tokenizer train "$T/small.txt" --format txt --vocab-size 1200 --pretokenizer "$pre" -o "$T/$pre.json" 2>"$T/train.log" \
    || { cat "$T/train.log" >&2; exit 1; }
  rust "$T/$pre.json" "$T/tricky.txt" "tricky inputs ($pre)"
  "$BIN" tokenizer convert "$T/$pre.json" -o "$T/$pre.gguf" 2>/dev/null
  llama "$T/$pre.gguf" "$T/tricky.txt" "$pre GGUF: tricky inputs"
done
echo "$passed passed, 0 failed"
