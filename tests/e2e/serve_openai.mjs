// serve_openai.mjs — the official `openai` npm client against `liandan serve` (run by
// serve_oracle.sh): models, completions (logprobs, n, stop, seed), chat (whole and streamed),
// embeddings, the client's error classes for the server's 4xx answers, and with a fine-tune
// key and a chat JSONL file: a file upload, a LoRA fine-tuning job to succeeded (events,
// checkpoints) and a chat with the adapter model it made.
// usage: node serve_openai.mjs BASE_URL API_KEY MODEL [FINE_TUNE_KEY TRAIN.jsonl]
import { createRequire } from 'node:module';

const require = createRequire(new URL('../oracle/package.json', import.meta.url));
const { OpenAI } = require('openai');
const Ajv = require('ajv');

const fs = require('node:fs');
const [baseURL, apiKey, model, ftKey, trainPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120000 });
const fail = (msg) => { console.error(`serve_openai: ${msg}`); process.exit(1); };
const check = (cond, msg) => { if (!cond) fail(msg); };

const models = await client.models.list();
const ids = models.data.map((m) => m.id);
check(ids.includes(model), `models.list lacks ${model}: ${JSON.stringify(ids)}`);
const one = await client.models.retrieve(model);
check(one.id === model && one.object === 'model', 'models.retrieve');

// completions: greedy is reproducible; usage adds up; logprobs are well-formed
const req = { model, prompt: '床前明月光，', max_tokens: 12, temperature: 0, logprobs: 3 };
const c1 = await client.completions.create(req);
const c2 = await client.completions.create(req);
check(c1.object === 'text_completion' && c1.choices.length === 1, 'completion shape');
check(c1.choices[0].text === c2.choices[0].text, 'greedy completion not reproducible');
check(c1.usage.prompt_tokens > 0 && c1.usage.completion_tokens === 12 &&
      c1.usage.total_tokens === c1.usage.prompt_tokens + 12, `usage ${JSON.stringify(c1.usage)}`);
check(c1.choices[0].finish_reason === 'length', 'finish_reason should be length');
const lp = c1.choices[0].logprobs;
check(lp && lp.tokens.length === 12 && lp.token_logprobs.every((x) => x <= 0) &&
      lp.top_logprobs.every((t) => Object.keys(t).length >= 1 && Object.keys(t).length <= 3), 'completion logprobs');
// greedy: the chosen token is the most likely one
check(lp.token_logprobs.every((x, i) => Math.max(...Object.values(lp.top_logprobs[i])) <= x + 1e-5),
      'greedy token is not the top logprob');

// n choices with a seed: reproducible, and a stop string cuts the text
const s1 = await client.completions.create({ model, prompt: '春', max_tokens: 10, n: 3, seed: 7, temperature: 1 });
const s2 = await client.completions.create({ model, prompt: '春', max_tokens: 10, n: 3, seed: 7, temperature: 1 });
check(s1.choices.length === 3 && s1.choices.map((c) => c.index).join() === '0,1,2', 'n=3 choices');
check(JSON.stringify(s1.choices.map((c) => c.text)) === JSON.stringify(s2.choices.map((c) => c.text)), 'seeded n=3 differ');
const full = c1.choices[0].text;
if (full.length >= 3) {
  const stop = full.slice(2, 3);
  const cut = await client.completions.create({ ...req, logprobs: null, stop: [stop] });
  check(cut.choices[0].text === full.slice(0, full.indexOf(stop)) && cut.choices[0].finish_reason === 'stop',
        `stop string: '${cut.choices[0].text}' vs '${full}' cut at '${stop}'`);
}
// several prompts in one request
const multi = await client.completions.create({ model, prompt: ['白日', '青山'], max_tokens: 4, temperature: 0 });
check(multi.choices.length === 2, 'two prompts give two choices');

// chat, whole and streamed: the stream's deltas join to the same text
const messages = [{ role: 'system', content: '你是詩人' }, { role: 'user', content: '寫一句詩' }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0 });
check(chat.object === 'chat.completion' && chat.choices[0].message.role === 'assistant', 'chat shape');
const stream = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0, stream: true,
                                                      stream_options: { include_usage: true } });
