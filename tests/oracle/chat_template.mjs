// tests/oracle/chat_template.mjs — renders a chat template with @huggingface/jinja (the
// Jinja engine node-llama-cpp uses, pinned in tests/oracle through its lock file), as an
// oracle for liandan's template families.
//
//   node chat_template.mjs TEMPLATE.jinja MESSAGES.json BOS EOS [--no-generation-prompt]
//
// prints the rendered text with nothing added.
import {readFileSync} from "node:fs";
import {Template} from "@huggingface/jinja";

const [,, tmplPath, msgPath, bos, eos, flag] = process.argv;
const template = new Template(readFileSync(tmplPath, "utf8"));
const messages = JSON.parse(readFileSync(msgPath, "utf8"));
process.stdout.write(template.render({
  messages, bos_token: bos, eos_token: eos, add_generation_prompt: flag !== "--no-generation-prompt",
}));
