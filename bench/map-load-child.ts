/**
 * Map-load probe: loads one map in a fresh process and writes one JSON line to stdout:
 * {"ms", "fromCache", "vertices", "rssBeforeBytes", "peakRssBytes"}. Without --cache-dir it
 * reads the GeoPackage with GDAL (readMap). With it, it goes through the map cache (loadMap),
 * which reads a snapshot when one matches the file and writes one otherwise.
 *
 * Usage: node dist/bench/map-load-child.js --name NAME --path PATH.gpkg [--cache-dir DIR]
 */
import { parseArgs } from 'node:util';

import { loadMap } from '../maps/map-cache.js';
import { readMap } from '../maps/gpkg-reader.js';
import { procMemoryBytes } from './child-process.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { name: { type: 'string' }, path: { type: 'string' }, 'cache-dir': { type: 'string' } },
  });
  if (!values.name || !values.path) throw new Error('map-load-child needs --name NAME --path PATH.gpkg');
  const source = { name: values.name, version: 'bench', path: values.path };

  const rssBeforeBytes = procMemoryBytes(process.pid, 'VmRSS') ?? process.memoryUsage().rss;
  const started = performance.now();
  let fromCache = false;
  let vertices: number;
  if (values['cache-dir']) {
    const loaded = await loadMap(source, { name: source.name, version: source.version, cacheDir: values['cache-dir'] });
    fromCache = loaded.fromCache;
    vertices = loaded.map.coords.length / 2;
  } else {
    vertices = readMap(source.path, { name: source.name, version: source.version }).coords.length / 2;
  }
  const ms = performance.now() - started;
  const peakRssBytes = procMemoryBytes(process.pid, 'VmHWM') ?? process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify({ ms, fromCache, vertices, rssBeforeBytes, peakRssBytes })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`map-load-child: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