let text = '', chunks = 0, finish = null, usage = null;
for await (const ch of stream) {
  chunks++;
  if (ch.usage) usage = ch.usage;
  for (const c of ch.choices) {
    text += c.delta?.content ?? '';
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check(chunks >= 3 && finish !== null, `stream ended badly: ${chunks} chunks, finish ${finish}`);
check(text === chat.choices[0].message.content, `streamed '${text}' != whole '${chat.choices[0].message.content}'`);
check(usage && usage.completion_tokens === chat.usage.completion_tokens, 'stream usage');
const clp = await client.chat.completions.create({ model, messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2 });
check(clp.choices[0].logprobs.content.length === 4 && clp.choices[0].logprobs.content[0].top_logprobs.length === 2,
      'chat logprobs');

// embeddings: unit length, one per input, floats or base64
const emb = await client.embeddings.create({ model, input: ['床前明月光', '疑是地上霜'], encoding_format: 'float' });
check(emb.data.length === 2, 'two embeddings');
for (const d of emb.data) {
  const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
  check(Math.abs(norm - 1) < 1e-3, `embedding norm ${norm}`);
}
const emb64 = await client.embeddings.create({ model, input: '床前明月光' }); // the client asks for base64
check(emb64.data[0].embedding.length === emb.data[0].embedding.length &&
      emb64.data[0].embedding.every((x, i) => Math.abs(x - emb.data[0].embedding[i]) < 1e-6), 'base64 embedding');

const expectError = async (cls, status, fn, what) => {
  try { await fn(); } catch (e) {
    check(e instanceof cls && e.status === status, `${what}: got ${e.constructor.name} ${e.status}: ${e.message}`);
    return e;
  }
  fail(`${what}: no error`);
};

// structured output: every answer under a JSON Schema parses and validates (ajv, an
// independent validator); json_object mode gives a JSON object; a GBNF grammar (extension)
const schema = {
  type: 'object',
  properties: { title: { type: 'string', maxLength: 8 }, lines: { type: 'integer' },
                tags: { type: 'array', items: { enum: ['spring', 'moon', 'river'] }, maxItems: 3 },
                regular: { type: 'boolean' } },
  required: ['title', 'lines', 'regular'],
};
const validate = new Ajv().compile(schema);
for (let seed = 1; seed <= 6; seed++) {
  const r = await client.chat.completions.create({
    model, messages, max_tokens: 500, temperature: 1, seed,
    response_format: { type: 'json_schema', json_schema: { name: 'poem', schema, strict: true } } });
  const text = r.choices[0].message.content;
  check(r.choices[0].finish_reason === 'stop', `json_schema answer did not finish: ${r.choices[0].finish_reason} '${text}'`);
  let obj;
  try { obj = JSON.parse(text); } catch (e) { fail(`json_schema answer is not JSON: '${text}'`); }
  check(validate(obj), `json_schema answer does not validate: '${text}' ${JSON.stringify(validate.errors)}`);
}
const jo = await client.chat.completions.create({ model, messages, max_tokens: 500, temperature: 1, seed: 3,
                                                  response_format: { type: 'json_object' } });
check(jo.choices[0].finish_reason === 'stop', 'json_object answer did not finish');
check(typeof JSON.parse(jo.choices[0].message.content) === 'object', 'json_object answer is not an object');
// seeded, and room for characters that take several byte-level tokens each (an unseeded
// 12-token budget sometimes ended inside the fourth character): the grammar ends the text
const gram = await client.completions.create({ model, prompt: '春', max_tokens: 48, temperature: 1, seed: 5,
                                               grammar: 'root ::= [\u4e00-\u9fff]{5} "，"' });
check(/^[\u4e00-\u9fff]{5}，$/u.test(gram.choices[0].text) && gram.choices[0].finish_reason === 'stop',
      `grammar output '${gram.choices[0].text}' (${gram.choices[0].finish_reason})`);
await expectError(OpenAI.BadRequestError, 400, () => client.completions.create({ model, prompt: 'x', grammar: 'root ::= (' }), 'bad grammar');

// errors come back as the client's error classes with OpenAI's shape

const nf = await expectError(OpenAI.NotFoundError, 404, () => client.completions.create({ model: 'no-such-model', prompt: 'x' }), 'unknown model');
check(nf.code === 'model_not_found', 'model_not_found code');
await expectError(OpenAI.NotFoundError, 404, () => client.completions.create({ model: '../' + model, prompt: 'x' }), 'path in model name');
await expectError(OpenAI.BadRequestError, 400, () => client.completions.create({ model, prompt: 'x', temperature: 9 }), 'temperature 9');
const big = await expectError(OpenAI.BadRequestError, 400, () => client.completions.create({ model, prompt: 'x', max_tokens: 100000 }), 'max_tokens too large');
check(big.param === 'max_tokens', 'the error names the parameter');
await expectError(OpenAI.BadRequestError, 400, () => client.chat.completions.create({ model, messages: [] }), 'no messages');
await expectError(OpenAI.BadRequestError, 400, () => client.completions.create({ model, prompt: 'x', bogus: 1 }), 'unknown argument');
const bad = new OpenAI({ baseURL, apiKey: 'ld-wrong', maxRetries: 0 });
await expectError(OpenAI.AuthenticationError, 401, () => bad.models.list(), 'wrong key');

// fine-tuning: upload, a LoRA job to succeeded, then chat with the model it made
if (ftKey && trainPath) {
  const ft = new OpenAI({ baseURL, apiKey: ftKey, maxRetries: 0, timeout: 120000 });
  const file = await ft.files.create({ file: fs.createReadStream(trainPath), purpose: 'fine-tune' });
  check(file.object === 'file' && /^file-[0-9a-f]{24}$/.test(file.id) && file.purpose === 'fine-tune' &&
        file.bytes === fs.statSync(trainPath).size, `files.create: ${JSON.stringify(file)}`);
  check((await ft.files.retrieve(file.id)).id === file.id, 'files.retrieve');
  const listed = [];
  for await (const f of ft.files.list()) listed.push(f.id);
  check(listed.includes(file.id), 'files.list lacks the upload');
  const badFile = await OpenAI.toFile(Buffer.from('{"text": "a"}\n{"text": 7}\n'), 'bad.jsonl');
  const be = await expectError(OpenAI.BadRequestError, 400, () => ft.files.create({ file: badFile, purpose: 'fine-tune' }), 'a bad JSONL file');
  check(/line 2/.test(be.message), `the bad file's error does not name its line: ${be.message}`);
  await expectError(OpenAI.PermissionDeniedError, 403, () => client.files.list(), 'files with an inference key');
  const job = await ft.fineTuning.jobs.create({ model, training_file: file.id, suffix: 'client',
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 1, batch_size: 2 } } } });
  check(job.object === 'fine_tuning.job' && job.status === 'validating_files', `jobs.create: ${JSON.stringify(job)}`);
  let j = job;
  for (let i = 0; i < 1200 && !['succeeded', 'failed', 'cancelled'].includes(j.status); i++) {
    await new Promise((r) => setTimeout(r, 100));
    j = await ft.fineTuning.jobs.retrieve(job.id);
  }
  check(j.status === 'succeeded' && j.fine_tuned_model === `${model}:ft-client-${job.id.slice(-8)}`,
        `the job did not succeed: ${JSON.stringify(j)}`);
  const events = [];
  for await (const e of ft.fineTuning.jobs.listEvents(job.id, { limit: 5 })) events.push(e);
  const metrics = events.filter((e) => e.type === 'metrics');
  check(metrics.length >= 2 && metrics.every((e) => Number.isFinite(e.data.train_loss)), `events: ${JSON.stringify(events)}`);
  check(new Set(events.map((e) => e.id)).size === events.length, 'listEvents pages repeat events');
  const ckpts = await ft.fineTuning.jobs.checkpoints.list(job.id);
  check(ckpts.data.length >= 1 && ckpts.data[0].fine_tuning_job_id === job.id, 'checkpoints.list');
  let found = false;
  for await (const x of ft.fineTuning.jobs.list({ limit: 1 })) found ||= x.id === job.id;
  check(found, 'jobs.list lacks the job');
  const ftm = await client.models.retrieve(j.fine_tuned_model);
  check(ftm.lineage && ftm.lineage.base === model && ftm.lineage.method === 'lora' && ftm.lineage.training_file === file.id &&
        ftm.lineage.job === job.id, `the adapter model's lineage: ${JSON.stringify(ftm)}`);
  check((await client.models.list()).data.some((m) => m.id === j.fine_tuned_model), 'models.list lacks the adapter model');
  const ans = await client.chat.completions.create({ model: j.fine_tuned_model, messages, max_tokens: 8, temperature: 0 });
  check(ans.model === j.fine_tuned_model && ans.choices[0].message.role === 'assistant', 'chat with the fine-tuned model');
}
console.log('serve_openai: ok');
