#!/usr/bin/env bash
# clip_cli.sh — the image-text model end to end: `liandan pretrain` of a tiny clip config on
# the emoji_clip test split, the model directory it writes, `embed --image/--text` (JSON and
# .npy), `eval retrieval` (chance, bag-of-characters baseline, model), `eval zeroshot`,
# `classify` on PNG files, a TSV image list with a bad image (skipped or rejected), errors, and
# transformers' CLIPModel layout (pretrain, `liandan init`, embed, a directory without vocab.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=clip_cli
source tests/e2e/lib.bash

E="$DATA/emoji_clip"
[ -f "$E/index.tsv" ] || { echo "SKIP: no emoji_clip data"; exit 0; }
# two PNG images (a red and a blue square, 40 x 24) written with node's zlib
node -e '
const zlib = require("zlib"), fs = require("fs");
function crc32(b) { let c, t = []; for (let n = 0; n < 256; n++) { c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; t[n] = c >>> 0; }
  let x = 0xffffffff; for (const v of b) x = t[(x ^ v) & 0xff] ^ (x >>> 8); return (x ^ 0xffffffff) >>> 0; }
function chunk(type, data) { const l = Buffer.alloc(4); l.writeUInt32BE(data.length); const td = Buffer.concat([Buffer.from(type), data]);
  const c = Buffer.alloc(4); c.writeUInt32BE(crc32(td)); return Buffer.concat([l, td, c]); }
