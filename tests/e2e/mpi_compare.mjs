// mpi_compare.mjs — used by mpi_train.sh (not a test itself): compares two training runs.
//   node mpi_compare.mjs losses A/metrics.jsonl B/metrics.jsonl FROM_STEP TOL
//     every step >= FROM_STEP in both: |loss_a - loss_b| <= TOL * |loss_a| (and val_loss alike)
//   node mpi_compare.mjs tensors A B TOL
//     A, B: a .safetensors file, or a model directory (model.safetensors, or the shards that
//     model.safetensors.index.json's weight_map lists, read as Hugging Face does);
//     same tensor names and shapes; every F32 value within TOL * max(1, |a|)
// Prints the largest difference seen and exits 1 on a mismatch.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const [mode, a, b, ...rest] = process.argv.slice(2);
const fail = (msg) => { console.error(`mpi_compare: ${msg}`); process.exit(1); };

function metrics(path) {
  const m = new Map();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const o = JSON.parse(line);
    m.set(o.step, o);
  }
  return m;
}

function safetensors(path) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n, out = new Map();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') fail(`${path}: ${name} is ${t.dtype}, expected F32`);
    const [s, e] = t.data_offsets;
    const bytes = buf.subarray(base + s, base + e);
    const f = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    out.set(name, { shape: t.shape.join('x'), data: f });
  }
  return out;
}

function model(path) {
  if (!statSync(path).isDirectory()) return safetensors(path);
  const index = join(path, 'model.safetensors.index.json');
  if (!existsSync(index)) return safetensors(join(path, 'model.safetensors'));
  const map = JSON.parse(readFileSync(index, 'utf8')).weight_map, out = new Map();
  for (const file of new Set(Object.values(map))) {
    for (const [name, t] of safetensors(join(path, file))) {
      if (map[name] !== file) fail(`${path}: ${name} is in ${file}, the weight_map says ${map[name]}`);
      out.set(name, t);
    }
  }
  if (out.size !== Object.keys(map).length) fail(`${path}: the weight_map lists ${Object.keys(map).length} tensors, the shards hold ${out.size}`);
  return out;
}

if (mode === 'losses') {
  const [from, tol] = [Number(rest[0]), Number(rest[1])];
  const ma = metrics(a), mb = metrics(b);
  let worst = 0, n = 0;
  for (const [step, oa] of ma) {
    if (step < from) continue;
    const ob = mb.get(step);
    if (!ob) fail(`${b} has no step ${step}`);
    for (const key of ['loss', 'val_loss']) {
      if (!(key in oa) && !(key in ob)) continue;
      if (!(key in oa) || !(key in ob)) fail(`step ${step}: ${key} in only one run`);
      const rel = Math.abs(oa[key] - ob[key]) / Math.max(Math.abs(oa[key]), 1e-30);
      worst = Math.max(worst, rel), n++;
      if (rel > tol) fail(`step ${step}: ${key} ${oa[key]} vs ${ob[key]} (relative ${rel.toExponential(2)} > ${tol})`);
    }
  }
  for (const step of mb.keys()) if (step >= from && !ma.has(step)) fail(`${a} has no step ${step}`);
  if (n === 0) fail('no steps compared');
  console.log(`losses: ${n} values, largest relative difference ${worst.toExponential(2)}`);
} else if (mode === 'tensors') {
  const tol = Number(rest[0]);
  const ta = model(a), tb = model(b);
  if (ta.size !== tb.size) fail(`${ta.size} vs ${tb.size} tensors`);
  let worst = 0, count = 0;
  for (const [name, x] of ta) {
    const y = tb.get(name);
    if (!y) fail(`${b} has no tensor ${name}`);
    if (x.shape !== y.shape) fail(`${name}: shape ${x.shape} vs ${y.shape}`);
    for (let i = 0; i < x.data.length; i++) {
      const d = Math.abs(x.data[i] - y.data[i]) / Math.max(1, Math.abs(x.data[i]));
      if (!(d <= tol)) fail(`${name}[${i}]: ${x.data[i]} vs ${y.data[i]}`);
      worst = Math.max(worst, d), count++;
    }
  }
  console.log(`tensors: ${ta.size} tensors, ${count} values, largest difference ${worst.toExponential(2)}`);
} else {
  fail('usage: losses A B FROM_STEP TOL | tensors A B TOL');
}
