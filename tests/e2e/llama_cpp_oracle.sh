#!/usr/bin/env bash
# llama_cpp_oracle.sh — GGUF models against llama.cpp itself (the npm package node-llama-cpp
# ships its prebuilt libraries; pinned in tests/oracle). For tiny llama (GQA), qwen2 (q/k/v
# biases, untied head) and gpt2 models trained here:
#   - `liandan export gguf` -> llama.cpp loads the file, tokenizes like liandan, and its
#     greedy tokens equal liandan's (F32 and F16: every prompt);
#   - quantized files, written by `liandan quantize` and by llama.cpp's own quantizer
#     (llama_model_quantize): both tools run both; greedy tokens agree on most prompts
#     (quantized activations are rounded differently, so near-ties may split) and the
#     per-prompt results are printed;
#   - GGUF -> liandan -> the same perplexity as the model directory it came from.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${LD_BIN:-build/liandan}
DATA=${LD_DATA_DIR:-../shared/data}
ORACLE=tests/oracle/llama_cpp.mjs
LIB=tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.5.0.so
[ -f "$LIB" ] || { echo "llama_cpp_oracle: $LIB is missing: run scripts/setup.sh (npm ci)" >&2; exit 1; }
T=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "keeping $T"
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail() { echo "llama_cpp_oracle: $*" >&2; exit 1; }
cc -O1 -o "$T/llama_quantize" tests/oracle/llama_quantize.c -ldl

head -n 3000 "$DATA/zh_pretrain/tang_poems.tsv" >"$T/poems.tsv"
cat >"$T/texts.txt" <<'TXT'
床前明月光，疑是地上霜。
Hello, world! It's 2026 and we're testing 12345 tokens.
  leading spaces and	tabs	mixed with 中文 and emoji 🙂
<|endoftext|> is plain text here
TXT
head -n 20 "$DATA/zh_eval/chnsenticorp/test.tsv" 2>/dev/null | cut -f2 >>"$T/texts.txt" || true

train() { # name pretokenizer model-json steps
  local name=$1 pre=$2 model=$3 steps=$4
  "$BIN" tokenizer train "$T/poems.tsv" --vocab-size 1200 --pretokenizer "$pre" -o "$T/$name.tok.json" 2>/dev/null
  "$BIN" data prepare "$T/poems.tsv" --tokenizer "$T/$name.tok.json" --val-fraction 0.05 -o "$T/$name.data" >/dev/null 2>&1
  cat >"$T/$name.cfg.json" <<JSON
{ "model": $model,
  "tokenizer": "$T/$name.tok.json", "train_data": "$T/$name.data/train", "val_data": "$T/$name.data/val",
  "out_dir": "$T/$name.run", "batch_size": 16, "seq_len": 64, "max_steps": $steps, "lr": 2e-3,
  "warmup_steps": 20, "eval_every": $steps, "eval_batches": 2, "checkpoint_every": 1000, "sample_every": 0 }
JSON
  "$BIN" pretrain "$T/$name.cfg.json" --quiet >"$T/$name.log" 2>&1 || { cat "$T/$name.log"; fail "pretrain $name"; }
}
# llama is 256 wide so its matrices are whole Q4_K super-blocks (narrower rows fall back to
# other types); qwen2 and gpt2 are small
DIMS='"vocab_size": 1216, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64'
train llama llama3 "{\"model_type\": \"llama\", $DIMS, \"hidden_size\": 256, \"intermediate_size\": 512,
  \"num_hidden_layers\": 2, \"tie_word_embeddings\": true}" 400
train qwen2 qwen2 "{\"model_type\": \"qwen2\", $DIMS, \"hidden_size\": 64, \"intermediate_size\": 128,
  \"num_hidden_layers\": 2, \"tie_word_embeddings\": false}" 800
train gpt2 gpt2 '{"model_type": "gpt2", "vocab_size": 1216, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64}' 800

