import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { LOCAL_FIXTURES, SHARED_FIXTURES } from '../test/fixtures.js';
import { readMap } from './gpkg-reader.js';
import { polygonIntersectsRect, rangesIntersectRect } from './geometry.js';
import { querySquare, selectFeatures } from './map-data.js';
import { MAP_TABLES } from './semantic-layers.js';

/** The map files to check: the repository's town-a, and the AV2 map when ../shared is present. */
const MAPS = [
  { name: 'town-a', path: join(LOCAL_FIXTURES, 'maps/town-a/1.0.0/map.gpkg') },
  { name: 'av2-pit-7fab2350', path: join(SHARED_FIXTURES, 'maps/av2-pit-7fab2350/1.0.0/map.gpkg') },
].filter((map) => existsSync(map.path));

function ogrFeatureCount(path: string, table: string): number {
  const summary = execFileSync('ogrinfo', ['-ro', '-so', path, table], { encoding: 'utf8' });
  const match = /Feature Count: (\d+)/.exec(summary);
  if (!match) throw new Error(`ogrinfo printed no feature count for ${table}:\n${summary}`);
  return Number(match[1]);
}

/** The table reprojected by GDAL's own ogr2ogr, with 17 significant digits (exact float64 round trip). */
function ogrGeoJson(path: string, table: string, crs: string): { features: Array<{ id?: number; properties: Record<string, unknown>; geometry: { type: string; coordinates: unknown } | null }> } {
  const text = execFileSync('ogr2ogr', ['-f', 'GeoJSON', '-t_srs', crs, '/vsistdout/', path, table, '-lco', 'SIGNIFICANT_FIGURES=17', '-lco', 'RFC7946=NO', '-lco', 'ID_FIELD=fid'], {
    encoding: 'utf8', maxBuffer: 256 * 1024 * 1024,
  });
  return JSON.parse(text);
}

function flattenRings(geometry: { type: string; coordinates: unknown } | null): number[][][] {
  if (geometry === null) return [];
  if (geometry.type === 'LineString') return [geometry.coordinates as number[][]];
  if (geometry.type === 'Polygon') return geometry.coordinates as number[][][];
  if (geometry.type === 'MultiPolygon') return (geometry.coordinates as number[][][][]).flat();
  if (geometry.type === 'MultiLineString') return geometry.coordinates as number[][][];
  throw new Error(`unexpected geometry type ${geometry.type}`);
}

describe.each(MAPS)('readMap on $name', ({ name, path }) => {
  const map = readMap(path, { name, version: '1.0.0' });

  it('layer counts equal ogrinfo', () => {
    for (const table of Object.keys(MAP_TABLES)) {
      if (map.missingTables.includes(table)) continue;
      expect(map.layerCounts[table], table).toBe(ogrFeatureCount(path, table));
    }
  });

  it('coordinates equal ogr2ogr reprojection bit for bit', () => {
    for (const table of ['lanes_polygons', 'baseline_paths', 'lane_connectors', 'intersections']) {
      const data = map.tables.get(table)!;
      const expected = ogrGeoJson(path, table, map.projectedCrs).features;
      expect(expected.length).toBe(data.count);
      expected.forEach((feature, i) => {
        const rings = flattenRings(feature.geometry);
        const firstRing = data.featureRingStart[i];
        expect(data.featureRingStart[i + 1] - firstRing, `${table} feature ${i} rings`).toBe(rings.length);
        rings.forEach((ring, r) => {
          const start = map.ringVertexStart[firstRing + r];
          expect(map.ringVertexStart[firstRing + r + 1] - start).toBe(ring.length);
          ring.forEach(([x, y], k) => {
            expect(map.coords[2 * (start + k)], `${table} feature ${i} vertex ${k} x`).toBe(x);
            expect(map.coords[2 * (start + k) + 1], `${table} feature ${i} vertex ${k} y`).toBe(y);
          });
        });
      });
    }
  });

  it('join columns equal the stored values', () => {
    const expected = ogrGeoJson(path, 'baseline_paths', map.projectedCrs).features;
    const data = map.tables.get('baseline_paths')!;
    expected.forEach((feature, i) => {
      const laneFid = feature.properties.lane_fid as number | null;
      expect(Number.isNaN(data.columns.lane_fid[i]) ? null : data.columns.lane_fid[i]).toBe(laneFid);
    });
  });

  it('index query selects what a full scan selects', () => {
    for (const layerName of ['LANE', 'LANE_CONNECTOR', 'INTERSECTION', 'CROSSWALK'] as const) {
      const table = map.layers.get(layerName)!.select;
      for (let probe = 0; probe < table.count; probe += 7) {
        if (Number.isNaN(table.bbox[4 * probe])) continue;
        const rect = querySquare(table.bbox[4 * probe], table.bbox[4 * probe + 3], 56);
        const scanned: number[] = [];
        for (let feature = 0; feature < table.count; feature++) {
          const first = table.featureRingStart[feature], end = table.featureRingStart[feature + 1];
          const hit = table.kind === 'polygon'
            ? polygonIntersectsRect(map.coords, map.ringVertexStart, first, end, rect)
            : rangesIntersectRect(map.coords, map.ringVertexStart, first, end, false, rect);
          if (hit) scanned.push(feature);
        }
        expect(selectFeatures(map, table, rect), `${layerName} around feature ${probe}`).toEqual(scanned);
      }
    }
  });
});

describe('readMap errors', () => {
  it('rejects a file that is not a GeoPackage', () => {
    expect(() => readMap(join(LOCAL_FIXTURES, 'maps/nuplan-maps-v1.0.json'), { name: 'bad', version: '1' })).toThrow(/map .*nuplan-maps-v1.0.json is not a GeoPackage/);
  });
});
