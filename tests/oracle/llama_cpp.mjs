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
//   node llama_cpp.mjs greedy-batch N JOBS             JOBS: lines "MODEL.gguf PROMPTS OUT"; the
//                                                      greedy continuations of each model's prompts
//                                                      written to its OUT, all in one process (the
//                                                      package tests its binary in a child process
//                                                      on every start: seconds per call)
import {readFileSync, writeFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [,, cmd, arg1, ...rest] = process.argv;
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const lines = (f) => readFileSync(f, "utf8").split("\n").filter((l) => l.length > 0);

// the greedy continuations (at most n tokens) of each comma-separated id list in promptsFile
async function greedy(model, n, promptsFile) {
  const lora = process.env.LORA ? {lora: process.env.LORA} : {};
  const context = await model.createContext({contextSize: Math.min(model.trainContextSize, 512), threads: 2, ...lora});
  const seq = context.getSequence();
  const outs = [];
  for (const line of lines(promptsFile)) {
    await seq.clearHistory();
    const out = [];
    for await (const t of seq.evaluate(line.split(",").map(Number), {temperature: 0})) {
      out.push(t);
      if (out.length >= n) break;
    }
    outs.push(out.join(" ") + "\n");
  }
  await context.dispose();
  return outs.join("");
}

if (cmd === "greedy-batch") {
  const n = Number(arg1);
  for (const job of lines(rest[0])) {
    const [modelPath, promptsFile, outFile] = job.split(" ");
    const model = await llama.loadModel({modelPath, gpuLayers: 0});
    writeFileSync(outFile, await greedy(model, n, promptsFile));
    await model.dispose();
  }
} else {
  const model = await llama.loadModel({modelPath: arg1, gpuLayers: 0, vocabOnly: cmd === "tokenize-vocab"});
  if (cmd === "tokenize" || cmd === "tokenize-vocab") {
    for (const text of lines(rest[0])) console.log(Array.from(model.tokenize(text, rest[1] === "--add-special")).join(" "));
  } else if (cmd === "greedy") {
    process.stdout.write(await greedy(model, Number(rest[0]), rest[1]));
  } else {
    console.error(`unknown command ${cmd}`);
    process.exit(2);
  }
  await model.dispose();
}