# prompts: token ids of a few openings (each model has its own tokenizer)
prompts() { # model_dir -> file of comma-separated id lines
  for p in "床前明月光，" "春眠不覺曉，" "白日依山盡，" "故人西辭黃鶴樓，" "君不見黃河之水天上來，" "國破山河在，"; do
    "$BIN" tokenize --tokenizer "$1/tokenizer.json" "$p" 2>/dev/null | tr ' ' ','
  done
}
# liandan's greedy continuations of the prompts in $2 with model $1, one line each (one
# process for all prompts)
ours() {
  local args=()
  while read -r ids; do args+=("ids:$ids"); done <"$2"
  "$BIN" generate "$1" --ids --temperature 0 --max-tokens 24 "${args[@]}" 2>/dev/null | sed -n 's/^generated: *//p'
}
# llama.cpp's greedy continuations for each "MODEL.gguf PROMPTS OUT" line of $1, in one node
# process (each start of the package costs seconds: it tests its binary in a child process)
theirs() { node "$ORACLE" greedy-batch 24 "$1" || fail "llama.cpp greedy-batch $1"; }
# compare FILE_A FILE_B -> number of identical lines
same_lines() { paste -d '|' "$1" "$2" | awk -F'|' '$1 == $2' | wc -l; }

: >"$T/jobs.family"
for name in llama qwen2 gpt2; do
  M=$T/$name.run/model
  prompts "$M" >"$T/$name.prompts"
  "$BIN" export gguf "$M" -o "$T/$name.f32.gguf" 2>/dev/null
  "$BIN" export gguf "$M" --type f16 -o "$T/$name.f16.gguf" 2>/dev/null
  # the tokenizer metadata: llama.cpp tokenizes like liandan
  node "$ORACLE" tokenize "$T/$name.f32.gguf" "$T/texts.txt" >"$T/$name.lc.tok"
  "$BIN" tokenize --tokenizer "$M/tokenizer.json" --special-as-text --lines "$T/texts.txt" >"$T/$name.ld.tok" 2>/dev/null
  cmp -s "$T/$name.lc.tok" "$T/$name.ld.tok" || { diff "$T/$name.lc.tok" "$T/$name.ld.tok" | head; fail "$name: tokenization differs"; }
  for ty in f32 f16; do echo "$T/$name.$ty.gguf $T/$name.prompts $T/$name.$ty.lc" >>"$T/jobs.family"; done
done
theirs "$T/jobs.family"
for name in llama qwen2 gpt2; do
  M=$T/$name.run/model
  for ty in f32 f16; do
    ours "$T/$name.$ty.gguf" "$T/$name.prompts" >"$T/$name.$ty.ld"
    cmp -s "$T/$name.$ty.lc" "$T/$name.$ty.ld" || { paste "$T/$name.$ty.lc" "$T/$name.$ty.ld"; fail "$name $ty: greedy tokens differ from llama.cpp"; }
    [ "$(awk 'NF > 2' "$T/$name.$ty.ld" | wc -l)" -ge 3 ] || fail "$name $ty: continuations too short to compare"
  done
  # the source model directory gives the same tokens as its F32 GGUF
  ours "$M" "$T/$name.prompts" >"$T/$name.dir.ld"
  cmp -s "$T/$name.dir.ld" "$T/$name.f32.ld" || fail "$name: model directory and its GGUF generate differently"
  echo "llama_cpp_oracle: $name f32/f16: tokenization and greedy tokens identical to llama.cpp"
done

# exported files parse identically in @huggingface/gguf, and copy to identical bytes
for f in llama.f32 qwen2.f16 gpt2.f32; do
  "$BIN" inspect "$T/$f.gguf" --json >"$T/$f.json"
  node tests/e2e/gguf_oracle.mjs compare-gguf "$T/$f.gguf" "$T/$f.json" >/dev/null || fail "$f: @huggingface/gguf disagrees"
  "$BIN" gguf write "$T/$f.copy.gguf" --from "$T/$f.gguf" 2>/dev/null
  cmp -s "$T/$f.gguf" "$T/$f.copy.gguf" || fail "$f: write -> read -> write changed the bytes"
done

# GGUF -> liandan -> HF directory: perplexity identical to the original directory's
"$BIN" export hf "$T/llama.f32.gguf" -o "$T/back" 2>/dev/null
p1=$("$BIN" eval ppl "$T/llama.run/model" --data "$T/poems.tsv" --max-windows 8 2>/dev/null)
p2=$("$BIN" eval ppl "$T/back" --data "$T/poems.tsv" --max-windows 8 2>/dev/null)
[ "$p1" = "$p2" ] || fail "perplexity after GGUF round trip: '$p1' vs '$p2'"

