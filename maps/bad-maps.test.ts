import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import gdal from 'gdal-async';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CpuRasterizer } from '../raster/cpu-rasterizer.js';
import { collectDrawables, MapLayerUnavailableError } from '../raster/map-query.js';
import { PACIFICA } from '../raster/scene.js';
import { NUPLAN_DEFAULT_SETTINGS } from '../raster/settings.js';
import { REPO_ROOT } from '../test/fixtures.js';
import {
  curvePolygonWkb, editMap, execute, gpkgBlob, lineStringWkb, multiPolygonWkb, polygonWkb, readRings, setGeometryBlob,
} from '../test/gpkg-edit.js';
import { readMap, type MapLoadWarning } from './gpkg-reader.js';
import type { MapData } from './map-data.js';
import { writeSampleMap } from './sample-map.js';

let workDir: string;
let samplePath: string;
let reference: MapData;
let caseNumber = 0;

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'rasterd-bad-maps-'));
  // The read-only-folder cases run a reader as another user, which must reach the files.
  chmodSync(workDir, 0o755);
  samplePath = join(workDir, 'sample.gpkg');
  await writeSampleMap(samplePath);
  reference = readMap(samplePath, { name: 'sample', version: '1' });
}, 60_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

/** Copies the sample map into a new folder as map.gpkg, as in a nuPlan maps root, and returns its path. */
function copyOfSample(): string {
  const folder = join(workDir, `case-${++caseNumber}`);
  mkdirSync(folder, { mode: 0o755 });
  const path = join(folder, 'map.gpkg');
  copyFileSync(samplePath, path);
  return path;
}

function load(path: string): { map: MapData; warnings: MapLoadWarning[] } {
  const warnings: MapLoadWarning[] = [];
  const map = readMap(path, { name: 'bad', version: '1', onWarning: (warning) => warnings.push(warning) });
  return { map, warnings };
}

/** Projected vertices of feature `fid` of `table`, ring by ring. */
function featureCoords(map: MapData, table: string, fid: number): number[][] {
  const data = map.tables.get(table)!;
  const feature = data.fids.indexOf(fid);
  expect(feature, `${table} fid ${fid}`).toBeGreaterThanOrEqual(0);
  const rings: number[][] = [];
  for (let ring = data.featureRingStart[feature]; ring < data.featureRingStart[feature + 1]; ring++) {
    rings.push(Array.from(map.coords.subarray(2 * map.ringVertexStart[ring], 2 * map.ringVertexStart[ring + 1])));
  }
  return rings;
}

function warningFor(warnings: MapLoadWarning[], table: string, text: RegExp): MapLoadWarning {
  const found = warnings.find((warning) => warning.table === table && text.test(warning.message));
  expect(found, `a ${table} warning matching ${text}; got ${JSON.stringify(warnings)}`).toBeDefined();
  return found!;
}

const builtReader = join(REPO_ROOT, 'dist/maps/gpkg-reader.js');
/** Root ignores file modes, so as root the read-only cases run the reader as the user nobody (65534). */
const asOtherUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
// NOTE: the read-only-folder cases are skipped without a build in dist/ (npx tsc -p tsconfig.json), and when run as root where user 65534 cannot read the checkout.
const readerLoadable = existsSync(builtReader) &&
  spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(builtReader)})`], { timeout: 30_000, ...asOtherUser }).status === 0;

/** Runs readMap on `path` in a child process as an unprivileged user, so that file modes apply even to root. */
function loadAsUnprivileged(path: string): { ok: boolean; counts?: Record<string, number>; error?: string } {
  const script = `import { readMap } from ${JSON.stringify(builtReader)};
