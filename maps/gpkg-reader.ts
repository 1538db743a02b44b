import Flatbush from 'flatbush';
import gdal from 'gdal-async';

import type { MapData, SemanticLayerData, TableData } from './map-data.js';
import { BASELINE_TABLE, JOIN_COLUMNS, MAP_TABLES, POLYGON_LAYERS, SEMANTIC_LAYER_SOURCES } from './semantic-layers.js';
import { readWkb } from './wkb.js';

/** Something worth telling the operator about a map that still loads. */
export interface MapLoadWarning {
  table: string;
  fid?: number;
  message: string;
}

/** Options of one map load. */
export interface ReadMapOptions {
  name: string;
  version: string;
  /** Called once per table read, for progress display. */
  onTable?: (table: string, done: number, total: number) => void;
  /** Receives each problem that the load handles instead of failing. */
  onWarning?: (warning: MapLoadWarning) => void;
}

/** Growable flat buffers shared by every table of one map. */
class GeometryBuffers {
  coords = new Float64Array(1 << 16);
  vertexCount = 0;
  ringVertexStart: number[] = [];
  ringHole: number[] = [];

  addVertex(x: number, y: number): void {
    if (2 * this.vertexCount + 2 > this.coords.length) {
      const grown = new Float64Array(this.coords.length * 2);
      grown.set(this.coords);
      this.coords = grown;
    }
    this.coords[2 * this.vertexCount] = x;
    this.coords[2 * this.vertexCount + 1] = y;
    this.vertexCount++;
  }

  startRing(hole: boolean): void {
    this.ringVertexStart.push(this.vertexCount);
    this.ringHole.push(hole ? 1 : 0);
  }
}

function readProjectedCrs(dataset: gdal.Dataset, path: string): string {
  let metaLayer: gdal.Layer;
  try {
    metaLayer = dataset.layers.get('meta');
  } catch {
    throw new Error(`map ${path} has no 'meta' table; nuPlan maps name their projected CRS in meta.projectedCoordSystem`);
  }
  for (const feature of metaLayer.features) {
    const row = feature.fields.toObject() as Record<string, unknown>;
    if (row.key === 'projectedCoordSystem' && typeof row.value === 'string' && row.value.length > 0) return row.value;
  }
  throw new Error(`map ${path} has no projectedCoordSystem row in its 'meta' table; add one such as 'epsg:32611'`);
}

/** Picks the coordinate transformation from a table's stored CRS to the map's projected CRS. */
function transformFor(layer: gdal.Layer, target: gdal.SpatialReference, path: string, options: ReadMapOptions): gdal.CoordinateTransformation | null {
  const source = layer.srs;
  if (source === null) {
    // GeoPackage srs_id 0 (undefined geographic) or -1 (undefined Cartesian) reads as no CRS.
    options.onWarning?.({ table: layer.name, message: `table has no CRS (srs_id 0 or -1); its coordinates are read as EPSG:4326 longitude, latitude` });
    return new gdal.CoordinateTransformation(gdal.SpatialReference.fromEPSG(4326), target);
  }
  if (source.isSame(target)) return null;
  try {
    return new gdal.CoordinateTransformation(source, target);
  } catch (error) {
    throw new Error(`map ${path}: cannot transform table ${layer.name} to ${target.toProj4()}: ${(error as Error).message}`);
  }
}

function readTable(
  dataset: gdal.Dataset, tableName: string, kind: 'polygon' | 'line', target: gdal.SpatialReference, buffers: GeometryBuffers,
  path: string, options: ReadMapOptions,
): TableData {
  const layer = dataset.layers.get(tableName);
  const transform = transformFor(layer, target, path, options);
  const joinColumns = JOIN_COLUMNS[tableName] ?? [];
  const fids: number[] = [];
  const featureRingStart: number[] = [];
  const columnValues: Record<string, number[]> = Object.fromEntries(joinColumns.map((column) => [column, []]));
  let emptyGeometries = 0;

  layer.features.forEach((feature) => {
    fids.push(feature.fid);
    featureRingStart.push(buffers.ringVertexStart.length);
    for (const column of joinColumns) {
      const value = feature.fields.get(column) as number | null | undefined;
      columnValues[column].push(value === null || value === undefined ? NaN : Number(value));
    }

    const geometry = feature.getGeometry();
    if (geometry === null || geometry.isEmpty()) {
      emptyGeometries++;
      return;
    }
    if (transform !== null) geometry.transform(transform);
    const ringsBefore = buffers.ringVertexStart.length;
    const verticesBefore = buffers.vertexCount;
    try {
      readWkb(geometry.toWKB(gdal.wkbNDR), 0, buffers);
    } catch (error) {
      // NOTE: curve geometries (CircularString, CompoundCurve, CurvePolygon) are not linearized yet; such features are skipped.
      buffers.ringVertexStart.length = ringsBefore;
      buffers.ringHole.length = ringsBefore;
      buffers.vertexCount = verticesBefore;
      options.onWarning?.({ table: tableName, fid: feature.fid, message: `geometry skipped: ${(error as Error).message}` });
    }
  });

  if (emptyGeometries > 0) {
    options.onWarning?.({ table: tableName, message: `${emptyGeometries} features have a null or empty geometry; they are never selected` });
  }

  featureRingStart.push(buffers.ringVertexStart.length);
  return finishTable(tableName, kind, fids, featureRingStart, columnValues, buffers);
}

