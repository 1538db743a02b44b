/**
 * Measures the tiles roadmap mode on one map: tile build time and size (cold start), the cached
 * start, and the time per step of sampling compared with the exact roadmap.
 *
 *   node dist/bench/roadmap-tiles.js --map test/fixtures/maps/town-a/1.0.0/map.gpkg
 *   node dist/bench/roadmap-tiles.js --blocks 24        (writes a 24 x 24 block sample town first)
 *
 * Prints one JSON object on stdout. Times are wall-clock on the calling thread. coldLoadMs is the
 * first RoadmapTiles.load (build and GeoTIFF writes), warmLoadMs the second (GeoTIFF reads), and
 * exactRoadmapUs the exact mode's map query plus roadmap drawing for the same poses.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { loadMap } from '../maps/map-cache.js';
import { writeSampleMap } from '../maps/sample-map.js';
import { CpuRasterizer, sceneParams } from '../raster/cpu-rasterizer.js';
import { tileConfigKey, tileSetDir } from '../raster/roadmap-tile-store.js';
import { RoadmapTiles } from '../raster/roadmap-tiles.js';
import { PACIFICA, type Scene } from '../raster/scene.js';
import { NUPLAN_DEFAULT_SETTINGS } from '../raster/settings.js';
import { createRandom } from '../maps/seeded-random.js';

const { values } = parseArgs({
  options: {
    map: { type: 'string' },
    blocks: { type: 'string', default: '24' },
    steps: { type: 'string', default: '2000' },
    'tile-size': { type: 'string', default: '1024' },
  },
});


function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** Total size of the files in a folder [bytes]. */
function folderBytes(dir: string): number {
  return readdirSync(dir).reduce((bytes, file) => bytes + statSync(join(dir, file)).size, 0);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'rasterd-bench-tiles-'));
  const cacheDir = join(work, 'cache');
  const blocks = Number(values.blocks);
  let path = values.map;
  if (path === undefined) {
    path = join(work, 'city.gpkg');
    await writeSampleMap(path, { blocksX: blocks, blocksY: blocks });
  }
  const source = { name: 'bench', version: '1.0.0', path };
  const { map } = await loadMap(source, { ...source, cacheDir });

  const settings = NUPLAN_DEFAULT_SETTINGS;
  const tileSize = Number(values['tile-size']);
  let started = performance.now();
  const cold = await RoadmapTiles.load(map, settings, { cacheDir, tileSize });
  const coldLoadMs = performance.now() - started;
  started = performance.now();
  const warm = await RoadmapTiles.load(map, settings, { cacheDir, tileSize });
  const warmLoadMs = performance.now() - started;
  const dir = tileSetDir(cacheDir, map.sha256!, tileConfigKey(settings.mapFeatures, settings.targetPixelSize, tileSize));
  const tiles = warm.tiles;

  // Poses on lane vertices with random headings, so that every raster contains roadmap.
  const lanes = map.layers.get('LANE')!;
  const next = createRandom(7);
  const steps = Number(values.steps);
  const scenes: Scene[] = [];
  for (let i = 0; i < steps; i++) {
    const ring = Math.floor(next() * (lanes.drawRanges.length / 2));
    const vertex = lanes.drawRanges[2 * ring];
    scenes.push({ rearAxle: { x: map.coords[2 * vertex], y: map.coords[2 * vertex + 1], heading: (next() * 2 - 1) * Math.PI }, vehicle: PACIFICA, objects: new Float64Array(0) });
  }

  const out = new Float32Array(settings.targetWidth * settings.targetHeight * 4);
  const paramsList = scenes.map((scene) => sceneParams(scene, settings));
  for (let i = 0; i < Math.min(200, steps); i++) tiles.sample(paramsList[i], settings, out);
  const sampleUs: number[] = [];
  for (const params of paramsList) {
    const sampleStarted = performance.now();
    tiles.sample(params, settings, out);
    sampleUs.push((performance.now() - sampleStarted) * 1000);
  }
  sampleUs.sort((a, b) => a - b);

  const cpu = new CpuRasterizer();
  for (let i = 0; i < Math.min(200, steps); i++) cpu.rasterize(map, scenes[i], settings, out);
  const exactUs: number[] = [];
  for (const scene of scenes) {
    const { timings } = cpu.rasterize(map, scene, settings, out);
    exactUs.push(timings.mapQuery + timings.roadmap);
  }
  exactUs.sort((a, b) => a - b);

  const result = {
    map: values.map ?? `sample town ${blocks} x ${blocks} blocks`,
    polygons: Object.fromEntries(settings.mapFeatures.map((feature) => [feature.layer, map.layers.get(feature.layer)!.drawRanges.length / 2])),
    grid: tiles.grid,
    storedTiles: tiles.storedTileCount,
    memoryBytes: tiles.byteLength,
    diskBytes: folderBytes(dir),
    buildMs: Math.round(cold.tiles.buildMs),
    coldLoadMs: Math.round(coldLoadMs),
    coldFromCache: cold.fromCache,
    warmLoadMs: Math.round(warmLoadMs),
    warmFromCache: warm.fromCache,
    steps,
    sampleUs: { p50: +percentile(sampleUs, 0.5).toFixed(1), p90: +percentile(sampleUs, 0.9).toFixed(1), min: +sampleUs[0].toFixed(1) },
    exactRoadmapUs: { p50: +percentile(exactUs, 0.5).toFixed(1), p90: +percentile(exactUs, 0.9).toFixed(1), min: +exactUs[0].toFixed(1) },
  };
  console.log(JSON.stringify(result, null, 1));
  rmSync(work, { recursive: true, force: true });
}

await main();
