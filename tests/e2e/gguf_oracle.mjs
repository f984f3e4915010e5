// gguf_oracle.mjs — the independent side of tests/e2e/gguf_oracle.sh. It writes inputs with
// @huggingface/gguf (and a hand-written safetensors file), and checks what `liandan inspect
// --json` reports against what @huggingface/gguf parses from the same bytes.
//   node gguf_oracle.mjs make DIR                  -> DIR/base.gguf, DIR/tiny.safetensors
//   node gguf_oracle.mjs compare-gguf FILE JSON    -> liandan's view of FILE == @huggingface/gguf's
//   node gguf_oracle.mjs compare-st FILE JSON      -> liandan's view of a safetensors FILE == its header
//   node gguf_oracle.mjs check-data GGUF ST        -> each tensor of ST is in GGUF with the same bytes
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(new URL("../oracle/package.json", import.meta.url));
const { gguf, serializeGgufMetadata } = require("@huggingface/gguf");

let failures = 0;
function fail(msg) {
  console.error("oracle mismatch: " + msg);
  failures++;
}
function eq(what, ours, theirs) {
  if (ours !== theirs) fail(`${what}: liandan ${String(ours)} vs @huggingface/gguf ${String(theirs)}`);
}

const T = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 };

function make(dir) {
  const md = {
    version: { value: 3, type: T.UINT32 },
    tensor_count: { value: 0n, type: T.UINT64 },
    kv_count: { value: 0n, type: T.UINT64 },
    "general.architecture": { value: "llama", type: T.STRING },
    "general.alignment": { value: 64, type: T.UINT32 },
    "x.u8": { value: 200, type: T.UINT8 },
    "x.i8": { value: -100, type: T.INT8 },
    "x.u16": { value: 60000, type: T.UINT16 },
    "x.i16": { value: -30000, type: T.INT16 },
    "x.u32": { value: 4000000000, type: T.UINT32 },
    "x.i32": { value: -2000000000, type: T.INT32 },
    "x.f32": { value: 0.1, type: T.FLOAT32 },
    "x.bool": { value: true, type: T.BOOL },
    "x.u64": { value: 18446744073709551615n, type: T.UINT64 },
    "x.i64": { value: -9223372036854775808n, type: T.INT64 },
    "x.f64": { value: 1e-300, type: T.FLOAT64 },
    "x.unicode": { value: "h\u00e9llo \u4e16\u754c \ud83d\ude00", type: T.STRING },
    "tokenizer.ggml.tokens": { value: ["<s>", "\u00e9", 'a"b\\c', "\n\t", ""], type: T.ARRAY, subType: T.STRING },
    "tokenizer.ggml.scores": { value: [0, -1.5, 3.25, 1e-7, 0.3], type: T.ARRAY, subType: T.FLOAT32 },
    "tokenizer.ggml.token_type": { value: [1, 2, 3, -4, 6], type: T.ARRAY, subType: T.INT32 },
    // (subType UINT8 = 0 is rejected by serializeGgufMetadata: it tests `!subType`)
    "x.empty": { value: [], type: T.ARRAY, subType: T.UINT16 },
    "x.bools": { value: [true, false], type: T.ARRAY, subType: T.BOOL },
    "x.u64s": { value: [1n, 1n << 60n], type: T.ARRAY, subType: T.UINT64 },
  };
  fs.writeFileSync(path.join(dir, "base.gguf"), serializeGgufMetadata(md, { alignment: 64 }));

  // tiny.safetensors, written by hand from the spec
  const tensors = [
    ["tok_embd.weight", "F32", [3, 4]],
    ["norm.weight", "F16", [4]],
    ["blk.0.w", "BF16", [2, 2, 2]],
    ["ids", "I32", [5]],
  ];
  const size = { F32: 4, F16: 2, BF16: 2, I32: 4 };
  const header = { __metadata__: { format: "pt" } };
  let off = 0;
  const chunks = [];
  for (const [name, dtype, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * size[dtype];
    const buf = Buffer.alloc(n);
    for (let i = 0; i < n; i++) buf[i] = (i * 31 + name.length * 7) & 0xff;
    header[name] = { dtype, shape, data_offsets: [off, off + n] };
    off += n;
    chunks.push(buf);
  }
  let h = JSON.stringify(header);
  while ((h.length + 8) % 8) h += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(h)));
  fs.writeFileSync(path.join(dir, "tiny.safetensors"), Buffer.concat([len, Buffer.from(h), ...chunks]));
}

function cmpValue(what, type, ours, theirs) {
  switch (type) {
    case T.UINT64:
    case T.INT64:
      eq(what, BigInt(ours), theirs);
      break;
    case T.FLOAT32:
      if (Number.isNaN(theirs)) eq(what, ours, "nan");
      else eq(what, Math.fround(Number(ours)), theirs);
      break;
    case T.ARRAY:
      fail(`${what}: nested arrays are not compared`);
      break;
    default:
      eq(what, ours, theirs);
  }
}

