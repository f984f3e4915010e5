#!/usr/bin/env bash
# gguf_oracle.sh — GGUF and safetensors interoperability against an independent parser
# (@huggingface/gguf, pinned in tests/oracle): a GGUF written by @huggingface/gguf is read by
# `liandan inspect`; a GGUF written by `liandan gguf write` is read by @huggingface/gguf; both
# sides must agree on every key, type, value, tensor name, dims, type and offset, and the
# tensor bytes must be those of the safetensors source. Then copy = identical bytes, and a
# truncated file is rejected with a message.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${LD_BIN:-build/liandan}
ORACLE=tests/e2e/gguf_oracle.mjs
if [ ! -d tests/oracle/node_modules/@huggingface/gguf ]; then
  echo "gguf_oracle: tests/oracle/node_modules is missing: run scripts/setup.sh (npm ci)" >&2
  exit 1
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

node "$ORACLE" make "$T"
# @huggingface/gguf wrote it, liandan reads it
"$BIN" inspect "$T/base.gguf" --json > "$T/base.json"
node "$ORACLE" compare-gguf "$T/base.gguf" "$T/base.json"
"$BIN" inspect "$T/tiny.safetensors" --json > "$T/tiny.json"
node "$ORACLE" compare-st "$T/tiny.safetensors" "$T/tiny.json"

# liandan writes it, @huggingface/gguf reads it
"$BIN" gguf write "$T/out.gguf" --from "$T/base.gguf" --from "$T/tiny.safetensors" \
  --set general.name=str:tiny --set llama.block_count=u32:2 --set x.u32=u32:7 \
  --set x.arr=i16[]:-1,2,3 --set x.names=str[]:a,b --set x.f=f64:0.25 --set x.g=f32:-1e-3
"$BIN" inspect "$T/out.gguf" --json > "$T/out.json"
node "$ORACLE" compare-gguf "$T/out.gguf" "$T/out.json"
node "$ORACLE" check-data "$T/out.gguf" "$T/tiny.safetensors"
grep -q '"key": "x.u32", "type": 4, "value": 7}' "$T/out.json" || { echo "--set did not replace x.u32" >&2; exit 1; }

# copying a liandan-written file reproduces it byte for byte
"$BIN" gguf write "$T/copy.gguf" --from "$T/out.gguf"
cmp "$T/out.gguf" "$T/copy.gguf"

# the text form runs
"$BIN" inspect "$T/out.gguf" >"$T/inspect" && grep -q "tok_embd.weight" "$T/inspect"

# a truncated file fails with a message that says where
head -c 300 "$T/out.gguf" > "$T/trunc.gguf"
if "$BIN" inspect "$T/trunc.gguf" > /dev/null 2> "$T/err"; then
  echo "truncated GGUF was accepted" >&2
  exit 1
fi
grep -q "trunc.gguf" "$T/err" && grep -q "byte" "$T/err" || { cat "$T/err" >&2; exit 1; }
echo "gguf_oracle: ok"
