#!/usr/bin/env bash
# tokenizer_oracle.sh — a tokenizer trained by liandan on zh_pretrain + en_text must give the
# same ids in @huggingface/tokenizers (npm) on the whole ChnSentiCorp test file and the whole
# en_text corpus; and for each pre-tokenizer (GPT-2, Llama-3, Qwen2) a table of tricky inputs
# (contractions, digit runs, CJK/Latin mixes, emoji, leading spaces, newlines, \r, tabs) must
# tokenize identically in both.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${LD_BIN:-build/liandan}
DATA=${LD_DATA_DIR:-../shared/data}
ORACLE=tests/oracle
if [ ! -d "$ORACLE/node_modules/@huggingface/tokenizers" ]; then
  echo "tokenizer_oracle: $ORACLE/node_modules is missing: run scripts/setup.sh (npm ci)" >&2
  exit 1
fi
[ -d "$DATA/zh_pretrain" ] || { echo "tokenizer_oracle: no data at $DATA" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$BIN" tokenizer train "$DATA"/zh_pretrain/*.tsv "$DATA"/en_text/*.tsv --vocab-size 8000 -o "$T/tok.json" 2>"$T/train.log" \
  || { cat "$T/train.log" >&2; exit 1; }

compare() { # tokenizer file label
  "$BIN" tokenize --tokenizer "$1" --lines "$2" >"$T/ours.txt"
  node "$ORACLE/tokenize_lines.mjs" "$1" "$2" >"$T/theirs.txt"
  if ! cmp -s "$T/ours.txt" "$T/theirs.txt"; then
    echo "tokenizer_oracle: $3: ids differ from @huggingface/tokenizers; first difference:" >&2
    diff <(nl -ba "$T/ours.txt") <(nl -ba "$T/theirs.txt") | head -6 >&2
    exit 1
  fi
  echo "ok   $3: $(wc -l <"$2") lines, $(wc -w <"$T/ours.txt") tokens identical"
}

tail -n +2 "$DATA/zh_eval/chnsenticorp/test.tsv" | awk -F'\t' '{print $NF}' >"$T/chnsenticorp.txt"
cat "$DATA"/en_text/*.tsv | awk -F'\t' 'FNR > 1 {print $NF}' >"$T/en_text.txt"
compare "$T/tok.json" "$T/chnsenticorp.txt" "chnsenticorp test"
compare "$T/tok.json" "$T/en_text.txt" "en_text"

# tricky inputs, one per line (a literal \r stays inside its line)
printf '%s\n' \
  "I'm sure they'll say it's fine, we've seen 'em" "DON'T YOU'LL SHE'S" "x's 'S 'll" \
  "12345678901234567890 3.14159 1,000,000 x2y3" "２０２６年１１月 ① ½ ٣٤٥" \
  "深度学习 deep learning 模型model训练" "Hello世界！World，你好。" "日本語とEnglish" \
  "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇨🇳" "   leading spaces" "trailing spaces   " "a  b   c    d" \
  "tabs	between	words	" "multiple\tescaped" "line one  " "$(printf 'carriage\rreturn')" \
  "$(printf 'crlf ending\r')" "symbols !@#\$%^&*()_+-=[]{};:,.<>/?~\`|\\" "\"quoted\" and 'single'" \
  "Ünïcödé café naïve" "Привет мир" "مرحبا بالعالم" "🤗🤗🤗" "  " "x" >"$T/tricky.txt"
{ cat "$T/tricky.txt"; head -n 4000 "$T/en_text.txt"; } >"$T/small.txt"
for pre in gpt2 llama3 qwen2; do
  "$BIN" tokenizer train "$T/small.txt" --format txt --vocab-size 1200 --pretokenizer "$pre" -o "$T/$pre.json" 2>"$T/train.log" \
    || { cat "$T/train.log" >&2; exit 1; }
  compare "$T/$pre.json" "$T/tricky.txt" "tricky inputs ($pre)"
done
echo "1 passed, 0 failed"
