// train_rust.mjs — the peer for `liandan bench tokenizer`'s BPE training row: Hugging Face's Rust
// tokenizers (npm package `tokenizers`, native bindings) trains a byte-level BPE (GPT-2's regex,
// no prefix space) on a text file, one sequence a line, and prints its wall and CPU seconds (the
// whole process: every Rayon thread) as JSON.
//   node train_rust.mjs FILE
// The binding's train() uses the model's default BpeTrainer (30,000 tokens, min_frequency 0;
// the vocabulary size cannot be set from Node). Its thread pool is sized by RAYON_NUM_THREADS.
import { Tokenizer, BPE, byteLevelPreTokenizer } from 'tokenizers';

const [file] = process.argv.slice(2);
if (!file) {
  console.error('usage: node train_rust.mjs FILE');
  process.exit(2);
}
const tok = new Tokenizer(BPE.empty());
tok.setPreTokenizer(byteLevelPreTokenizer(false, true));
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
tok.train([file]);
const c1 = process.cpuUsage(c0);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu_seconds = (c1.user + c1.system) / 1e6;
console.log(JSON.stringify({ seconds, cpu_seconds, vocab: tok.getVocabSize(true) }));