function finishTable(
  name: string, kind: 'polygon' | 'line', fids: number[], featureRingStart: number[], columnValues: Record<string, number[]>,
  buffers: GeometryBuffers,
): TableData {
  const count = fids.length;
  const bbox = new Float64Array(4 * count).fill(NaN);
  const indexed: number[] = [];
  for (let feature = 0; feature < count; feature++) {
    const firstVertex = buffers.ringVertexStart[featureRingStart[feature]];
    const endRing = featureRingStart[feature + 1];
    const endVertex = endRing < buffers.ringVertexStart.length ? buffers.ringVertexStart[endRing] : buffers.vertexCount;
    if (endVertex <= firstVertex || featureRingStart[feature] === endRing) continue;
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (let k = firstVertex; k < endVertex; k++) {
      const x = buffers.coords[2 * k], y = buffers.coords[2 * k + 1];
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
    bbox.set([minX, minY, maxX, maxY], 4 * feature);
    indexed.push(feature);
  }

  let index: Flatbush | null = null;
  if (indexed.length > 0) {
    index = new Flatbush(indexed.length);
    for (const feature of indexed) index.add(bbox[4 * feature], bbox[4 * feature + 1], bbox[4 * feature + 2], bbox[4 * feature + 3]);
    index.finish();
  }

  const columns: Record<string, Float64Array> = {};
  for (const [column, values] of Object.entries(columnValues)) columns[column] = Float64Array.from(values);
  return {
    name, kind, count,
    fids: Float64Array.from(fids),
    featureRingStart: Uint32Array.from(featureRingStart),
    bbox, columns, index,
    indexFeatures: Uint32Array.from(indexed),
  };
}

/** Maps each value of `column` to the feature indices holding it; NaN (null) values are left out. */
function groupByColumn(table: TableData, column: string): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  const values = table.columns[column];
  for (let feature = 0; feature < table.count; feature++) {
    const value = values[feature];
    if (Number.isNaN(value)) continue;
    const group = groups.get(value);
    if (group) group.push(feature);
    else groups.set(value, [feature]);
  }
  return groups;
}

/** Vertex ranges of the exterior rings (holes skipped) of one feature, appended as [start, end) pairs. */
function pushExteriorRanges(table: TableData, feature: number, ringHole: Uint8Array, ringVertexStart: Uint32Array, out: number[]): void {
  for (let ring = table.featureRingStart[feature]; ring < table.featureRingStart[feature + 1]; ring++) {
    if (table.kind === 'polygon' && ringHole[ring]) continue;
    out.push(ringVertexStart[ring], ringVertexStart[ring + 1]);
  }
}

/**
 * Resolves what each semantic layer draws: for lane connectors the scaled-width polygon with the same
 * lane_connector_fid, for lanes and lane connectors their baseline path.
 */