# quantized: liandan's files and llama.cpp's own, run by both tools
M=$T/llama.run/model
"$BIN" quantize "$M" --type q8_0 -o "$T/ld.q8_0.gguf" 2>/dev/null
"$BIN" quantize "$M" --type q4_k -o "$T/ld.q4_k.gguf" 2>/dev/null
"$BIN" inspect "$T/ld.q4_k.gguf" --json >"$T/ld.q4_k.json"
node tests/e2e/gguf_oracle.mjs compare-gguf "$T/ld.q4_k.gguf" "$T/ld.q4_k.json" >/dev/null || fail "q4_k: @huggingface/gguf disagrees"
"$T/llama_quantize" "$LIB" "$T/llama.f32.gguf" "$T/lc.q8_0.gguf" 7 >/dev/null 2>&1 || fail "llama.cpp quantize Q8_0"
"$T/llama_quantize" "$LIB" "$T/llama.f32.gguf" "$T/lc.q4_k_m.gguf" 15 >/dev/null 2>&1 || fail "llama.cpp quantize Q4_K_M"
# the 64-wide qwen2 makes llama.cpp fall back to Q5_0 / Q8_0 for rows that are not whole Q4_K
# super-blocks: liandan decodes those types too
"$T/llama_quantize" "$LIB" "$T/qwen2.f32.gguf" "$T/lc.qwen2.q4_k_m.gguf" 15 >/dev/null 2>&1 || fail "llama.cpp quantize qwen2"
"$BIN" inspect "$T/lc.qwen2.q4_k_m.gguf" >"$T/qwen2.inspect"
grep -q " Q5_0 " "$T/qwen2.inspect" || fail "expected Q5_0 fallback tensors in llama.cpp's qwen2 Q4_K_M"
total=0; agree=0
QUANT="ld.q8_0 ld.q4_k lc.q8_0 lc.q4_k_m lc.qwen2.q4_k_m"
for f in $QUANT; do
  P=$T/llama.prompts
  case $f in *qwen2*) P=$T/qwen2.prompts ;; esac
  echo "$T/$f.gguf $P $T/$f.lc"
done >"$T/jobs.quant"
theirs "$T/jobs.quant"
for f in $QUANT; do
  P=$T/llama.prompts
  case $f in *qwen2*) P=$T/qwen2.prompts ;; esac
  ours "$T/$f.gguf" "$P" >"$T/$f.ld"
  n=$(wc -l <"$P"); s=$(same_lines "$T/$f.lc" "$T/$f.ld")
  echo "llama_cpp_oracle: $f: $s of $n greedy continuations identical in llama.cpp and liandan"
  total=$((total + n)); agree=$((agree + s))
  [ "$s" -ge $((n / 2)) ] || { paste "$T/$f.lc" "$T/$f.ld"; fail "$f: llama.cpp and liandan disagree on most prompts"; }
done
[ $((agree * 10)) -ge $((total * 7)) ] || fail "quantized: only $agree of $total continuations agree"

# the low-bit types (K-quants Q2_K/Q3_K, ternary TQ*, i-quants IQ1..IQ4): llama.cpp's quantizer
# writes each (the i-quants below 2.5 bits with an importance matrix of ones, which they
# require); every quantized tensor decodes to the same floats as in GGML, block by block
# (test_quant_ggml reads the files), and greedy tokens agree as for the types above
IM=()
for l in 0 1; do
  for n in attn_q attn_k attn_v attn_output ffn_gate ffn_up; do IM+=("blk.$l.$n.weight:256"); done
  IM+=("blk.$l.ffn_down.weight:512")
done
IM+=("token_embd.weight:256")
lowbit=""
for ft in 10:q2_k 12:q3_k_m 25:iq4_nl 30:iq4_xs 23:iq3_xxs 29:iq2_m 19:iq2_xxs 20:iq2_xs 24:iq1_s 31:iq1_m 36:tq1_0 37:tq2_0; do
  "$T/llama_quantize" "$LIB" "$T/llama.f32.gguf" "$T/lc.${ft#*:}.gguf" "${ft%%:*}" "${IM[@]}" >"$T/lq.log" 2>&1 ||
    { tail -5 "$T/lq.log"; fail "llama.cpp quantize ${ft#*:}"; }
  lowbit="$lowbit${lowbit:+:}$T/lc.${ft#*:}.gguf"
