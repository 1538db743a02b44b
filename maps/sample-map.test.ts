import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import gdal from 'gdal-async';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { buildSampleTown, writeSampleMap, type SampleMapSummary } from './sample-map.js';

const run = promisify(execFile);

/** nuPlan's layers with the geometry type and fields that `ogrinfo -so` prints for them. */
const EXPECTED_LAYERS: Array<{ name: string; geometry: string; fields: string[] }> = [
  {
    name: 'lanes_polygons',
    geometry: 'Polygon',
    fields: [
      'lane_group_fid: Integer64',
      'lane_fid: Integer64',
      'lane_index: Integer64',
      'speed_limit_mps: Real',
      'left_boundary_fid: Integer64',
      'right_boundary_fid: Integer64',
    ],
  },
  { name: 'lane_groups_polygons', geometry: 'Polygon', fields: ['from_edge_fid: Integer64', 'to_edge_fid: Integer64'] },
  {
    name: 'lane_connectors',
    geometry: 'Line String',
    fields: [
      'exit_lane_group_fid: Integer64',
      'exit_lane_fid: Integer64',
      'entry_lane_group_fid: Integer64',
      'entry_lane_fid: Integer64',
      'lane_group_connector_fid: Integer64',
      'intersection_fid: Integer64',
      'turn_type_fid: Integer64',
    ],
  },
  {
    name: 'lane_group_connectors',
    geometry: 'Polygon',
    fields: ['intersection_fid: Integer64', 'from_lane_group_fid: Integer64', 'to_lane_group_fid: Integer64'],
  },
  {
    name: 'baseline_paths',
    geometry: 'Line String',
    fields: ['path_type_fid: Integer64', 'lane_fid: Integer64', 'lane_connector_fid: Integer64'],
  },
  { name: 'boundaries', geometry: 'Line String', fields: ['boundary_type_fid: Integer64'] },
  { name: 'intersections', geometry: 'Polygon', fields: ['intersection_type_fid: Integer64', 'is_mini: Integer64'] },
  {
    name: 'stop_polygons',
    geometry: 'Polygon',
    fields: ['stop_polygon_type_fid: Integer64', 'lane_group_fid: Integer64', 'lane_fids: String'],
  },
  { name: 'crosswalks', geometry: 'Polygon', fields: ['intersection_fids: String', 'is_marked: Integer64'] },
  {
    name: 'gen_lane_connectors_scaled_width_polygons',
    geometry: 'Polygon',
    fields: ['baseline_path_fid: Integer64', 'lane_connector_fid: Integer64'],
  },
  { name: 'walkways', geometry: 'Polygon', fields: [] },
  { name: 'carpark_areas', geometry: 'Polygon', fields: ['heading: Real'] },
  { name: 'meta', geometry: 'None', fields: ['key: String', 'value: String'] },
];

interface Row {
  fid: number;
  fields: Record<string, number | string | null>;
  geometry: gdal.Geometry | null;
}

function readRows(dataset: gdal.Dataset, layerName: string): Row[] {
  const rows: Row[] = [];
  for (const feature of dataset.layers.get(layerName).features) {
    rows.push({ fid: feature.fid, fields: feature.fields.toObject(), geometry: feature.getGeometry() });
  }
  return rows;
}

function linePoints(geometry: gdal.Geometry | null): gdal.Point[] {
  return (geometry as gdal.LineString).points.toArray();
}

/** Counts how often each value of `field` occurs, ignoring nulls. */
function countValues(rows: Row[], field: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const row of rows) {
    const value = row.fields[field];
    if (value !== null) counts.set(value as number, (counts.get(value as number) ?? 0) + 1);
  }
  return counts;
}

/** Transforms one projected point to longitude and latitude with the gdaltransform program. */
async function gdaltransform(crs: string, x: number, y: number): Promise<[number, number]> {
  const child = execFile('gdaltransform', ['-s_srs', crs.toUpperCase(), '-t_srs', 'EPSG:4326']);
  const output = new Promise<string>((resolvePromise, reject) => {
    let text = '';
    child.stdout?.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise(text);
      else reject(new Error(`gdaltransform failed with exit code ${code}`));
    });
  });
  child.stdin?.end(`${x} ${y}\n`);
  const [longitude, latitude] = (await output).trim().split(/\s+/).map(Number);
  return [longitude, latitude];
}