function resolveSemanticLayers(
  tables: Map<string, TableData>, ringHole: Uint8Array, ringVertexStart: Uint32Array, options: ReadMapOptions,
): Map<(typeof POLYGON_LAYERS)[number], SemanticLayerData> {
  const layers = new Map<(typeof POLYGON_LAYERS)[number], SemanticLayerData>();
  const baselines = tables.get(BASELINE_TABLE);

  for (const name of POLYGON_LAYERS) {
    const source = SEMANTIC_LAYER_SOURCES[name];
    const select = tables.get(source.selectTable);
    const draw = tables.get(source.drawTable);
    if (!select || !draw) continue;

    const drawGroups = source.drawJoinColumn ? groupByColumn(draw, source.drawJoinColumn) : null;
    const baselineGroups = source.baselineJoinColumn && baselines ? groupByColumn(baselines, source.baselineJoinColumn) : null;
    const drawStart = new Uint32Array(select.count + 1);
    const drawRanges: number[] = [];
    const baselineRanges = baselineGroups ? new Uint32Array(2 * select.count) : null;
    let missingDraw = 0, missingBaseline = 0, duplicateBaseline = 0;

    for (let feature = 0; feature < select.count; feature++) {
      drawStart[feature] = drawRanges.length / 2;
      const fid = select.fids[feature];
      if (drawGroups) {
        const matches = drawGroups.get(fid);
        if (matches) pushExteriorRanges(draw, matches[0], ringHole, ringVertexStart, drawRanges);
        else missingDraw++;
      } else {
        pushExteriorRanges(draw, feature, ringHole, ringVertexStart, drawRanges);
      }

      if (baselineGroups && baselines && baselineRanges) {
        const matches = baselineGroups.get(fid);
        if (!matches) {
          missingBaseline++;
          continue;
        }
        if (matches.length > 1) duplicateBaseline++;
        const firstRing = baselines.featureRingStart[matches[0]];
        const endRing = baselines.featureRingStart[matches[0] + 1];
        if (endRing > firstRing) {
          baselineRanges[2 * feature] = ringVertexStart[firstRing];
          baselineRanges[2 * feature + 1] = ringVertexStart[firstRing + 1];
        }
      }
    }
    drawStart[select.count] = drawRanges.length / 2;

    if (missingDraw > 0) {
      options.onWarning?.({ table: source.drawTable, message: `${missingDraw} ${name} objects have no row with a matching ${source.drawJoinColumn}; they are not drawn` });
    }
    if (missingBaseline > 0) {
      options.onWarning?.({ table: BASELINE_TABLE, message: `${missingBaseline} ${name} objects have no baseline path (${source.baselineJoinColumn}); none is drawn for them` });
    }
    if (duplicateBaseline > 0) {
      options.onWarning?.({ table: BASELINE_TABLE, message: `${duplicateBaseline} ${name} objects have several baseline paths; the one with the lowest fid is drawn (nuPlan raises here)` });
    }
    layers.set(name, { name, select, drawStart, drawRanges: Uint32Array.from(drawRanges), baselineRanges });
  }
  return layers;
}

/**
 * Reads a nuPlan GeoPackage map: every table the rasterizer uses, reprojected from its stored CRS
 * (EPSG:4326 in nuPlan's maps, longitude first) to the CRS named by meta.projectedCoordSystem, in
 * float64, with one bounding-box index per table.
 * @param path the map.gpkg file
 * @throws Error naming the file when it cannot be opened or has no projected CRS
 */
export function readMap(path: string, options: ReadMapOptions): MapData {
  const started = performance.now();
  let dataset: gdal.Dataset;
  try {
    dataset = gdal.open(path, 'r', ['GPKG']);
  } catch (error) {
    throw new Error(`cannot open map ${path} as a GeoPackage: ${(error as Error).message}`);
  }

  try {
    const projectedCrs = readProjectedCrs(dataset, path);
    let target: gdal.SpatialReference;
    try {
      target = gdal.SpatialReference.fromUserInput(projectedCrs);
    } catch {
      throw new Error(`map ${path}: meta.projectedCoordSystem '${projectedCrs}' is not a CRS GDAL knows; use an EPSG code such as 'epsg:32611'`);
    }

    const buffers = new GeometryBuffers();
    const tables = new Map<string, TableData>();
    const missingTables: string[] = [];
    const tableNames = Object.keys(MAP_TABLES);
    const present = new Set(dataset.layers.map((layer) => layer.name));
    tableNames.forEach((tableName, done) => {
      if (!present.has(tableName)) {
        missingTables.push(tableName);
        options.onWarning?.({ table: tableName, message: 'table is missing; requests that draw it are rejected' });
      } else {
        tables.set(tableName, readTable(dataset, tableName, MAP_TABLES[tableName], target, buffers, path, options));
      }
      options.onTable?.(tableName, done + 1, tableNames.length);
    });

    buffers.ringVertexStart.push(buffers.vertexCount);
    const ringVertexStart = Uint32Array.from(buffers.ringVertexStart);
    const ringHole = Uint8Array.from(buffers.ringHole);
    const layers = resolveSemanticLayers(tables, ringHole, ringVertexStart, options);
    const layerCounts: Record<string, number> = {};
    for (const [tableName, table] of tables) layerCounts[tableName] = table.count;

    return {
      name: options.name,
      version: options.version,
      path,
      projectedCrs,
      coords: buffers.coords.slice(0, 2 * buffers.vertexCount),
      ringVertexStart,
      tables,
      layers,
      missingTables,
      layerCounts,
      loadMs: performance.now() - started,
    };
  } finally {
    dataset.close();
  }
}
