#!/usr/bin/env bash
# serve_clip.sh — /v1/embeddings of an image-text (clip) model: a tiny clip model trained on
# the emoji_clip test split is served next to a tiny causal LM; text inputs get the text
# tower's embedding and image items (base64 PNG / JPEG data URLs, docs/serving.md) the image
# tower's, equal to `liandan embed` of the same file and text; malformed images and misuse get
# 4xx answers naming the input and the server stays up.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=serve_clip
source tests/e2e/lib.bash
E="$DATA/emoji_clip"
[ -f "$E/index.tsv" ] || { echo "SKIP: no emoji_clip data"; exit 0; }
source tests/e2e/serve_lib.bash

mkdir -p "$T/models"
tiny_model "$T/models/poet"
cat >"$T/clip.json" <<JSON
{ "model": {"model_type": "clip", "projection_dim": 16,
    "text_config": {"model_type": "bert", "vocab_size": 4096, "hidden_size": 16, "num_hidden_layers": 1,
                    "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16},
    "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 8}},
  "train_data": "$E", "split": "test", "val_split": "", "lang": "zh", "out_dir": "$T/cliprun",
  "batch_size": 16, "max_steps": 2, "warmup_steps": 1, "eval_every": 0 }
JSON
"$BIN" pretrain "$T/clip.json" >"$T/p.log" 2>&1 || { cat "$T/p.log"; fail "pretrain clip"; }
cp -r "$T/cliprun/model" "$T/models/clip"

# images: a red PNG (40 x 24) and a gradient (33 x 47, resized and centre-cropped to 32 x 32),
# written with node's zlib
node -e '
const zlib = require("zlib"), fs = require("fs");
function crc32(b) { let c, t = []; for (let n = 0; n < 256; n++) { c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; t[n] = c >>> 0; }
  let x = 0xffffffff; for (const v of b) x = t[(x ^ v) & 0xff] ^ (x >>> 8); return (x ^ 0xffffffff) >>> 0; }
function chunk(type, data) { const l = Buffer.alloc(4); l.writeUInt32BE(data.length); const td = Buffer.concat([Buffer.from(type), data]);
  const c = Buffer.alloc(4); c.writeUInt32BE(crc32(td)); return Buffer.concat([l, td, c]); }
function png(w, h, f) { const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc((w * 3 + 1) * h); for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) f(x, y).forEach((v, c) => raw[y * (w * 3 + 1) + 1 + x * 3 + c] = v);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]); }
fs.writeFileSync(process.argv[1] + "/red.png", png(40, 24, () => [220, 30, 30]));
fs.writeFileSync(process.argv[1] + "/grad.png", png(33, 47, (x, y) => [x * 7 % 256, y * 5 % 256, (x + y) % 256]));
' "$T"
start_server --models-dir "$T/models" --threads 1
post() { curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
expect() { # expected-status expected-substring body
  local got; got=$(post "$URL/v1/embeddings" -d @"$3")
  [ "$got" = "$1" ] || { cat "$T/body"; fail "$(head -c 200 "$3") answered $got, expected $1"; }
  grep -q -- "$2" "$T/body" || { cat "$T/body"; fail "$(head -c 200 "$3") did not say '$2'"; }
}
# body MODEL ITEM...: an embeddings request; an item "@FILE:TYPE" becomes an image item of FILE as
# a data URL of media type TYPE, "#URL" an image item of that URL, "!JSON" raw JSON, else text
body() {
  node -e '
const fs = require("fs");
const [model, ...items] = process.argv.slice(1);
const img = (url) => ({type: "image_url", image_url: {url}});
const input = items.map((s) => s[0] === "@" ? img("data:image/" + s.split(":")[1] + ";base64," + fs.readFileSync(s.slice(1).split(":")[0]).toString("base64"))
  : s[0] === "#" ? img(s.slice(1)) : s[0] === "!" ? JSON.parse(s.slice(1)) : s);
process.stdout.write(JSON.stringify({model, input}));' "$@"
}

# text and images: one embedding each, in order, equal to `liandan embed` of the same inputs
body clip "一只猫" "@$T/red.png:png" "@$T/grad.png:png" >"$T/ok.json"
expect 200 '"embedding"' "$T/ok.json"
cp "$T/body" "$T/served.json"
"$BIN" embed "$T/models/clip" --text "一只猫" --image "$T/red.png" --image "$T/grad.png" >"$T/cli.jsonl" 2>"$T/e.log" ||
  { cat "$T/e.log"; fail "liandan embed"; }
node -e '
const fs = require("fs");
const served = JSON.parse(fs.readFileSync(process.argv[1])).data.map((d) => d.embedding);
const cli = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").map((l) => JSON.parse(l));
const want = [cli.find((c) => c.text).embedding, ...cli.filter((c) => c.image).map((c) => c.embedding)];
if (served.length !== 3) throw new Error("expected 3 embeddings, got " + served.length);
served.forEach((e, i) => {
  if (e.length !== 16) throw new Error("embedding " + i + " has " + e.length + " dims, not 16");
  const d = Math.max(...e.map((v, k) => Math.abs(v - want[i][k])));
  if (!(d < 1e-5)) throw new Error("embedding " + i + " differs from liandan embed by " + d);
  const n = Math.sqrt(e.reduce((s, v) => s + v * v, 0));
  if (Math.abs(n - 1) > 1e-4) throw new Error("embedding " + i + " has norm " + n);
});' "$T/served.json" "$T/cli.jsonl" || fail "served embeddings differ from liandan embed"
grep -q '"prompt_tokens":[1-9]' "$T/served.json" || { cat "$T/served.json"; fail "usage should count the text's tokens"; }

# malformed images and misuse: 4xx naming the input; the server stays up
printf 'not an image at all' >"$T/junk.bin"
head -c 60 "$T/red.png" >"$T/trunc.png"
printf '\xff\xd8\xff\xe0\x00\x10JFIF\x00' >"$T/trunc.jpg"
i=0
while IFS='|' read -r status msg model items; do
  # shellcheck disable=SC2086
  eval "body $model $items" >"$T/bad$i.json"
  expect "$status" "$msg" "$T/bad$i.json"
  i=$((i + 1))
done <<ROWS
400|input 1: |clip x "@$T/junk.bin:png"
400|input 0: |clip "@$T/trunc.png:png"
400|input 0: |clip "@$T/trunc.jpg:jpeg"
400|only data: URLs|clip "#https://example.com/cat.png"
400|must start data:image/png;base64,|clip "#data:image/gif;base64,R0lGODlh"
400|holds no image|clip "#data:image/png;base64,"
400|invalid base64 character|clip "#data:image/png;base64,iVBO*w0K"
400|multiple of 4|clip "#data:image/png;base64,iVBORw0"
400|an image must be|clip '!{"type":"image_url","image_url":"data:image/png;base64,aGk="}'
400|token ids are not accepted|clip '![1,2,3]'
400|input 0 is empty|clip ""
400|is not an image-text (clip) model|poet x "@$T/red.png:png"
ROWS
expect 200 '"embedding"' <(body poet "春眠不觉晓")
got=$(post "$URL/v1/chat/completions" -d '{"model": "clip", "messages": [{"role": "user", "content": "hi"}]}')
[ "$got" = 400 ] && grep -q "only /v1/embeddings serves it" "$T/body" || { cat "$T/body"; fail "chat with a clip model answered $got"; }
got=$(post "$URL/tokenize" -d '{"model": "clip", "content": "hi"}')
[ "$got" = 400 ] || fail "/tokenize with a clip model answered $got"
curl -s "$URL/metrics" | contains 'liandan_model_bytes{model="clip"}' || fail "/metrics should list the loaded clip model"
curl -s "$URL/health" | contains '"ok"' || fail "the server should still be up"
echo "$NAME: ok"