async function compareGguf(file, jsonFile) {
  const ours = JSON.parse(fs.readFileSync(jsonFile, "utf8"));
  const theirs = await gguf(path.resolve(file), { allowLocalFile: true, typedMetadata: true });
  const tm = theirs.typedMetadata;
  eq("format", ours.format, "gguf");
  eq("version", ours.version, tm.version.value);
  eq("data offset", BigInt(ours.data_offset), theirs.tensorDataOffset);
  eq("kv count", BigInt(ours.metadata.length), tm.kv_count.value);
  const keys = Object.keys(tm).filter((k) => !["version", "tensor_count", "kv_count"].includes(k));
  eq("key order", ours.metadata.map((e) => e.key).join("|"), keys.join("|"));
  for (const e of ours.metadata) {
    const t = tm[e.key];
    if (!t) {
      fail(`key ${e.key} missing in @huggingface/gguf's parse`);
      continue;
    }
    eq(`${e.key}: type`, e.type, t.type);
    if (e.type === T.ARRAY) {
      eq(`${e.key}: element type`, e.elem_type, t.subType);
      eq(`${e.key}: length`, e.value.length, t.value.length);
      for (let i = 0; i < Math.min(e.value.length, t.value.length); i++) cmpValue(`${e.key}[${i}]`, e.elem_type, e.value[i], t.value[i]);
    } else {
      cmpValue(e.key, e.type, e.value, t.value);
    }
  }
  eq("tensor count", BigInt(ours.tensors.length), tm.tensor_count.value);
  ours.tensors.forEach((o, i) => {
    const t = theirs.tensorInfos[i];
    if (!t) return fail(`tensor ${i} missing`);
    eq(`tensor ${i} name`, o.name, t.name);
    eq(`${o.name}: n_dims`, o.dims.length, t.n_dims);
    eq(`${o.name}: dims`, o.dims.join(","), t.shape.map(String).join(","));
    eq(`${o.name}: shape is dims reversed`, o.shape.join(","), [...t.shape].reverse().map(String).join(","));
    eq(`${o.name}: type`, o.type_id, t.dtype);
    eq(`${o.name}: offset`, BigInt(o.offset), t.offset);
  });
  console.log(`compare-gguf ${path.basename(file)}: ${ours.metadata.length} keys, ${ours.tensors.length} tensors`);
}

function readSafetensors(file) {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  return { header: JSON.parse(b.subarray(8, 8 + n).toString("utf8")), data: b.subarray(8 + n) };
}

function compareSt(file, jsonFile) {
  const ours = JSON.parse(fs.readFileSync(jsonFile, "utf8"));
  const { header } = readSafetensors(file);
  eq("format", ours.format, "safetensors");
  const f = ours.files[0];
  eq("metadata", JSON.stringify(f.metadata), JSON.stringify(header.__metadata__ ?? {}));
  const names = Object.keys(header).filter((k) => k !== "__metadata__").sort();
  eq("tensor names", f.tensors.map((t) => t.name).join("|"), names.join("|"));
  for (const t of f.tensors) {
    const h = header[t.name];
    if (!h) continue;
    eq(`${t.name}: dtype`, t.dtype, h.dtype);
    eq(`${t.name}: shape`, t.shape.join(","), h.shape.join(","));
    eq(`${t.name}: offset`, Number(t.offset), h.data_offsets[0]);
    eq(`${t.name}: nbytes`, Number(t.nbytes), h.data_offsets[1] - h.data_offsets[0]);
  }
  console.log(`compare-st ${path.basename(file)}: ${f.tensors.length} tensors`);
}

async function checkData(ggufFile, stFile) {
  const g = await gguf(path.resolve(ggufFile), { allowLocalFile: true });
  const bytes = fs.readFileSync(ggufFile);
  const { header, data } = readSafetensors(stFile);
  const ids = { F32: 0, F16: 1, BF16: 30, I32: 26 };
  for (const [name, h] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const t = g.tensorInfos.find((x) => x.name === name);
    if (!t) {
      fail(`tensor ${name} is not in ${ggufFile}`);
      continue;
    }
    eq(`${name}: type`, t.dtype, ids[h.dtype]);
    eq(`${name}: shape`, [...t.shape].reverse().map(String).join(","), h.shape.join(","));
    const start = Number(g.tensorDataOffset + t.offset);
    const want = data.subarray(h.data_offsets[0], h.data_offsets[1]);
    const got = bytes.subarray(start, start + want.length);
    if (!want.equals(got)) fail(`${name}: data bytes differ`);
  }
  console.log(`check-data ${path.basename(ggufFile)}: ok`);
}

const [cmd, a, b] = process.argv.slice(2);
if (cmd === "make") make(a);
else if (cmd === "compare-gguf") await compareGguf(a, b);
else if (cmd === "compare-st") compareSt(a, b);
else if (cmd === "check-data") await checkData(a, b);
else {
  console.error("usage: gguf_oracle.mjs make|compare-gguf|compare-st|check-data ...");
  process.exit(2);
}
process.exit(failures ? 1 : 0);
