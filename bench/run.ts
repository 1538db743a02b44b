/**
 * `npm run bench [-- options]`: measures rasterd's latency per simulation step on every path and
 * prints a Markdown report to stdout; progress goes to stderr.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { FULL_CONFIG, QUICK_CONFIG, runBench, type BenchConfig } from './core.js';
import { writeOutputs } from './output.js';
import { RESULTS_DIR } from './paths.js';
import { formatComparison, formatPerScene, formatReport } from './report.js';
import type { BenchResult } from './results.js';

const USAGE = `Usage: npm run bench -- [options]

  --quick            every path on a few steps (CI smoke run, under a minute once the map is cached)
  --no-transport     leave out the transport experiments
  --out DIR          folder for the JSON results and the plot (default bench/results)
  --cache-dir DIR    folder of the generated map, map snapshots and roadmap tiles (default bench/.cache)
  --report FILE      print the report of an earlier results JSON and exit
  --compare FILE...  print p50, p99 and rasters/s of several results JSON files side by side and exit
  -h, --help         this text

Writes DIR/<time>.json and DIR/latest.json (DIR/quick-<time>.json and DIR/latest-quick.json with
--quick), and the latency plot as latest.svg and latest.png (latest-quick.*).
`;

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      'no-transport': { type: 'boolean', default: false },
      out: { type: 'string' },
      'cache-dir': { type: 'string' },
      report: { type: 'string' },
      compare: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.compare) {
    if (positionals.length < 2) throw new Error('--compare needs two or more results JSON files');
    const results = positionals.map((path) => JSON.parse(readFileSync(path, 'utf8')) as BenchResult);
    process.stdout.write(formatComparison(results));
    return;
  }
  if (positionals.length > 0) throw new Error(`unexpected argument '${positionals[0]}'; see --help`);
  if (values.report) {
    const result = JSON.parse(readFileSync(values.report, 'utf8')) as BenchResult;
    process.stdout.write(`${formatReport(result)}\n${formatPerScene(result)}`);
    return;
  }

  const base = values.quick ? QUICK_CONFIG : FULL_CONFIG;
  const config: BenchConfig = {
    ...base,
    transport: values['no-transport'] ? null : base.transport,
    cacheDir: values['cache-dir'] ? resolve(values['cache-dir']) : base.cacheDir,
  };
  const command = `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  const result = await runBench(config, (line) => process.stderr.write(`${line}\n`), command);
  const { written, pngError } = writeOutputs(result, resolve(values.out ?? RESULTS_DIR), values.quick === true);
  if (pngError) process.stderr.write(`no PNG written: ${pngError}\n`);
  process.stdout.write(`${formatReport(result)}\n${formatPerScene(result)}\nWritten: ${written.join(', ')}\n`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
