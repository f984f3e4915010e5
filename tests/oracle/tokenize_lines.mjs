// tokenize_lines.mjs — the independent oracle: encodes each line of a text file with
// @huggingface/tokenizers (the JS port of Hugging Face tokenizers) and prints the ids of each
// line, space-separated, one line per input line. Usage: node tokenize_lines.mjs tokenizer.json FILE [--bench]
import fs from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';

const [tokPath, file, flag] = process.argv.slice(2);
if (!tokPath || !file) {
  console.error('usage: node tokenize_lines.mjs tokenizer.json FILE [--bench]');
  process.exit(2);
}
const tok = new Tokenizer(JSON.parse(fs.readFileSync(tokPath, 'utf8')), {});
const lines = fs.readFileSync(file, 'utf8').split('\n');
if (lines.length && lines[lines.length - 1] === '') lines.pop();
if (flag === '--bench') {
  // throughput only: encode every line, report MB/s on stdout
  const bytes = Buffer.byteLength(lines.join('\n'), 'utf8');
  const t0 = process.hrtime.bigint();
  let n = 0;
  for (const l of lines) n += tok.encode(l, { add_special_tokens: false }).ids.length;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ bytes, tokens: n, seconds: s, mb_per_s: bytes / 1e6 / s }));
} else {
  const out = [];
  for (const l of lines) out.push(tok.encode(l, { add_special_tokens: false }).ids.join(' '));
  process.stdout.write(out.join('\n') + '\n');
}
