// tokenize_rust.mjs — the independent oracle: encodes each line of a text file with Hugging
// Face's Rust tokenizers (npm package `tokenizers`, native bindings) and prints the ids of
// each line, space-separated, one line per input line.
//   node tokenize_rust.mjs tokenizer.json FILE [--add-special]     ids per line
//   node tokenize_rust.mjs tokenizer.json FILE --bench [reps]      encodeBatch throughput (JSON)
// The Rust thread pool is sized by RAYON_NUM_THREADS (bench tokenizer sets it to its own count).
import fs from 'node:fs';
import { Tokenizer } from 'tokenizers';

const [tokPath, file, flag, reps] = process.argv.slice(2);
if (!tokPath || !file) {
  console.error('usage: node tokenize_rust.mjs tokenizer.json FILE [--add-special | --bench [reps]]');
  process.exit(2);
}
const tok = Tokenizer.fromFile(tokPath);
const lines = fs.readFileSync(file, 'utf8').split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop();
const addSpecial = flag === '--add-special';
if (flag === '--bench') {
  const bytes = Buffer.byteLength(lines.join('\n'), 'utf8');
  const times = [];
  let n = 0;
  await tok.encodeBatch(lines.slice(0, 64), { addSpecialTokens: false }); // warm up
  for (let r = 0; r < Number(reps || 5); r++) {
    const t0 = process.hrtime.bigint();
    const enc = await tok.encodeBatch(lines, { addSpecialTokens: false });
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    n = 0;
    for (const e of enc) n += e.getLength();
  }
  times.sort((a, b) => a - b);
  const s = times[Math.floor(times.length / 2)];
  console.log(JSON.stringify({ bytes, tokens: n, seconds: s, mb_per_s: bytes / 1e6 / s }));
} else {
  const enc = await tok.encodeBatch(lines, { addSpecialTokens: addSpecial });
  process.stdout.write(enc.map((e) => e.getIds().join(' ')).join('\n') + (lines.length ? '\n' : ''));
}
