// serve_load.mjs — load on a running `liandan serve` (driven by scripts/serve_load.sh):
// C concurrent clients send streaming completions back to back for S seconds; a share of the
// requests (DROP) is aborted mid-stream. Every stream that finishes must be well formed (JSON
// chunks, one finish_reason, then [DONE]). Prints a JSON report: requests, drops, errors,
// generated tokens/s, time to first token and request latency percentiles.
// usage: node serve_load.mjs URL MODEL CLIENTS SECONDS DROP [KEY]
const [url, model, clients = '64', seconds = '120', drop = '0.2', key = ''] = process.argv.slice(2);
const C = +clients, S = +seconds, D = +drop;
const headers = { 'Content-Type': 'application/json', ...(key ? { Authorization: `Bearer ${key}` } : {}) };
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const words = ['床前明月光', '疑是地上霜', '舉頭望明月', '低頭思故鄉', '春眠不覺曉', '處處聞啼鳥', '白日依山盡', '黃河入海流'];

const stats = { requests: 0, finished: 0, dropped: 0, malformed: 0, errors: 0, rejected: 0, tokens: 0, ttft: [], latency: [] };
const deadline = Date.now() + S * 1000;

async function one() {
  const prompt = words[Math.floor(rand() * words.length)] + words[Math.floor(rand() * words.length)];
  const max_tokens = 16 + Math.floor(rand() * 48);
  const dropAfter = rand() < D ? 1 + Math.floor(rand() * 8) : -1;
  const ctl = new AbortController();
  const t0 = performance.now();
  stats.requests++;
  let r;
  try {
    r = await fetch(`${url}/v1/completions`, { method: 'POST', headers, signal: ctl.signal,
      body: JSON.stringify({ model, prompt, max_tokens, temperature: 0.9, stream: true }) });
  } catch (e) { stats.errors++; return; }
  if (r.status === 429 || r.status === 503) { stats.rejected++; await r.text(); await new Promise((ok) => setTimeout(ok, 200)); return; }
  if (!r.ok) { stats.errors++; console.error(`HTTP ${r.status}: ${await r.text()}`); return; }
  const reader = r.body.getReader(), dec = new TextDecoder();
  let buf = '', chunks = 0, finish = 0, done = false, first = 0, bad = false;
  try {
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (ev.startsWith(':')) continue; // keep-alive comment
        if (!ev.startsWith('data: ')) { bad = true; continue; }
        const data = ev.slice(6);
        if (data === '[DONE]') { done = true; continue; }
        let c;
        try { c = JSON.parse(data); } catch (e) { bad = true; continue; }
        if (done || !c.choices) { bad = true; continue; }
        for (const ch of c.choices) {
          if (ch.text) { chunks++; if (!first) first = performance.now(); }
          if (ch.finish_reason) finish++;
        }
        if (dropAfter > 0 && chunks >= dropAfter) { ctl.abort(); stats.dropped++; stats.tokens += chunks; return; }
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    stats.errors++;
    return;
  }
  if (bad || !done || finish !== 1 || buf.length) { stats.malformed++; return; }
  stats.finished++;
  stats.tokens += chunks;
  if (first) stats.ttft.push(first - t0);
  stats.latency.push(performance.now() - t0);
}

async function client() {
  while (Date.now() < deadline) await one();
}

const start = performance.now();
await Promise.all(Array.from({ length: C }, client));
const secs = (performance.now() - start) / 1000;
const pct = (a, p) => { if (!a.length) return null; const s = a.slice().sort((x, y) => x - y); return +s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1); };
console.log(JSON.stringify({
  clients: C, seconds: +secs.toFixed(1), requests: stats.requests, finished: stats.finished, dropped: stats.dropped,
  rejected_429_503: stats.rejected, malformed: stats.malformed, errors: stats.errors,
  streamed_tokens_per_s: +(stats.tokens / secs).toFixed(1),
  ttft_ms: { p50: pct(stats.ttft, 0.5), p99: pct(stats.ttft, 0.99) },
  latency_ms: { p50: pct(stats.latency, 0.5), p99: pct(stats.latency, 0.99) },
}));