function png(w, h, rgb) { const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc((w * 3 + 1) * h); for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgb.forEach((v, c) => raw[y * (w * 3 + 1) + 1 + x * 3 + c] = v);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]); }
fs.writeFileSync(process.argv[1] + "/red.png", png(40, 24, [220, 30, 30]));
fs.writeFileSync(process.argv[1] + "/blue.png", png(40, 24, [30, 30, 220]));
' "$T"
cat >"$T/clip.json" <<JSON
{ "model": {"model_type": "clip", "projection_dim": 16,
    "text_config": {"model_type": "bert", "vocab_size": 4096, "hidden_size": 16, "num_hidden_layers": 1,
                    "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 16},
    "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 8}},
  "train_data": "$E", "split": "test", "val_split": "dev", "lang": "zh", "out_dir": "$T/run",
  "batch_size": 16, "max_steps": 4, "warmup_steps": 1, "eval_every": 2 }
JSON
"$BIN" pretrain "$T/clip.json" >"$T/p.log" 2>&1 || { cat "$T/p.log"; fail "pretrain clip"; }
grep -q "376 training pairs" "$T/p.log" || { cat "$T/p.log"; fail "pretrain should train on the 376 test-split pairs"; }
[ "$(grep -c '"step"' "$T/run/metrics.jsonl")" -eq 4 ] || fail "metrics.jsonl should hold 4 steps"
grep -q '"val_loss"' "$T/run/metrics.jsonl" || fail "no validation loss in metrics.jsonl"
for f in config.json model.safetensors vocab.txt; do [ -f "$T/run/model/$f" ] || fail "the model directory lacks $f"; done
grep -q '"model_type":[[:space:]]*"clip"' "$T/run/model/config.json" || fail "config.json should say model_type clip"
M="$T/run/model"

# a MoCo queue and checkpoints: the momentum encoder and the queues are in every checkpoint; the
# same run directory again needs --resume; resuming a finished run writes the same model
sed -e 's|"eval_every": 2|"eval_every": 0, "queue_size": 24, "momentum": 0.99, "checkpoint_every": 2|' \
    -e "s|$T/run\"|$T/runq\"|" "$T/clip.json" >"$T/q.json"
"$BIN" pretrain "$T/q.json" >"$T/q.log" 2>&1 || { cat "$T/q.log"; fail "pretrain with a queue"; }
for f in model optimizer momentum queue; do
  [ -f "$T/runq/checkpoints/step-0000004/$f.safetensors" ] || fail "the step-4 checkpoint lacks $f.safetensors"
done
grep -q '"queue":16' "$T/runq/metrics.jsonl" && grep -q '"queue":24' "$T/runq/metrics.jsonl" ||
  { cat "$T/runq/metrics.jsonl"; fail "the queue should fill to 16 after step 1 and to its size 24 later"; }
cp "$T/runq/model/model.safetensors" "$T/q1.safetensors"
expect_error "continue that run with --resume" "$BIN" pretrain "$T/q.json"
"$BIN" pretrain "$T/q.json" --resume >"$T/q2.log" 2>&1 || { cat "$T/q2.log"; fail "pretrain --resume"; }
cmp -s "$T/q1.safetensors" "$T/runq/model/model.safetensors" || fail "resuming a finished run changed the model"
[ "$(grep -c '"step"' "$T/runq/metrics.jsonl")" -eq 4 ] || fail "metrics.jsonl of the resumed run should still hold 4 steps"
expect_error "--set is not available" "$BIN" pretrain "$T/q.json" --set lr=1

"$BIN" embed "$M" --image "$T/red.png" --text 红色 --text "一只猫" >"$T/emb.jsonl" 2>&1 || { cat "$T/emb.jsonl"; fail "embed"; }
[ "$(grep -c '"embedding"' "$T/emb.jsonl")" -eq 3 ] || { cat "$T/emb.jsonl"; fail "embed should print 3 embeddings"; }
grep -q '"image": ".*red.png"' "$T/emb.jsonl" || fail "embed should name the image"
"$BIN" embed "$M" --image "$T/red.png" --image "$T/blue.png" -o "$T/e.npy" 2>"$T/e.log" || { cat "$T/e.log"; fail "embed -o"; }
[ "$(stat -c %s "$T/e.npy")" -eq $((128 + 2 * 16 * 4)) ] || fail "e.npy should hold 2 x 16 float32 after a 128-byte header"

"$BIN" eval retrieval "$M" --data "$E" --split test >"$T/r.log" 2>&1 || { cat "$T/r.log"; fail "eval retrieval"; }
for row in chance "bag of characters" model; do grep -q "^$row" "$T/r.log" || { cat "$T/r.log"; fail "eval retrieval lacks '$row'"; }; done
grep -q "376 images" "$T/r.log" || { cat "$T/r.log"; fail "eval retrieval should score the 376 test images"; }
"$BIN" eval zeroshot "$M" --data "$E" --lang en >"$T/z.log" 2>&1 || { cat "$T/z.log"; fail "eval zeroshot"; }
grep -q "zero-shot accuracy" "$T/z.log" || { cat "$T/z.log"; fail "eval zeroshot should print its accuracy"; }
printf '红色\n蓝色\n' >"$T/labels.txt"
"$BIN" classify "$M" --labels "$T/labels.txt" "$T/red.png" "$T/blue.png" >"$T/c.log" 2>&1 || { cat "$T/c.log"; fail "classify"; }
[ "$(grep -c '"label"' "$T/c.log")" -eq 2 ] || { cat "$T/c.log"; fail "classify should label 2 images"; }

"$BIN" index "$M" "$T/red.png" "$T/blue.png" -o "$T/files.index" 2>"$T/i.log" || { cat "$T/i.log"; fail "index of files"; }
"$BIN" index "$M" --data "$E" --split test -o "$T/test.index" 2>"$T/i.log" || { cat "$T/i.log"; fail "index --data"; }
grep -q "376 images" "$T/i.log" || { cat "$T/i.log"; fail "index should embed the 376 test images"; }
"$BIN" search "$T/test.index" "一只猫" "披萨" -k 3 >"$T/s.log" 2>&1 || { cat "$T/s.log"; fail "search"; }
[ "$(grep -c '"search_ms"' "$T/s.log")" -eq 2 ] || { cat "$T/s.log"; fail "search should answer 2 queries"; }
[ "$(grep -o '"cosine"' "$T/s.log" | wc -l)" -eq 6 ] || { cat "$T/s.log"; fail "search should give 3 results a query"; }
"$BIN" search "$T/files.index" red -k 5 >"$T/s2.log" 2>&1 || { cat "$T/s2.log"; fail "search files"; }
grep -q 'red.png' "$T/s2.log" && grep -q 'blue.png' "$T/s2.log" || { cat "$T/s2.log"; fail "search should list both files"; }
expect_error "not a liandan image-text index" "$BIN" search "$T/labels.txt" cat

# a TSV list with a bad image: rejected with its line, or skipped with a count
printf 'bad png\n' >"$T/bad.png"
printf 'image\tcaption\nred.png\t红色\nbad.png\t坏\nblue.png\t蓝色\n' >"$T/list.tsv"
sed -e "s|\"train_data\": \"$E\"|\"train_data\": \"$T/list.tsv\"|" -e 's|"val_split": "dev"|"val_split": ""|' \
    -e 's|"batch_size": 16|"batch_size": 2|' -e "s|$T/run|$T/run2|" "$T/clip.json" >"$T/list.json"
expect_error "list.tsv:3: " "$BIN" pretrain "$T/list.json"
expect_error "needs an image-text (clip) model" "$BIN" embed "$T/nonexistent" --image "$T/red.png"
expect_error "give --image FILE or --text TEXT" "$BIN" embed "$M"
expect_error "not a PNG or JPEG" "$BIN" embed "$M" --image "$T/bad.png"
expect_error "--labels FILE is required" "$BIN" classify "$M" "$T/red.png"
expect_error "nonexistent/config.json" "$BIN" eval retrieval "$T/nonexistent" --data "$E"
# transformers' CLIPModel layout: a 4-step pretrain with a CLIPTextConfig text tower, `liandan init`
# of a random one with a vocabulary, embed; without vocab.txt images embed and texts are refused
sed -e 's|"model_type": "bert"|"model_type": "clip_text_model"|' -e "s|$T/run\"|$T/runhf\"|" "$T/clip.json" >"$T/hf.json"
"$BIN" pretrain "$T/hf.json" >"$T/hf.log" 2>&1 || { cat "$T/hf.log"; fail "pretrain the CLIPModel layout"; }
grep -q '"clip_text_model"' "$T/runhf/model/config.json" || fail "the CLIPModel run should write a CLIPTextConfig"
"$BIN" embed "$T/runhf/model" --image "$T/red.png" --text 红色 >"$T/hfe.jsonl" 2>&1 || { cat "$T/hfe.jsonl"; fail "embed (CLIPModel)"; }
[ "$(grep -c '"embedding"' "$T/hfe.jsonl")" -eq 2 ] || { cat "$T/hfe.jsonl"; fail "embed (CLIPModel) should print 2 embeddings"; }
cat >"$T/hfinit.json" <<JSON
{"model_type": "clip", "projection_dim": 8,
 "text_config": {"vocab_size": 4096, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "max_position_embeddings": 12, "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0},
 "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "image_size": 32, "patch_size": 8}}
JSON
"$BIN" init "$T/hfinit.json" -o "$T/hfinit" --tokenizer "$M/vocab.txt" 2>"$T/init.log" || { cat "$T/init.log"; fail "init clip"; }
grep -q '"vision_model.embeddings.class_embedding"' "$T/hfinit/model.safetensors" || fail "init should write CLIPModel names"
"$BIN" embed "$T/hfinit" --image "$T/blue.png" --text 蓝色 >"$T/hfi.jsonl" 2>&1 || { cat "$T/hfi.jsonl"; fail "embed (init)"; }
rm "$T/hfinit/vocab.txt"
"$BIN" embed "$T/hfinit" --image "$T/blue.png" >"$T/hfi2.jsonl" 2>&1 || { cat "$T/hfi2.jsonl"; fail "embed an image without vocab.txt"; }
cmp -s <(grep -o '"embedding".*' "$T/hfi.jsonl" | head -1) <(grep -o '"embedding".*' "$T/hfi2.jsonl") ||
  fail "the image embedding should not depend on the vocabulary"
expect_error "no vocab.txt" "$BIN" embed "$T/hfinit" --text 蓝色
expect_error "written as a directory" "$BIN" init "$T/hfinit.json" -o "$T/x.gguf"
echo "$NAME: ok"