try { const map = readMap(${JSON.stringify(path)}, { name: 'ro', version: '1' }); console.log(JSON.stringify({ ok: true, counts: map.layerCounts })); }
catch (error) { console.log(JSON.stringify({ ok: false, error: error.message })); }`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, ...asOtherUser });
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout.trim().split('\n').pop()!);
}

/** Switches `path` to WAL mode, optionally leaving changes in its log that were never checkpointed. */
function makeWal(path: string, uncheckpointedSql?: string): void {
  const dataset = gdal.open(path, 'r+', ['GPKG']);
  execute(dataset, 'PRAGMA journal_mode=WAL');
  dataset.close();
  if (uncheckpointedSql === undefined) return;
  // The sqlite3 shell can close without a checkpoint, which leaves the changes in map.gpkg-wal.
  const shell = spawnSync('sqlite3', [path, '.dbconfig no_ckpt_on_close on', 'PRAGMA wal_autocheckpoint=0;', uncheckpointedSql], { encoding: 'utf8' });
  expect(shell.status, shell.stderr).toBe(0);
}

const sqlite3Installed = spawnSync('sqlite3', ['-version']).status === 0;

describe('bad maps: rejected', () => {
  it('missing required table', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => {
      const index = dataset.layers.map((layer) => layer.name).indexOf('gen_lane_connectors_scaled_width_polygons');
      dataset.layers.remove(index);
    });
    expect(() => load(path)).toThrow(new RegExp(`map ${path} lacks table\\(s\\) gen_lane_connectors_scaled_width_polygons`));
  });

  it('missing meta table', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => dataset.layers.remove(dataset.layers.map((layer) => layer.name).indexOf('meta')));
    expect(() => load(path)).toThrow(new RegExp(`map ${path} has no 'meta' table`));
  });

  it('missing projectedCoordSystem row', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => execute(dataset, "DELETE FROM meta WHERE key = 'projectedCoordSystem'"));
    expect(() => load(path)).toThrow(new RegExp(`map ${path} has no projectedCoordSystem row`));
  });

  it('srs_id -1 table', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => execute(dataset, "UPDATE gpkg_geometry_columns SET srs_id = -1 WHERE table_name = 'crosswalks'"));
    expect(() => load(path)).toThrow(new RegExp(`map ${path}: table crosswalks has srs_id -1`));
  });

  it('srs_id 0 table with projected coordinates', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => {
      execute(dataset, "UPDATE gpkg_geometry_columns SET srs_id = 0 WHERE table_name = 'walkways'");
      const square = [[664_000, 3_996_000], [664_010, 3_996_000], [664_010, 3_996_010], [664_000, 3_996_000]];
      setGeometryBlob(dataset, 'walkways', 2, gpkgBlob(polygonWkb([square]), 0));
    });
    expect(() => load(path)).toThrow(new RegExp(`map ${path}: table walkways has srs_id 0 .* fid 2 lies outside longitude, latitude ranges`));
  });

  it('truncated file', () => {
    const path = copyOfSample();
    truncateSync(path, statSync(path).size - 64 * 1024);
    expect(() => load(path)).toThrow(new RegExp(`map ${path} is truncated: its header records \\d+ pages`));
  });

  it('text file named map.gpkg', () => {
    const path = join(workDir, `case-${++caseNumber}-map.gpkg`);
    writeFileSync(path, 'lanes_polygons,lane_connectors\n1,2\n');
    expect(() => load(path)).toThrow(new RegExp(`map ${path} is not a GeoPackage: it does not start with the SQLite 3 header \\(its first bytes read 'lanes_polygons,l'\\)`));
  });

  it('missing file', () => {
    const path = join(workDir, 'nowhere', 'map.gpkg');
    expect(() => load(path)).toThrow(`map ${path} does not exist`);
  });

  it.skipIf(!sqlite3Installed || !readerLoadable)('WAL log without -shm in a read-only folder', () => {
    const path = copyOfSample();
    makeWal(path, 'DELETE FROM lanes_polygons WHERE fid > 100;');
    rmSync(`${path}-shm`, { force: true });
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(32);
    const folder = join(path, '..');
    chmodSync(folder, 0o555);
    try {
      const result = loadAsUnprivileged(path);
      expect(result.ok).toBe(false);
      expect(result.error).toContain(`map ${path} has changes in its write-ahead log ${path}-wal`);
    } finally {
      chmodSync(folder, 0o755);
    }
  });
});

describe('bad maps: loaded with documented handling', () => {
  it('missing optional table', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => dataset.layers.remove(dataset.layers.map((layer) => layer.name).indexOf('carpark_areas')));
    const { map, warnings } = load(path);
    expect(map.missingTables).toEqual(['carpark_areas']);
    warningFor(warnings, 'carpark_areas', /table is missing/);
    const settings = { ...NUPLAN_DEFAULT_SETTINGS, mapFeatures: [{ layer: 'CARPARK_AREA' as const, color: 1 }] };
    expect(() => collectDrawables(map, 664_100, 3_996_100, settings)).toThrow(MapLayerUnavailableError);
    expect(() => collectDrawables(map, 664_100, 3_996_100, NUPLAN_DEFAULT_SETTINGS)).not.toThrow();
  });

  it.skipIf(!readerLoadable)('WAL mode in a read-only folder', () => {
    const path = copyOfSample();
    makeWal(path);
    const folder = join(path, '..');
    chmodSync(folder, 0o555);
    try {
      const result = loadAsUnprivileged(path);
      expect(result.error).toBeUndefined();
      expect(result.counts).toEqual(reference.layerCounts);
    } finally {
      chmodSync(folder, 0o755);
    }
  });

  it.skipIf(!sqlite3Installed || !readerLoadable)('WAL log with -shm in a read-only folder', () => {
    const path = copyOfSample();
    makeWal(path, 'DELETE FROM lanes_polygons WHERE fid > 100;');
    expect(existsSync(`${path}-shm`)).toBe(true);
    const folder = join(path, '..');
    chmodSync(folder, 0o555);
    try {
      const result = loadAsUnprivileged(path);
      expect(result.error).toBeUndefined();
      expect(result.counts?.lanes_polygons).toBe(100);
    } finally {
      chmodSync(folder, 0o755);
    }
  });

  it('srs_id 0 table in longitude, latitude', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => execute(dataset, "UPDATE gpkg_geometry_columns SET srs_id = 0 WHERE table_name = 'crosswalks'"));
    const { map, warnings } = load(path);
    warningFor(warnings, 'crosswalks', /srs_id 0/);
    // WGS 84 longitude, latitude is what the sample map stores, so the result equals the reference.
    for (const fid of map.tables.get('crosswalks')!.fids) {
      expect(featureCoords(map, 'crosswalks', fid), `fid ${fid}`).toEqual(featureCoords(reference, 'crosswalks', fid));
    }
  });

  it('null and empty geometries', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => {
      setGeometryBlob(dataset, 'lanes_polygons', 5, null);
      setGeometryBlob(dataset, 'lanes_polygons', 9, gpkgBlob(polygonWkb([]), 4326, { empty: true }));
    });
    const { map, warnings } = load(path);
    const warning = warningFor(warnings, 'lanes_polygons', /null or empty geometry/);
    expect(warning.fids).toEqual([5, 9]);
    expect(warning.message).toContain('fid 5, 9');
    expect(map.layerCounts.lanes_polygons).toBe(reference.layerCounts.lanes_polygons);
    expect(featureCoords(map, 'lanes_polygons', 5)).toEqual([]);
    expect(featureCoords(map, 'lanes_polygons', 9)).toEqual([]);
    expect(featureCoords(map, 'lanes_polygons', 6)).toEqual(featureCoords(reference, 'lanes_polygons', 6));
  });

  it('NaN coordinates', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => {
      const rings = readRings(dataset, 'crosswalks', 3);
      rings[0][1] = [NaN, rings[0][1][1]];
      setGeometryBlob(dataset, 'crosswalks', 3, gpkgBlob(polygonWkb(rings), 4326));
    });
    const { map, warnings } = load(path);
    expect(warningFor(warnings, 'crosswalks', /NaN or infinite coordinates/).fids).toEqual([3]);
    expect(featureCoords(map, 'crosswalks', 3)).toEqual([]);
  });

  it('MultiPolygon in a polygon layer', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => {
      const rings = readRings(dataset, 'lanes_polygons', 7);
      const shifted = rings.map((ring) => ring.map(([x, y]) => [x + 0.001, y]));
      setGeometryBlob(dataset, 'lanes_polygons', 7, gpkgBlob(multiPolygonWkb([polygonWkb(rings), polygonWkb(shifted)]), 4326));
    });
    const { map, warnings } = load(path);
    expect(warningFor(warnings, 'lanes_polygons', /multi-part geometry/).fids).toEqual([7]);
    const parts = featureCoords(map, 'lanes_polygons', 7);
    expect(parts).toHaveLength(2);
    expect(parts[0]).toEqual(featureCoords(reference, 'lanes_polygons', 7)[0]);
    // Both parts are drawn: each is an exterior ring.
    const lanes = map.layers.get('LANE')!;
    const feature = lanes.select.fids.indexOf(7);
    expect(lanes.drawStart[feature + 1] - lanes.drawStart[feature]).toBe(2);
  });

  it('polygon holes are filled', () => {
    const { map } = load(copyOfSample());
    const carparks = map.tables.get('carpark_areas')!;
    const withHole = Array.from({ length: carparks.count }, (_, feature) => feature)
      .find((feature) => carparks.featureRingStart[feature + 1] - carparks.featureRingStart[feature] === 2);
    expect(withHole, 'the sample map has a car park with a hole').toBeDefined();
    const holeRing = carparks.featureRingStart[withHole!] + 1;
    const start = map.ringVertexStart[holeRing], end = map.ringVertexStart[holeRing + 1];
    let cx = 0, cy = 0;
    for (let k = start; k < end - 1; k++) {
      cx += map.coords[2 * k] / (end - 1 - start);
      cy += map.coords[2 * k + 1] / (end - 1 - start);
    }
    // Put the ego centre (1.461 m ahead of the rear axle at heading 0) on the hole's centre.
    const centreOffset = (PACIFICA.frontLength + PACIFICA.rearLength) / 2 - PACIFICA.rearLength;
    const settings = { ...NUPLAN_DEFAULT_SETTINGS, mapFeatures: [{ layer: 'CARPARK_AREA' as const, color: 1 }] };
    const scene = { rearAxle: { x: cx - centreOffset, y: cy, heading: 0 }, vehicle: PACIFICA, objects: new Float64Array(0) };
    const result = new CpuRasterizer().rasterize(map, scene, settings);
    const size = settings.targetWidth;
    const roadmapAt = (row: number, col: number): number => result.data[(row * size + col) * 4 + 2];
    expect(roadmapAt(size / 2, size / 2)).toBe(1);
    expect(roadmapAt(size / 2 - 3, size / 2 + 3)).toBe(1);
  });

  it('curve geometries are linearized', () => {
    const path = copyOfSample();
    const [cx, cy, r] = [-115.18, 36.1, 0.0002];
    editMap(path, (dataset) => {
      const arc = [[cx + r, cy], [cx, cy + r], [cx - r, cy], [cx, cy - r], [cx + r, cy]];
      setGeometryBlob(dataset, 'walkways', 3, gpkgBlob(curvePolygonWkb(arc), 4326));
    });
    const { map, warnings } = load(path);
    expect(warningFor(warnings, 'walkways', /curve geometries; they are linearized/).fids).toEqual([3]);
    const [ring] = featureCoords(map, 'walkways', 3);
    expect(ring.length / 2).toBeGreaterThan(20);
    expect(featureCoords(map, 'walkways', 4)).toEqual(featureCoords(reference, 'walkways', 4));
    expect(map.layerCounts.walkways).toBe(reference.layerCounts.walkways);
  });

  it('Z and M ordinates are ignored', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => {
      setGeometryBlob(dataset, 'lanes_polygons', 2, gpkgBlob(polygonWkb(readRings(dataset, 'lanes_polygons', 2), { z: true }), 4326));
      setGeometryBlob(dataset, 'lanes_polygons', 3, gpkgBlob(polygonWkb(readRings(dataset, 'lanes_polygons', 3), { z: true, m: true }), 4326));
      setGeometryBlob(dataset, 'baseline_paths', 4, gpkgBlob(lineStringWkb(readRings(dataset, 'baseline_paths', 4)[0], { m: true }), 4326));
    });
    const { map, warnings } = load(path);
    expect(warnings).toEqual([]);
    for (const [table, fid] of [['lanes_polygons', 2], ['lanes_polygons', 3], ['baseline_paths', 4]] as const) {
      expect(featureCoords(map, table, fid), `${table} fid ${fid}`).toEqual(featureCoords(reference, table, fid));
    }
  });

  it('big-endian geometry blobs', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => {
      setGeometryBlob(dataset, 'lanes_polygons', 11, gpkgBlob(polygonWkb(readRings(dataset, 'lanes_polygons', 11), { bigEndian: true }), 4326, { bigEndian: true }));
      setGeometryBlob(dataset, 'baseline_paths', 12, gpkgBlob(lineStringWkb(readRings(dataset, 'baseline_paths', 12)[0], { bigEndian: true }), 4326, { bigEndian: true }));
    });
    const { map, warnings } = load(path);
    expect(warnings).toEqual([]);
    expect(featureCoords(map, 'lanes_polygons', 11)).toEqual(featureCoords(reference, 'lanes_polygons', 11));
    expect(featureCoords(map, 'baseline_paths', 12)).toEqual(featureCoords(reference, 'baseline_paths', 12));
  });

  it('geometry column not named geom', () => {
    const path = join(workDir, `case-${++caseNumber}-shape.gpkg`);
    const source = gdal.open(samplePath);
    gdal.vectorTranslate(path, source, ['-f', 'GPKG', '-preserve_fid', '-lco', 'GEOMETRY_NAME=shape']).close();
    source.close();
    const renamed = gdal.open(path);
    expect(renamed.layers.get('lanes_polygons').geomColumn).toBe('shape');
    renamed.close();
    const { map } = load(path);
    expect(map.layerCounts).toEqual(reference.layerCounts);
    expect(map.coords).toEqual(reference.coords);
  });

  it('lane whose fid differs from lane_fid', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => execute(dataset, 'UPDATE lanes_polygons SET lane_fid = 9999 WHERE fid = 4'));
    const { map, warnings } = load(path);
    const warning = warningFor(warnings, 'lanes_polygons', /lane_fid other than their fid/);
    expect(warning.fids).toEqual([4]);
    expect(warning.message).toContain('fid 4 has lane_fid 9999');
    // Baseline paths stay joined by fid, as nuPlan joins them.
    expect(map.layers.get('LANE')!.baselineRanges).toEqual(reference.layers.get('LANE')!.baselineRanges);
  });

  it('lane with no baseline path', () => {
    const path = copyOfSample();
    editMap(path, (dataset) => execute(dataset, 'DELETE FROM baseline_paths WHERE lane_fid = 6'));
    const { map, warnings } = load(path);
    expect(warningFor(warnings, 'lanes_polygons', /have no baseline_paths row/).fids).toEqual([6]);
    const lanes = map.layers.get('LANE')!;
    const feature = lanes.select.fids.indexOf(6);
    expect(lanes.baselineRanges![2 * feature + 1] - lanes.baselineRanges![2 * feature]).toBe(0);
  });

  it('lane connector with two baseline paths', () => {
    const path = copyOfSample();
    let connector = 0;
    editMap(path, (dataset) => {
      const row = dataset.layers.get('baseline_paths').features.get(reference.tables.get('baseline_paths')!.count);
      connector = row.fields.get('lane_connector_fid') as number;
      expect(connector, 'the last baseline path belongs to a lane connector').toBeGreaterThan(0);
      const shifted = readRings(dataset, 'baseline_paths', row.fid)[0].map(([x, y]) => [x, y + 0.001]);
      execute(dataset, `INSERT INTO baseline_paths (fid, geom, path_type_fid, lane_connector_fid) VALUES (100000, X'${gpkgBlob(lineStringWkb(shifted), 4326).toString('hex')}', 1, ${connector})`);
    });
    const { map, warnings } = load(path);
    expect(warningFor(warnings, 'lane_connectors', /several baseline_paths rows/).fids).toEqual([connector]);
    // The path read first (the lower fid) is drawn.
    expect(map.layers.get('LANE_CONNECTOR')!.baselineRanges).toEqual(reference.layers.get('LANE_CONNECTOR')!.baselineRanges);
  });
});