describe('writeSampleMap on the default 3x3 town', () => {
  let directory: string;
  let summary: SampleMapSummary;
  let dataset: gdal.Dataset;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'sample-map-'));
    summary = await writeSampleMap(join(directory, 'town', 'map.gpkg'));
    dataset = gdal.open(summary.path);
  });

  afterAll(async () => {
    dataset?.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('ogrinfo lists the layers and geometry types', async () => {
    const { stdout } = await run('ogrinfo', ['-ro', '-so', summary.path]);
    const layers = [...stdout.matchAll(/^\d+: (\S+) \((.+)\)$/gm)].map((match) => [match[1], match[2]]);

    expect(layers).toEqual(EXPECTED_LAYERS.map((layer) => [layer.name, layer.geometry]));
  });

  it.each(EXPECTED_LAYERS)('ogrinfo shows the columns of $name', async (layer) => {
    const { stdout } = await run('ogrinfo', ['-ro', '-so', summary.path, layer.name]);
    const fields = [...stdout.matchAll(/^(\w+): (\w+) \(/gm)].map((match) => `${match[1]}: ${match[2]}`);

    expect(stdout).toContain('FID Column = fid');
    expect(fields).toEqual(layer.fields);
    if (layer.geometry !== 'None') {
      expect(stdout).toContain('Geometry Column = geom');
      expect(stdout).toContain('ID["EPSG",4326]');
    }
  });

  it('summary counts match the file', () => {
    for (const layer of EXPECTED_LAYERS) {
      expect(summary.layerCounts[layer.name], layer.name).toBe(dataset.layers.get(layer.name).features.count());
      expect(summary.layerCounts[layer.name], layer.name).toBeGreaterThan(0);
    }
    expect(summary.layerCounts.intersections).toBe(16);
  });

  it('lane_fid equals the lanes_polygons fid', () => {
    const lanes = readRows(dataset, 'lanes_polygons');

    expect(lanes.length).toBeGreaterThan(0);
    for (const lane of lanes) expect(lane.fields.lane_fid).toBe(lane.fid);
  });

  it('each lane has exactly one baseline path', () => {
    const lanes = readRows(dataset, 'lanes_polygons');
    const paths = readRows(dataset, 'baseline_paths');
    const lanePaths = paths.filter((path) => path.fields.lane_fid !== null);
    const perLane = countValues(paths, 'lane_fid');

    for (const lane of lanes) expect(perLane.get(lane.fid), `lane ${lane.fid}`).toBe(1);
    expect(lanePaths).toHaveLength(lanes.length);
    for (const path of lanePaths) {
      expect(path.fields.lane_connector_fid).toBeNull();
      expect(path.fields.path_type_fid).toBe(0);
    }
  });

  it('each lane connector has exactly one baseline path', () => {
    const connectors = readRows(dataset, 'lane_connectors');
    const paths = readRows(dataset, 'baseline_paths');
    const connectorPaths = paths.filter((path) => path.fields.lane_connector_fid !== null);
    const perConnector = countValues(paths, 'lane_connector_fid');

    for (const connector of connectors) expect(perConnector.get(connector.fid), `connector ${connector.fid}`).toBe(1);
    expect(connectorPaths).toHaveLength(connectors.length);
    expect(connectorPaths.length + readRows(dataset, 'lanes_polygons').length).toBe(paths.length);
    for (const path of connectorPaths) {
      expect(path.fields.lane_fid).toBeNull();
      expect(path.fields.path_type_fid).toBe(1);
    }
  });

  it('each lane connector has one scaled-width polygon', () => {
    const connectors = readRows(dataset, 'lane_connectors');
    const polygons = readRows(dataset, 'gen_lane_connectors_scaled_width_polygons');
    const paths = new Map(readRows(dataset, 'baseline_paths').map((path) => [path.fid, path]));
    const perConnector = countValues(polygons, 'lane_connector_fid');

    expect(polygons).toHaveLength(connectors.length);
    for (const connector of connectors) expect(perConnector.get(connector.fid), `connector ${connector.fid}`).toBe(1);
    for (const polygon of polygons) {
      expect(paths.get(polygon.fields.baseline_path_fid as number)?.fields.lane_connector_fid).toBe(
        polygon.fields.lane_connector_fid,
      );
    }
  });

  it('lane connectors join their lanes end to start', () => {
    const lanePaths = new Map<number, gdal.Point[]>();
    for (const path of readRows(dataset, 'baseline_paths')) {
      if (path.fields.lane_fid !== null) lanePaths.set(path.fields.lane_fid as number, linePoints(path.geometry));
    }
    const connectors = readRows(dataset, 'lane_connectors');
    const turnTypes = new Set(connectors.map((connector) => connector.fields.turn_type_fid));

    expect([...turnTypes].sort()).toEqual([1, 2, 3]);
    for (const connector of connectors) {
      const points = linePoints(connector.geometry);
      const exitPath = lanePaths.get(connector.fields.exit_lane_fid as number);
      const entryPath = lanePaths.get(connector.fields.entry_lane_fid as number);
      expect(exitPath, `exit lane of connector ${connector.fid}`).toBeDefined();
      expect(entryPath, `entry lane of connector ${connector.fid}`).toBeDefined();
      const exitEnd = exitPath![exitPath!.length - 1];
      expect(points[0].x).toBeCloseTo(exitEnd.x, 9);
      expect(points[0].y).toBeCloseTo(exitEnd.y, 9);
      expect(points[points.length - 1].x).toBeCloseTo(entryPath![0].x, 9);
      expect(points[points.length - 1].y).toBeCloseTo(entryPath![0].y, 9);
      if (connector.fields.turn_type_fid !== 1) expect(points.length).toBeGreaterThanOrEqual(8);
    }
  });

  it('references point at existing features', () => {
    const fids = (layer: string): Set<number> => new Set(readRows(dataset, layer).map((row) => row.fid));
    const laneGroups = fids('lane_groups_polygons');
    const boundaries = fids('boundaries');
    const intersections = fids('intersections');
    const laneGroupConnectors = fids('lane_group_connectors');
    const lanes = fids('lanes_polygons');

    for (const lane of readRows(dataset, 'lanes_polygons')) {
      expect(laneGroups.has(lane.fields.lane_group_fid as number)).toBe(true);
      expect(boundaries.has(lane.fields.left_boundary_fid as number)).toBe(true);
      expect(boundaries.has(lane.fields.right_boundary_fid as number)).toBe(true);
    }
    for (const connector of readRows(dataset, 'lane_connectors')) {
      expect(laneGroupConnectors.has(connector.fields.lane_group_connector_fid as number)).toBe(true);
      expect(laneGroups.has(connector.fields.exit_lane_group_fid as number)).toBe(true);
      expect(laneGroups.has(connector.fields.entry_lane_group_fid as number)).toBe(true);
      // Connectors across the gap of a split road lie outside every intersection.
      const intersectionFid = connector.fields.intersection_fid;
      if (intersectionFid !== null) expect(intersections.has(intersectionFid as number)).toBe(true);
    }
    for (const stop of readRows(dataset, 'stop_polygons')) {
      expect(lanes.has(Number(stop.fields.lane_fids))).toBe(true);
      expect(stop.fields.stop_polygon_type_fid).toBe(2);
    }
    for (const crosswalk of readRows(dataset, 'crosswalks')) {
      expect(intersections.has(Number(crosswalk.fields.intersection_fids))).toBe(true);
    }
  });

  it('meta stores projectedCoordSystem', () => {
    const meta = dataset.layers.get('meta');
    const rows = readRows(dataset, 'meta');
    const values = new Map(rows.map((row) => [row.fields.key, row.fields.value]));

    expect(meta.geomType).toBe(gdal.wkbNone);
    expect(values.get('projectedCoordSystem')).toBe('epsg:32611');
    expect(values.get('geographicCoordSystem')).toBe('epsg:4326');
  });

  it('polygons are valid', () => {
    for (const layer of EXPECTED_LAYERS.filter((schema) => schema.geometry === 'Polygon')) {
      for (const row of readRows(dataset, layer.name)) {
        expect(row.geometry?.isValid(), `${layer.name} fid ${row.fid}`).toBe(true);
      }
    }
  });

  it('a car park has a hole', () => {
    const ringCounts = readRows(dataset, 'carpark_areas').map((row) => (row.geometry as gdal.Polygon).rings.count());

    expect(ringCounts).toContain(2);
  });

  it('stored coordinates are longitude, latitude of the projected input', async () => {
    const town = buildSampleTown();
    const lane = town.layers.lanes_polygons[0];
    const connector = town.layers.lane_connectors.find((feature) => feature.fields.turn_type_fid === 2);
    if (lane.geometry?.type !== 'Polygon' || connector?.geometry?.type !== 'LineString') {
      throw new Error('unexpected geometry types in the generated town');
    }
    const lanePoint = (dataset.layers.get('lanes_polygons').features.get(lane.fid).getGeometry() as gdal.Polygon).rings
      .get(0)
      .points.get(0);
    const connectorPoint = linePoints(dataset.layers.get('lane_connectors').features.get(connector.fid).getGeometry())[5];

    const [laneLongitude, laneLatitude] = await gdaltransform(town.projectedCrs, lane.geometry.rings[0][0], lane.geometry.rings[0][1]);
    const [connectorLongitude, connectorLatitude] = await gdaltransform(
      town.projectedCrs,
      connector.geometry.coords[10],
      connector.geometry.coords[11],
    );

    expect(laneLongitude).toBeGreaterThan(-120);
    expect(laneLongitude).toBeLessThan(-114);
    expect(Math.abs(lanePoint.x - laneLongitude)).toBeLessThan(1e-9);
    expect(Math.abs(lanePoint.y - laneLatitude)).toBeLessThan(1e-9);
    expect(Math.abs(connectorPoint.x - connectorLongitude)).toBeLessThan(1e-9);
    expect(Math.abs(connectorPoint.y - connectorLatitude)).toBeLessThan(1e-9);
  });

  it('writing again overwrites the map', async () => {
    const path = join(directory, 'overwrite.gpkg');
    await writeSampleMap(path, { blocksX: 2, blocksY: 1 });
    const second = await writeSampleMap(path, { blocksX: 1, blocksY: 1 });
    const reopened = gdal.open(path);
    try {
      expect(reopened.layers.get('intersections').features.count()).toBe(4);
      expect(second.layerCounts.intersections).toBe(4);
    } finally {
      reopened.close();
    }
  });
});

describe('buildSampleTown', () => {
  it('same seed gives the same town', () => {
    const first = buildSampleTown({ seed: 7 });
    const second = buildSampleTown({ seed: 7 });
    const other = buildSampleTown({ seed: 8 });

    expect(second).toEqual(first);
    expect(other.layers.lanes_polygons).toHaveLength(first.layers.lanes_polygons.length);
    expect(other.layers.lanes_polygons[0].geometry).not.toEqual(first.layers.lanes_polygons[0].geometry);
  });

  it.each([
    [{ blocksX: 0 }, /blocksX 0/],
    [{ blocksY: 2.5 }, /blocksY 2\.5/],
    [{ blockSize: 10 }, /blockSize 10 m/],
    [{ seed: Number.NaN }, /seed NaN/],
    [{ originX: Number.POSITIVE_INFINITY }, /originX Infinity/],
    [{ projectedCrs: 'utm11' }, /projectedCrs "utm11"/],
    [{ blockSise: 100 } as object, /Unknown option "blockSise"/],
  ])('rejects invalid options %o', (options, message) => {
    expect(() => buildSampleTown(options)).toThrow(message);
  });

  it('writeSampleMap rejects a geographic CRS', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sample-map-'));
    try {
      await expect(writeSampleMap(join(directory, 'map.gpkg'), { projectedCrs: 'epsg:4326' })).rejects.toThrow(
        /projectedCrs "epsg:4326": it is not a projected CRS/,
      );
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

describe('writeSampleMap at city scale', () => {
  // Targets: about 7,000 lanes, 11,000 lane connectors and 600 intersections. A 24x24 grid has
  // 25x25 = 625 intersection nodes.
  it('24x24 blocks reach the target counts', { timeout: 60_000 }, async () => {
    const directory = await mkdtemp(join(tmpdir(), 'sample-map-'));
    try {
      const summary = await writeSampleMap(join(directory, 'city.gpkg'), { blocksX: 24, blocksY: 24 });
      const dataset = gdal.open(summary.path);
      const lanes = dataset.layers.get('lanes_polygons').features.count();
      dataset.close();

      expect(lanes).toBe(summary.layerCounts.lanes_polygons);
      expect(summary.layerCounts.lanes_polygons).toBeGreaterThanOrEqual(7000 * 0.8);
      expect(summary.layerCounts.lanes_polygons).toBeLessThanOrEqual(7000 * 1.2);
      expect(summary.layerCounts.lane_connectors).toBeGreaterThanOrEqual(11000 * 0.8);
      expect(summary.layerCounts.lane_connectors).toBeLessThanOrEqual(11000 * 1.2);
      expect(summary.layerCounts.intersections).toBeGreaterThanOrEqual(600 * 0.8);
      expect(summary.layerCounts.intersections).toBeLessThanOrEqual(600 * 1.2);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
