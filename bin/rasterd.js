#!/usr/bin/env node
// Entry point of the `rasterd` command: runs the compiled CLI from dist/ (built by `npm ci` or `npm run build`).
import { existsSync } from 'node:fs';

const cli = new URL('../dist/server/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('rasterd: dist/ is missing; run `npm ci` or `npm run build` in the rasterd folder first\n');
  process.exit(1);
}
const { main } = await import(cli.href);
try {
  await main(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`rasterd: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
