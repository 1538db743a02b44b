import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { latencyPlotSvg, renderPng } from './plot.js';
import type { BenchResult } from './results.js';
import { TARGETS } from './targets.js';

/** Writes `text` to `path` through a temporary file, so that readers never see a partial file. */
export function writeAtomic(path: string, text: string): void {
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}

/**
 * Writes the results JSON (timestamped and latest) and the latency plot into `outDir`. The plot is
 * an SVG, plus a PNG when rsvg-convert is installed. Quick runs get file names of their own.
 * @returns the written paths, and the reason when no PNG was written
 */
export function writeOutputs(result: BenchResult, outDir: string, quick: boolean): { written: string[]; pngError: string | null } {
  mkdirSync(outDir, { recursive: true });
  const prefix = quick ? 'quick-' : '';
  const latest = quick ? 'latest-quick' : 'latest';
  const stamp = result.startedAt.replace(/[:.]/g, '-');
  const json = `${JSON.stringify(result, null, 1)}\n`;
  const written = [join(outDir, `${prefix}${stamp}.json`), join(outDir, `${latest}.json`)];
  for (const path of written) writeAtomic(path, json);

  const svgPath = join(outDir, `${latest}.svg`);
  const title = `rasterd latency per path (${result.mode}, ${result.startedAt.slice(0, 16)}Z, ${result.machine.cores}-core ${result.machine.cpuModel})`;
  writeAtomic(svgPath, latencyPlotSvg(result.paths, title, [
    { ms: TARGETS.unaryP50Ms, label: 'unary p50 target' },
    { ms: TARGETS.unaryP99Ms, label: 'p99 target' },
  ]));
  written.push(svgPath);
  const pngPath = join(outDir, `${latest}.png`);
  const pngError = renderPng(svgPath, pngPath);
  if (!pngError) written.push(pngPath);
  return { written, pngError };
}

