// ui_chromium.mjs — the web UI in headless Chromium (Debian's, driven by playwright-core): the
// catalogue lists the model, the playground streams an answer (text grows while the request
// runs, then the message is marked done), a dataset uploads, a fine-tuning job starts and its
// loss chart grows (the server holds the job's worker after step 5 until HOLD_FILE is gone),
// and a wrong key shows the server's error.
// usage: node ui_chromium.mjs URL KEY MODEL SHOT_DIR TRAIN.jsonl HOLD_FILE   (screenshots: SHOT_DIR/*.png)
import { createRequire } from 'node:module';

const require = createRequire(new URL('../oracle/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const fs = require('node:fs');
const [url, key, model, shots, trainPath, holdFile] = process.argv.slice(2);
const fail = (msg) => { console.error(`ui_chromium: ${msg}`); process.exit(1); };

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
                                        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  // A fast host writes the whole answer before the page reads once (CI: one read of 69
  // characters; a throttled download still gave one read under load), and the server puts
  // every token decoded since its last event into one chunk (a fast host: the whole answer in
  // one delta), so the page's stream reads hand it one character's chunk at a time, 15 ms
  // apart, as a slow network and a slow model would: the check below is of the page's
  // rendering, not of the host's speed. (The server's streaming is checked event by event by
  // serve_oracle's openai client.)
  await page.addInitScript(() => {
    const read = ReadableStreamDefaultReader.prototype.read;
    const dec = new TextDecoder(), enc = new TextEncoder();
    // a whole `data: {...}` event whose delta has several characters: one event per character
    // (the finish reason only on the last)
    const perChar = (ev) => {
      if (!(ev instanceof Uint8Array)) return [ev];
      const m = /^data: (\{.*\})\n\n$/s.exec(dec.decode(ev));
      let o = null;
      try { o = m && JSON.parse(m[1]); } catch { o = null; }
      const ch = o && Array.isArray(o.choices) && o.choices.length === 1 ? o.choices[0] : null;
      const d = ch && ch.delta;
      if (!d || typeof d.content !== 'string' || [...d.content].length < 2) return [ev];
      const cs = [...d.content];
      return cs.map((c, i) => enc.encode(`data: ${JSON.stringify({ ...o, choices: [{ ...ch,
        finish_reason: i + 1 < cs.length ? null : ch.finish_reason, delta: { ...d, content: c } }] })}\n\n`));
    };
    ReadableStreamDefaultReader.prototype.read = async function () {
      this.events = this.events || [];
      if (!this.events.length) {
        const r = await read.call(this);
        if (r.done) return r;
        let start = 0;
        for (let i = 0; i + 1 < r.value.length; i++)
          if (r.value[i] === 10 && r.value[i + 1] === 10) this.events.push(...perChar(r.value.slice(start, i + 2))), start = i + 2;
        if (start < r.value.length) this.events.push(r.value.slice(start));
      }
      await new Promise((done) => setTimeout(done, 15));
      return { value: this.events.shift(), done: false };
    };
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.fill('#key', key);
  await page.dispatchEvent('#key', 'change');
  await page.waitForSelector(`#modelrows td:text-is("${model}")`, { timeout: 20000 });
  if (shots) await page.screenshot({ path: `${shots}/serve_models.png` });

  // the playground: send a message, watch the answer stream in
  await page.click('nav button[data-tab="chat"]');
  await page.selectOption('#chatmodel', model);
  await page.fill('#maxtok', '200');
  await page.fill('#prompt', '寫一首詩');
  // record every length the answer takes as it is written into the page
  await page.evaluate(() => {
    window.seen = [];
    new MutationObserver(() => {
      const s = document.getElementById('streaming');
      if (s) window.seen.push(s.textContent.length);
    }).observe(document.getElementById('chatlog'), { subtree: true, childList: true, characterData: true });
  });
  await page.click('#send');
  await page.waitForSelector('#chatlog .msg span[data-done="1"]', { timeout: 60000 });
  const lengths = await page.evaluate(() => window.seen);
  const final = await page.evaluate(() => { const m = document.querySelectorAll('#chatlog .msg span'); return m[m.length - 1].textContent.length; });
  if (!(final > 0)) fail('no answer appeared');
  const partial = [...new Set(lengths.filter((n) => n > 0 && n < final))];
  if (!partial.length) fail(`the answer did not stream: it appeared at once (${final} characters)`);
  const err = await page.textContent('#chaterr');
  if (err) fail(`playground error: ${err}`);
  if (shots) await page.screenshot({ path: `${shots}/serve_playground.png` });

  // datasets: upload a file; fine-tuning: start a LoRA job on it and watch the loss chart grow
  await page.click('nav button[data-tab="files"]');
  await page.setInputFiles('#upload', trainPath);
  await page.click('#uploadbtn');
  await page.waitForSelector('#filerows td:text-is("train.jsonl")', { timeout: 20000 });
  await page.click('nav button[data-tab="jobs"]');
  await page.waitForSelector('#jobfile option', { state: 'attached', timeout: 20000 });
  await page.selectOption('#jobmodel', model);
  await page.fill('#epochs', '3');
  await page.fill('#suffix', 'ui');
  await page.click('#startjob');
  const points = () => page.evaluate(() => +(document.getElementById('loss').dataset.points || 0));
  await page.waitForFunction(() => /running/.test(document.getElementById('jobtitle').textContent) &&
                                   +(document.getElementById('loss').dataset.points || 0) >= 2, null, { timeout: 60000 });
  const held = await points();
  if (shots) await page.screenshot({ path: `${shots}/serve_finetune.png` });
  fs.unlinkSync(holdFile); /* the worker goes on */
  await page.waitForFunction(() => /succeeded/.test(document.getElementById('jobtitle').textContent), null, { timeout: 60000 });
  await page.waitForFunction((n) => +(document.getElementById('loss').dataset.points || 0) > n, held, { timeout: 10000 })
    .catch(() => fail(`the loss chart did not grow past ${held} points`));
  const jerr = await page.textContent('#joberr');
  if (jerr) fail(`fine-tuning error: ${jerr}`);

  // a wrong key: the server's message is shown
  await page.fill('#key', 'ld-wrong');
  await page.dispatchEvent('#key', 'change');
  await page.click('nav button[data-tab="models"]');
  await page.waitForFunction(() => document.getElementById('modelerr').textContent.includes('API key'), null, { timeout: 10000 });
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(`ui_chromium: ok (answer of ${final} characters in ${partial.length + 1}+ steps; loss chart ${held} points while running, then more)`);
} finally {
  await browser.close();
}
