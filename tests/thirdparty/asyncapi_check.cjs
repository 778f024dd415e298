// Parses an AsyncAPI document with @asyncapi/parser (the reference parser,
// spectral rules included) and prints its diagnostics as a JSON array.
// Usage: node asyncapi_check.cjs <folder holding node_modules/@asyncapi/parser> <document>
const path = require("path");
const { Parser, fromFile } = require(
  path.join(process.argv[2], "node_modules", "@asyncapi", "parser"),
);

(async () => {
  const parser = new Parser();
  const { document, diagnostics } = await fromFile(parser, process.argv[3]).parse();
  const out = diagnostics.map((d) => ({
    code: d.code,
    severity: d.severity, // 0 error, 1 warning, 2 information, 3 hint
    message: d.message,
    path: d.path.join("."),
  }));
  console.log(JSON.stringify({ parsed: document !== undefined, diagnostics: out }));
})().catch((err) => {
  console.error(err);
  process.exit(2);
});
