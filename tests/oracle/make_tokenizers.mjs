// make_tokenizers.mjs — writes test tokenizers of the other model types from a byte-level BPE
// tokenizer.json that liandan trained (no downloads): its tokens, read as text, become
//   spm.json        a SentencePiece-style BPE as Llama-2's tokenizer.json has it: <unk> <s> </s>,
//                   the 256 <0xXX> byte tokens, pieces with ▁ for spaces, merges derived from the
//                   pieces as transformers' SentencePiece converter derives them (every split into
//                   two pieces, ordered by the merged piece's rank), Prepend/Replace normalizer,
//                   byte fallback, <s> added by the post-processor;
//   wordpiece.json  a BERT WordPiece vocabulary (lowercased word starts and ## continuations)
//                   with BertNormalizer, BertPreTokenizer and [CLS] $A [SEP].
// Usage: node make_tokenizers.mjs bytelevel.json OUTDIR
import fs from 'node:fs';

const [src, outDir] = process.argv.slice(2);
const j = JSON.parse(fs.readFileSync(src, 'utf8'));
// GPT-2's byte <-> code point map
const bs = [];
for (let b = 33; b <= 126; b++) bs.push(b);
for (let b = 161; b <= 172; b++) bs.push(b);
for (let b = 174; b <= 255; b++) bs.push(b);
const cs = bs.slice();
let n = 0;
for (let b = 0; b < 256; b++) if (!bs.includes(b)) bs.push(b), cs.push(256 + n++);
const toByte = new Map(cs.map((c, i) => [String.fromCodePoint(c), bs[i]]));
const special = new Set(j.added_tokens.map((a) => a.content));
const texts = []; // token texts in id order (valid UTF-8 only)
const dec = new TextDecoder('utf-8', { fatal: true });
for (const [tok, id] of Object.entries(j.model.vocab).sort((a, b) => a[1] - b[1])) {
  if (special.has(tok)) continue;
  const bytes = Uint8Array.from([...tok].map((c) => toByte.get(c)));
  try {
    const s = dec.decode(bytes);
    if (!/[\u0000-\u001f\u007f]/u.test(s)) texts.push(s);
  } catch {}
}

// ---- SentencePiece-style BPE ----
const spVocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
for (let b = 0; b < 256; b++) spVocab['<0x' + b.toString(16).toUpperCase().padStart(2, '0') + '>'] = 3 + b;
let next = 259;
// every character of every piece is a piece itself, as in a real SentencePiece vocabulary
for (const t of texts)
  for (const c of t.replaceAll(' ', '\u2581')) if (!(c in spVocab)) spVocab[c] = next++;
for (const t of texts) {
  const p = t.replaceAll(' ', '\u2581');
  if (!(p in spVocab)) spVocab[p] = next++;
}
const merges = [];
for (const [p, id] of Object.entries(spVocab)) {
  if (id < 259) continue;
  const chars = [...p];
  const local = [];
  for (let k = 1; k < chars.length; k++) {
    const l = chars.slice(0, k).join(''), r = chars.slice(k).join('');
    if (l in spVocab && r in spVocab && spVocab[l] >= 259 && spVocab[r] >= 259) local.push([l, r]);
  }
  local.sort((x, y) => spVocab[x[0]] - spVocab[y[0]] || spVocab[x[1]] - spVocab[y[1]]);
  merges.push(...local);
}
const added = (names) =>
  names.map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
const spm = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: added([['<unk>', 0], ['<s>', 1], ['</s>', 2]]),
  normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
  pre_tokenizer: null,
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
  },
  decoder: {
    type: 'Sequence',
    decoders: [
      { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
      { type: 'ByteFallback' },
      { type: 'Fuse' },
      { type: 'Strip', content: ' ', start: 1, stop: 0 },
    ],
  },
  model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: spVocab, merges },
};
fs.writeFileSync(`${outDir}/spm.json`, JSON.stringify(spm));

// ---- WordPiece ----
const wpVocab = { '[PAD]': 0, '[UNK]': 1, '[CLS]': 2, '[SEP]': 3, '[MASK]': 4 };
next = 5;
const add = (p) => {
  if (p && !(p in wpVocab)) wpVocab[p] = next++;
};
for (const t of texts) {
  const w = t.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '');
  if (/\s/u.test(w.trim()) || /[\p{P}]/u.test(w)) continue;
  if (w.startsWith(' ')) add(w.slice(1));
  else if (!/\s/u.test(w)) {
    add('##' + w);
    if ([...w].length === 1) add(w);
  }
}
const wp = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: added([['[PAD]', 0], ['[UNK]', 1], ['[CLS]', 2], ['[SEP]', 3], ['[MASK]', 4]]),
  normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
  pre_tokenizer: { type: 'BertPreTokenizer' },
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }],
    special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
  },
  decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: wpVocab },
};
fs.writeFileSync(`${outDir}/wordpiece.json`, JSON.stringify(wp));
console.log(`spm.json: ${Object.keys(spVocab).length} tokens, ${merges.length} merges; wordpiece.json: ${Object.keys(wpVocab).length} tokens`);