done
LD_GGUF_FILES=$lowbit "$(dirname "$BIN")/test_quant_ggml" gguf_files_decode_like_ggml >"$T/decode.log" 2>&1 ||
  { cat "$T/decode.log"; fail "llama.cpp's low-bit files decode differently in liandan"; }
types=$(grep -o '( [A-Z0-9_ ]* )' "$T/decode.log" | tr ' ()' '\n' | sort -u | tr '\n' ' ')
for t in Q2_K Q3_K IQ4_NL IQ4_XS IQ3_XXS IQ3_S IQ2_S IQ2_XXS IQ2_XS IQ1_S IQ1_M TQ1_0 TQ2_0; do
  case " $types " in *" $t "*) ;; *) fail "no $t tensor among llama.cpp's low-bit files ($types)" ;; esac
done
echo "llama_cpp_oracle: llama.cpp's $types tensors decode bit for bit like GGML"
# liandan writes the same mixes as llama.cpp's quantizer (tensor by tensor), and llama.cpp
# runs them
for mx in 10:q2_k 12:q3_k_m 13:q3_k_l 11:q3_k_s 21:q2_k_s 30:iq4_xs 15:q4_k_m; do
  t=${mx#*:}
  "$BIN" quantize "$M" --type "$t" -o "$T/ld.$t.gguf" 2>"$T/q.log" || { cat "$T/q.log"; fail "liandan quantize --type $t"; }
  im=(); [ "$t" = q2_k_s ] && im=("${IM[@]}") # llama.cpp refuses Q2_K_S without an importance matrix
  "$T/llama_quantize" "$LIB" "$T/llama.f32.gguf" "$T/lcm.$t.gguf" "${mx%%:*}" "${im[@]}" >/dev/null 2>&1 ||
    fail "llama.cpp quantize $t"
  for who in ld lcm; do
    "$BIN" inspect "$T/$who.$t.gguf" | awk '/^tensors/ { on = 1; next } on && $1 != "name" && $1 != "total" { print $1, $2 }' | sort >"$T/$who.$t.types"
  done
  cmp -s "$T/ld.$t.types" "$T/lcm.$t.types" || { diff "$T/ld.$t.types" "$T/lcm.$t.types"; fail "$t: tensor types differ from llama.cpp's mix"; }
done
echo "llama_cpp_oracle: liandan's q2_k q2_k_s q3_k_s q3_k_m q3_k_l iq4_xs q4_k_m mixes have llama.cpp's tensor types"
# liandan's quantizers for the ternary types and the i-quants below 4 bits, with llama.cpp's
# mixes of those names (an importance matrix from `liandan imatrix`; without one liandan
# refuses the types llama.cpp refuses): the files have, tensor by tensor, the types of
# llama.cpp's files above (made with an importance matrix too), and llama.cpp runs them
# (greedy tokens below)
"$BIN" imatrix "$M" --data "$T/poems.tsv" --chunks 16 -o "$T/imatrix.gguf" >"$T/im.log" 2>&1 || { cat "$T/im.log"; fail "liandan imatrix"; }
if "$BIN" quantize "$M" --type iq2_xxs -o "$T/x.gguf" >"$T/err" 2>&1; then fail "quantize --type iq2_xxs without --imatrix accepted"; fi
grep -q "IQ2_XXS needs an importance matrix" "$T/err" || { cat "$T/err"; fail "quantize --type iq2_xxs: the error does not ask for an importance matrix"; }
ldlow="" ldtypes=""
for t in iq3_xxs iq2_m iq2_xxs iq2_xs iq1_s iq1_m tq1_0 tq2_0; do
  "$BIN" quantize "$M" --type "$t" --imatrix "$T/imatrix.gguf" -o "$T/ld.$t.gguf" 2>"$T/q.log" || { cat "$T/q.log"; fail "liandan quantize --type $t"; }
  for who in ld lc; do
    "$BIN" inspect "$T/$who.$t.gguf" | awk '/^tensors/ { on = 1; next } on && $1 != "name" && $1 != "total" { print $1, $2 }' | sort >"$T/$who.$t.types"
  done
  cmp -s "$T/ld.$t.types" "$T/lc.$t.types" || { diff "$T/ld.$t.types" "$T/lc.$t.types"; fail "$t: tensor types differ from llama.cpp's mix"; }
  ldlow="$ldlow ld.$t" ldtypes="$ldtypes $(awk '{ print $2 }' "$T/ld.$t.types" | sort -u | tr '\n' ' ')"
done
for t in IQ3_XXS IQ3_S IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S TQ1_0 TQ2_0; do
  case " $ldtypes " in *" $t "*) ;; *) fail "no $t tensor among liandan's low-bit files" ;; esac
