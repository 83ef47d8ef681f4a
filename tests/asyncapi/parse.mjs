// Parse an AsyncAPI document with the reference parser; print its diagnostics as JSON.
// Usage: node parse.mjs <document.json>   (run with NODE_PATH at the installed node_modules)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.PARSER_DIR + "/");
const { Parser } = require("@asyncapi/parser");

const text = readFileSync(process.argv[2], "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const out = diagnostics.map((d) => ({
  severity: d.severity,
  code: d.code,
  message: d.message,
  path: d.path.join("/"),
}));
process.stdout.write(
  JSON.stringify({
    parsed: document !== undefined,
    messages: document ? document.allMessages().length : 0,
    channels: document ? document.allChannels().length : 0,
    diagnostics: out,
  }),
);
