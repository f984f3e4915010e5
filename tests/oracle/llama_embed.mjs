// tests/oracle/llama_embed.mjs — llama.cpp's embedding path (through node-llama-cpp) as an
// independent oracle for encoder GGUF files.
//
//   node llama_embed.mjs MODEL.gguf IDS.txt   IDS.txt: one space-separated token-id list per line.
//
// Prints one JSON line per input: {"tokens": [...], "embedding": [...]}, where tokens is the list
// llama.cpp evaluated (node-llama-cpp adds BOS / SEP / EOS where the vocabulary asks for them, as
// its LlamaEmbeddingContext does) and embedding the pooled vector (bert.pooling_type).
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [,, modelPath, idsPath] = process.argv;
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createEmbeddingContext({contextSize: Math.min(model.trainContextSize, 512), threads: 2});
const vt = model.vocabularyType, t = model.tokens;
// the same additions as node-llama-cpp's LlamaEmbeddingContext._prepareInput
const begin = vt === "rwkv" || vt === "ugm" ? null : vt === "wpm" ? t.bos : t.shouldPrependBosToken ? t.bos : null;
const end = vt === "rwkv" ? null : vt === "wpm" ? t.sep : vt === "ugm" ? t.eos : t.shouldAppendEosToken ? t.eos : null;
for (const line of readFileSync(idsPath, "utf8").split("\n").filter((l) => l.length > 0)) {
  const ids = line.trim().split(/\s+/).map(Number);
  const tokens = ids.slice();
  if (begin != null && tokens[0] !== begin) tokens.unshift(begin);
  if (end != null && tokens.at(-1) !== end) tokens.push(end);
  const e = await context.getEmbeddingFor(ids);
  console.log(JSON.stringify({tokens, embedding: Array.from(e.vector)}));
}
await context.dispose();
await model.dispose();