done
echo "llama_cpp_oracle: liandan's iq3_xxs iq2_m iq2_xxs iq2_xs iq1_s iq1_m tq1_0 tq2_0 mixes have llama.cpp's tensor types"
total=0; agree=0
LOWBIT="lc.q2_k lc.q3_k_m lc.iq4_nl lc.iq4_xs lc.iq3_xxs lc.iq2_m lc.iq2_xxs lc.iq2_xs lc.iq1_s lc.iq1_m lc.tq1_0 lc.tq2_0
        ld.q2_k ld.q3_k_m ld.q3_k_l ld.iq4_xs $ldlow"
for f in $LOWBIT; do echo "$T/$f.gguf $T/llama.prompts $T/$f.lc"; done >"$T/jobs.lowbit"
theirs "$T/jobs.lowbit"
for f in $LOWBIT; do
  ours "$T/$f.gguf" "$T/llama.prompts" >"$T/$f.ld"
  n=$(wc -l <"$T/llama.prompts"); s=$(same_lines "$T/$f.lc" "$T/$f.ld")
  echo "llama_cpp_oracle: $f: $s of $n greedy continuations identical in llama.cpp and liandan"
  total=$((total + n)); agree=$((agree + s))
  [ "$s" -ge $((n / 2)) ] || { paste "$T/$f.lc" "$T/$f.ld"; fail "$f: llama.cpp and liandan disagree on most prompts"; }
done
[ $((agree * 10)) -ge $((total * 7)) ] || fail "low-bit: only $agree of $total continuations agree"

# a tensor type liandan cannot compute with (MXFP4: one IQ4_XS matrix relabelled, the same
# bytes per row): every command that loads the file says so and exits non-zero
node -e '
const fs = require("fs"), b = fs.readFileSync(process.argv[1]), name = Buffer.from("blk.0.attn_q.weight");
let p = b.indexOf(name) + name.length; p += 4 + 8 * b.readUInt32LE(p);
if (b.readUInt32LE(p) !== 23) throw new Error("expected IQ4_XS"); b.writeUInt32LE(39, p); fs.writeFileSync(process.argv[2], b);
' "$T/ld.iq4_xs.gguf" "$T/mxfp4.gguf"
for cmd in "generate $T/mxfp4.gguf x" "bench infer --model $T/mxfp4.gguf --reps 1" "eval ppl $T/mxfp4.gguf --data $T/poems.tsv" \
           "quantize $T/mxfp4.gguf --type q8_0 --allow-requantize -o $T/x.gguf" "export hf $T/mxfp4.gguf -o $T/x.dir"; do
  # shellcheck disable=SC2086
  if "$BIN" $cmd >"$T/err" 2>&1; then fail "liandan $cmd: accepted an MXFP4 tensor"; fi
  grep -q "MXFP4" "$T/err" || { cat "$T/err"; fail "liandan $cmd: the error does not name the type"; }
done
echo "llama_cpp_oracle: generate, bench infer, eval ppl, quantize and export refuse an MXFP4 tensor, naming it"

# errors: an architecture liandan does not run, a truncated file
"$BIN" gguf write "$T/mamba.gguf" --from "$T/llama.f32.gguf" --set general.architecture=str:mamba 2>/dev/null
if "$BIN" generate "$T/mamba.gguf" "x" >"$T/err" 2>&1; then fail "mamba GGUF accepted"; fi
grep -q "architecture 'mamba' is not supported" "$T/err" || { cat "$T/err"; fail "mamba error message"; }
head -c 100000 "$T/llama.f32.gguf" >"$T/trunc.gguf"
if "$BIN" generate "$T/trunc.gguf" "x" >"$T/err" 2>&1; then fail "truncated GGUF accepted"; fi
grep -q "trunc.gguf" "$T/err" || { cat "$T/err"; fail "truncated GGUF error message"; }
echo "llama_cpp_oracle: ok"
