import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Finds the repository root from this file, both in the sources (bench/) and in the build
 * (dist/bench/), by the package.json whose name is rasterd.
 */
function findRepoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const relative of ['..', '../..']) {
    const candidate = resolve(here, relative);
    const manifest = join(candidate, 'package.json');
    if (!existsSync(manifest)) continue;
    try {
      if (JSON.parse(readFileSync(manifest, 'utf8')).name === 'rasterd') return candidate;
    } catch {
      // Not the project's manifest; try the next folder up.
    }
  }
  throw new Error(`cannot find the rasterd package.json above ${here}; run the benchmark from a rasterd checkout`);
}

export const REPO_ROOT = findRepoRoot();
/** Compiled benchmark scripts that run as child processes (built by `npx tsc -p tsconfig.json`). */
export const DIST_BENCH = join(REPO_ROOT, 'dist', 'bench');
/** Generated maps and map snapshots; git-ignored. */
export const BENCH_CACHE = join(REPO_ROOT, 'bench', '.cache');
export const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');
export const LOCAL_FIXTURES = join(REPO_ROOT, 'test', 'fixtures');
/** The shared fixtures beside the checkout; the Argoverse 2 drive and its map are only there. */
export const SHARED_FIXTURES = resolve(REPO_ROOT, '..', 'shared', 'fixtures');

/**
 * Returns the path of a compiled child-process script of the benchmark.
 * @throws Error naming the build command when the script is not built
 */
export function childScript(name: string): string {
  const path = join(DIST_BENCH, `${name}.js`);
  if (!existsSync(path)) throw new Error(`${path} is missing; build the benchmark with \`npx tsc -p tsconfig.json\` first`);
  return path;
}
