import type { MapSource } from '../maps/maps-root.js';
import { startChild } from './child-process.js';
import { childScript } from './paths.js';
import { median } from './stats.js';

/** Report of one map-load probe process. */
interface ProbeReport {
  ms: number;
  fromCache: boolean;
  vertices: number;
  rssBeforeBytes: number;
  peakRssBytes: number;
}

/** Map load times of one map, each from a fresh process. */
export interface MapLoadResult {
  map: string;
  vertices: number;
  /** GeoPackage read with GDAL (readMap), per run [ms]. */
  coldMs: number[];
  /** Snapshot read through maps/map-cache.ts (loadMap), per run [ms]; empty when the snapshot could not be used. */
  cacheMs: number[];
  /** The first cached load, which wrote the snapshot when none matched [ms]; null when a snapshot was already there. */
  cacheFillMs: number | null;
  /** Peak resident set of the probe process, Node.js itself included [bytes]. */
  coldPeakRssBytes: number;
  cachePeakRssBytes: number | null;
  /** Resident set of the probe process before the load [bytes]. */
  baselineRssBytes: number;
  coldMedianMs: number;
  cacheMedianMs: number | null;
  /** Reason the cached load was not measured, when it was not. */
  cacheSkipped?: string;
}

const PROBE_TIMEOUT_MS = 120_000;

async function probe(source: MapSource, cacheDir: string | null): Promise<ProbeReport> {
  const args = ['--name', source.name, '--path', source.path, ...(cacheDir ? ['--cache-dir', cacheDir] : [])];
  const started = await startChild<ProbeReport>(childScript('map-load-child'), args, PROBE_TIMEOUT_MS);
  await started.stop();
  return started.ready;
}

/**
 * Measures how long `source` takes to load in fresh processes: `runs` times with GDAL, then once
 * through the map cache to fill it and `runs` times from the cache.
 */
export async function measureMapLoad(source: MapSource, cacheDir: string, runs: number): Promise<MapLoadResult> {
  const cold: ProbeReport[] = [];
  for (let i = 0; i < runs; i++) cold.push(await probe(source, null));

  const fill = await probe(source, cacheDir);
  const cached: ProbeReport[] = fill.fromCache ? [fill] : [];
  for (let i = cached.length; i < runs; i++) cached.push(await probe(source, cacheDir));
  const fromCache = cached.filter((report) => report.fromCache);

  const coldMs = cold.map((report) => report.ms);
  const cacheMs = fromCache.map((report) => report.ms);
  return {
    map: source.name,
    vertices: cold[0].vertices,
    coldMs,
    cacheMs,
    cacheFillMs: fill.fromCache ? null : fill.ms,
    coldPeakRssBytes: Math.max(...cold.map((report) => report.peakRssBytes)),
    cachePeakRssBytes: fromCache.length > 0 ? Math.max(...fromCache.map((report) => report.peakRssBytes)) : null,
    baselineRssBytes: median(cold.map((report) => report.rssBeforeBytes)),
    coldMedianMs: median(coldMs),
    cacheMedianMs: cacheMs.length > 0 ? median(cacheMs) : null,
    ...(fromCache.length === 0 ? { cacheSkipped: `loadMap did not read a snapshot from ${cacheDir} even after writing one` } : {}),
  };
}
