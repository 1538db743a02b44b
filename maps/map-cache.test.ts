import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { CpuRasterizer } from '../raster/cpu-rasterizer.js';
import { diffRasters, expectedRaster, LOCAL_FIXTURES, loadParitySet, sceneOf, settingsOf } from '../test/fixtures.js';
import { loadMap } from './map-cache.js';

const townMap = join(LOCAL_FIXTURES, 'maps/town-a/1.0.0/map.gpkg');

describe('map snapshots', () => {
  it('round-trips a map and gives the same rasters', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'rasterd-cache-'));
    const source = { name: 'town-a', version: '1.0.0', path: townMap };
    const cold = await loadMap(source, { ...source, cacheDir });
    expect(cold.fromCache).toBe(false);
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.bin'))).toHaveLength(1);

    const warm = await loadMap(source, { ...source, cacheDir });
    expect(warm.fromCache).toBe(true);
    expect(warm.map.coords).toEqual(cold.map.coords);
    expect(warm.map.layerCounts).toEqual(cold.map.layerCounts);
    for (const [name, table] of cold.map.tables) {
      expect(warm.map.tables.get(name)!.bbox, name).toEqual(table.bbox);
      expect(warm.map.tables.get(name)!.index?.data.byteLength, name).toBe(table.index?.data.byteLength);
    }

    const set = loadParitySet('town-a')!;
    const cpu = new CpuRasterizer();
    for (const scene of set.scenes.slice(0, 10)) {
      const result = cpu.rasterize(warm.map, sceneOf(scene), settingsOf(set));
      expect(diffRasters(expectedRaster(set, scene.id), result.data, 224).differing, scene.id).toBe(0);
    }
  });

  it('ignores a snapshot of another file version', async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'rasterd-cache-'));
    const dir = mkdtempSync(join(tmpdir(), 'rasterd-map-'));
    const path = join(dir, 'map.gpkg');
    copyFileSync(townMap, path);
    const source = { name: 'town-a', version: '1.0.0', path };
    expect((await loadMap(source, { ...source, cacheDir })).fromCache).toBe(false);
    // The same bytes rewritten: same hash, so the snapshot serves.
    writeFileSync(path, readFileSync(townMap));
    expect((await loadMap(source, { ...source, cacheDir })).fromCache).toBe(true);
    // Different bytes (a trailing byte that GDAL ignores): a new hash, so a cold read.
    writeFileSync(path, Buffer.concat([readFileSync(townMap), Buffer.alloc(1)]));
    expect((await loadMap(source, { ...source, cacheDir })).fromCache).toBe(false);
  });
});
