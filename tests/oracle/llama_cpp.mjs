// tests/oracle/llama_cpp.mjs — llama.cpp (through the npm package node-llama-cpp, which ships
// prebuilt llama.cpp libraries) as an independent oracle for GGUF files.
//
//   node llama_cpp.mjs tokenize MODEL.gguf TEXTFILE   one line of ids per line of TEXTFILE
//   node llama_cpp.mjs tokenize-vocab VOCAB.gguf TEXTFILE [--add-special]
//                                                      the same from a vocab-only GGUF
//   node llama_cpp.mjs greedy MODEL.gguf N PROMPTS     PROMPTS: one comma-separated id list per
//                                                      line; prints the greedy continuation of
//                                                      each (at most N tokens, stops at EOS)
//   LORA=ADAPTER.gguf node llama_cpp.mjs greedy ...    the same with a GGUF LoRA adapter applied
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [,, cmd, modelPath, ...rest] = process.argv;
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0, vocabOnly: cmd === "tokenize-vocab"});
const lines = (f) => readFileSync(f, "utf8").split("\n").filter((l) => l.length > 0);
if (cmd === "tokenize" || cmd === "tokenize-vocab") {
  for (const text of lines(rest[0])) console.log(Array.from(model.tokenize(text, rest[1] === "--add-special")).join(" "));
} else if (cmd === "greedy") {
  const n = Number(rest[0]);
  const lora = process.env.LORA ? {lora: process.env.LORA} : {};
  const context = await model.createContext({contextSize: Math.min(model.trainContextSize, 512), threads: 2, ...lora});
  const seq = context.getSequence();
  for (const line of lines(rest[1])) {
    await seq.clearHistory();
    const out = [];
    for await (const t of seq.evaluate(line.split(",").map(Number), {temperature: 0})) {
      out.push(t);
      if (out.length >= n) break;
    }
    console.log(out.join(" "));
  }
  await context.dispose();
} else {
  console.error(`unknown command ${cmd}`);
  process.exit(2);
}
await model.dispose();
