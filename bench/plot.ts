import { spawnSync } from 'node:child_process';

import { pathLabel, type PathResult } from './results.js';
import { percentile } from './stats.js';

const WIDTH = 1100;
const LABEL_WIDTH = 330;
const PLOT_LEFT = LABEL_WIDTH + 10;
const PLOT_RIGHT = WIDTH - 30;
const ROW_HEIGHT = 18;
const HEADER_HEIGHT = 22;
const TOP = 78;
const BOTTOM_MARGIN = 50;

const COLORS: Record<string, string> = {
  'in-process': '#4c72b0',
  unary: '#dd8452',
  stream: '#55a868',
  batch: '#c44e52',
};

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function tickLabel(valueMs: number): string {
  if (valueMs >= 1000) return `${valueMs / 1000} s`;
  if (valueMs >= 1) return `${valueMs} ms`;
  return `${Math.round(valueMs * 1000)} us`;
}

/**
 * Draws the latency distribution of every path as a horizontal box plot on a log axis: box from
 * p25 to p75, a bar at p50, whiskers from the minimum to p99 and a dot at the maximum. Rows are
 * grouped by workload; batch rows show whole calls.
 * @returns the SVG document
 */
export function latencyPlotSvg(paths: PathResult[], title: string, targetLinesMs: Array<{ ms: number; label: string }> = []): string {
  const withSamples = paths.filter((path) => path.samplesMs.length > 0);
  const all = withSamples.flatMap((path) => path.samplesMs).filter((value) => value > 0);
  const low = Math.floor(Math.log10(Math.max(1e-3, Math.min(...all, 1))));
  const high = Math.ceil(Math.log10(Math.max(...all, 1)));
  const x = (valueMs: number): number => PLOT_LEFT + ((Math.log10(Math.max(valueMs, 10 ** low)) - low) / (high - low)) * (PLOT_RIGHT - PLOT_LEFT);

  const workloads = [...new Set(withSamples.map((path) => path.workload))];
  const height = TOP + workloads.length * HEADER_HEIGHT + withSamples.length * ROW_HEIGHT + BOTTOM_MARGIN;
  const plotBottom = height - BOTTOM_MARGIN + 6;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${WIDTH}" height="${height}" fill="white"/>`);
  out.push(`<text x="${WIDTH / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  out.push(`<text x="${WIDTH / 2}" y="42" text-anchor="middle" fill="#444">box p25 to p75, bar p50, whiskers min to p99, dot max; log axis; batch rows are whole calls</text>`);

  // Decade grid with 2x and 5x minor lines.
  for (let exponent = low; exponent <= high; exponent++) {
    for (const factor of [1, 2, 5]) {
      const value = factor * 10 ** exponent;
      if (Math.log10(value) > high + 1e-9) continue;
      const position = x(value);
      const major = factor === 1;
      out.push(`<line x1="${position.toFixed(1)}" y1="${TOP - 8}" x2="${position.toFixed(1)}" y2="${plotBottom}" stroke="${major ? '#bbb' : '#e4e4e4'}" stroke-width="1"/>`);
      if (major || high - low <= 3) {
        out.push(`<text x="${position.toFixed(1)}" y="${plotBottom + 16}" text-anchor="middle" fill="${major ? '#000' : '#777'}">${tickLabel(Number(value.toPrecision(3)))}</text>`);
      }
    }
  }
  targetLinesMs.forEach(({ ms, label }, i) => {
    if (ms < 10 ** low || ms > 10 ** high) return;
    const position = x(ms);
    // Alternate the labels left and right of their lines so that neighbouring targets do not overlap.
    const [anchor, labelX] = i % 2 === 0 ? ['end', position - 4] : ['start', position + 4];
    out.push(`<line x1="${position.toFixed(1)}" y1="${TOP - 14}" x2="${position.toFixed(1)}" y2="${plotBottom}" stroke="#7a3" stroke-width="1.5" stroke-dasharray="5,4"/>`);
    out.push(`<text x="${labelX.toFixed(1)}" y="${TOP - 6}" text-anchor="${anchor}" fill="#5a2" font-size="11">${escapeXml(label)}</text>`);
  });

  let y = TOP;
  for (const workload of workloads) {
    out.push(`<text x="8" y="${y + 15}" font-weight="bold">${escapeXml(workload)}</text>`);
    out.push(`<line x1="8" y1="${y + 19}" x2="${PLOT_RIGHT}" y2="${y + 19}" stroke="#999" stroke-width="0.5"/>`);
    y += HEADER_HEIGHT;
    for (const path of withSamples.filter((candidate) => candidate.workload === workload)) {
      const sorted = Float64Array.from(path.samplesMs).sort();
      const [min, p25, p50, p75, p99, max] = [sorted[0], percentile(sorted, 0.25), percentile(sorted, 0.5), percentile(sorted, 0.75), percentile(sorted, 0.99), sorted[sorted.length - 1]];
      const color = COLORS[path.path] ?? '#666';
      const middle = y + ROW_HEIGHT / 2;
      out.push(`<text x="${LABEL_WIDTH}" y="${middle + 4}" text-anchor="end">${escapeXml(`${pathLabel(path)}  p50 ${p50 < 10 ? p50.toFixed(2) : p50.toFixed(0)} ms`)}</text>`);
      out.push(`<line x1="${x(min).toFixed(1)}" y1="${middle}" x2="${x(p99).toFixed(1)}" y2="${middle}" stroke="${color}" stroke-width="1.2"/>`);
      out.push(`<line x1="${x(p99).toFixed(1)}" y1="${middle - 4}" x2="${x(p99).toFixed(1)}" y2="${middle + 4}" stroke="${color}" stroke-width="1.2"/>`);
      const boxLeft = x(p25);
      const boxWidth = Math.max(1.5, x(p75) - boxLeft);
      out.push(`<rect x="${boxLeft.toFixed(1)}" y="${y + 3}" width="${boxWidth.toFixed(1)}" height="${ROW_HEIGHT - 6}" fill="${color}" fill-opacity="0.35" stroke="${color}"/>`);
      out.push(`<line x1="${x(p50).toFixed(1)}" y1="${y + 2}" x2="${x(p50).toFixed(1)}" y2="${y + ROW_HEIGHT - 2}" stroke="#000" stroke-width="2"/>`);
      out.push(`<circle cx="${x(max).toFixed(1)}" cy="${middle}" r="2.5" fill="${color}"/>`);
      y += ROW_HEIGHT;
    }
  }
  out.push(`<text x="${(PLOT_LEFT + PLOT_RIGHT) / 2}" y="${height - 8}" text-anchor="middle">latency per step or per batch call (log scale)</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * Renders an SVG file to PNG with rsvg-convert (Debian package librsvg2-bin).
 * @returns null on success, else why no PNG was written
 */
export function renderPng(svgPath: string, pngPath: string): string | null {
  const result = spawnSync('rsvg-convert', ['--background-color=white', '-o', pngPath, svgPath], { encoding: 'utf8', timeout: 60_000 });
  if (result.error) {
    const code = (result.error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'rsvg-convert is not installed (apt-get install -y librsvg2-bin)' : `rsvg-convert failed: ${result.error.message}`;
  }
  if (result.status !== 0) return `rsvg-convert exited with code ${result.status}: ${result.stderr.trim()}`;
  return null;
}
