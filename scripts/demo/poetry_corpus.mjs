// poetry_corpus.mjs — turns the npm package chinese-poetry (全唐诗, MIT licence) into the demo's
// training text: one poem per line, "title<TAB>author<TAB>text", keeping the regular 5- and
// 7-character verse (絕句 and 律詩 shapes: 4 or 8 clauses of equal length, '，' and '。'
// alternating). Usage: node poetry_corpus.mjs OUT.tsv
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const out = process.argv[2];
if (!out) {
  console.error('usage: node poetry_corpus.mjs OUT.tsv');
  process.exit(2);
}
const pkgDir = path.dirname(require.resolve('chinese-poetry/package.json'));
const dir = path.join(pkgDir, 'dist', 'quantangshi');
const files = fs.readdirSync(dir).filter((f) => /^poet\.tang\.\d+\.json$/.test(f)).sort(
  (a, b) => Number(a.split('.')[2]) - Number(b.split('.')[2]));
const regular = /^(?:[\u4e00-\u9fff]+，[\u4e00-\u9fff]+。)+$/u;
const clauseRe = /[\u4e00-\u9fff]+/gu;
let total = 0, kept = 0;
const lines = [];
for (const f of files) {
  const poems = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  for (const p of poems) {
    total++;
    const text = (p.paragraphs || []).join('').replace(/\s+/g, '');
    if (!regular.test(text)) continue;
    const clauses = text.match(clauseRe) || [];
    const n = clauses[0] ? [...clauses[0]].length : 0;
    if ((n !== 5 && n !== 7) || (clauses.length !== 4 && clauses.length !== 8)) continue;
    if (!clauses.every((c) => [...c].length === n)) continue;
    const clean = (s) => String(s || '').replace(/[\t\n\r]/g, ' ').trim();
    lines.push(`${clean(p.title)}\t${clean(p.author)}\t${text}`);
    kept++;
  }
}
fs.writeFileSync(out, lines.join('\n') + '\n');
console.error(`poetry corpus: ${kept} regular poems of ${total} in 全唐诗 -> ${out}`);
