import Flatbush from 'flatbush';
import gdal from 'gdal-async';

import type { MapData, SemanticLayerData, TableData } from './map-data.js';
import { checkSqliteFile, readGeometryColumns, type GeometryColumn } from './gpkg-file.js';
import { BASELINE_TABLE, JOIN_COLUMNS, MAP_TABLES, POLYGON_LAYERS, REQUIRED_TABLES, SEMANTIC_LAYER_SOURCES } from './semantic-layers.js';
import { readWkb } from './wkb.js';

/** Something worth telling the operator about a map that still loads. */
export interface MapLoadWarning {
  table: string;
  /** Feature ids concerned, at most MAX_LISTED_FIDS of them; `count` has the full number. */
  fids?: number[];
  count?: number;
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

/** Feature ids listed in one warning; the message gives the full count. */
const MAX_LISTED_FIDS = 20;

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

  /** Returns the current sizes, for `truncate`. */
  mark(): { rings: number; vertices: number } {
    return { rings: this.ringVertexStart.length, vertices: this.vertexCount };
  }

  /** Drops everything appended since `mark` was taken. */
  truncate(mark: { rings: number; vertices: number }): void {
    this.ringVertexStart.length = mark.rings;
    this.ringHole.length = mark.rings;
    this.vertexCount = mark.vertices;
  }

  /** Returns whether every vertex appended since `mark` is finite. */
  finiteSince(mark: { rings: number; vertices: number }): boolean {
    for (let k = 2 * mark.vertices; k < 2 * this.vertexCount; k++) {
      if (!Number.isFinite(this.coords[k])) return false;
    }
    return true;
  }
}

/** Inputs of one table read, besides the table. */
interface TableContext {
  dataset: gdal.Dataset;
  path: string;
  target: gdal.SpatialReference;
  geometryColumns: Map<string, GeometryColumn>;
  buffers: GeometryBuffers;
  options: ReadMapOptions;
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

/**
 * Picks the coordinate transformation from a table's stored CRS to the map's projected CRS, from
 * the table's gpkg_geometry_columns.srs_id.
 * @returns null when the table is stored in the projected CRS already
 * @throws Error naming the file and table for srs_id -1 (undefined Cartesian) and for a CRS that
 *   cannot be transformed
 */
function transformFor(layer: gdal.Layer, column: GeometryColumn, context: TableContext): gdal.CoordinateTransformation | null {
  const { path, target } = context;
  if (column.srsId === -1) {
    throw new Error(
      `map ${path}: table ${layer.name} has srs_id -1 (undefined Cartesian CRS), so its coordinates cannot be placed in ${target.getAuthorityName() ?? ''}:${target.getAuthorityCode() ?? ''}; ` +
        `assign its real CRS, e.g. ogr2ogr -a_srs EPSG:4326`,
    );
  }
  if (column.srsId === 0) {
    // Undefined geographic: read as WGS 84 longitude, latitude, which nuPlan's maps store; readFeatures
    // rejects the table when a coordinate falls outside those ranges.
    context.options.onWarning?.({ table: layer.name, message: `table has srs_id 0 (undefined geographic CRS); its coordinates are read as WGS 84 longitude, latitude` });
    return new gdal.CoordinateTransformation(gdal.SpatialReference.fromUserInput('OGC:CRS84'), target);
  }

  const source = layer.srs;
  if (source === null) throw new Error(`map ${path}: table ${layer.name} has srs_id ${column.srsId}, which is not in gpkg_spatial_ref_sys; add the CRS or assign one with ogr2ogr -a_srs`);
  if (source.isSame(target)) return null;
  try {
    return new gdal.CoordinateTransformation(source, target);
  } catch (error) {
    throw new Error(`map ${path}: cannot transform table ${layer.name} to ${target.toProj4()}: ${(error as Error).message}`);
  }
}

/** Geometry names each table kind draws, plain and multi-part. */
const ACCEPTED_GEOMETRIES = {
  polygon: { single: 'POLYGON', multi: 'MULTIPOLYGON' },
  line: { single: 'LINESTRING', multi: 'MULTILINESTRING' },
} as const;

/** Reason a feature's geometry was skipped or changed. Each kind becomes one warning per table. */
type FeatureIssue = 'empty' | 'multipart' | 'wrongType' | 'unreadable' | 'transformFailed' | 'nonFinite' | 'curve';

/** The rows of one table pass, before indexing. */
interface FeatureRows {
  fids: number[];
  featureRingStart: number[];
  columnValues: Record<string, number[]>;
  issues: Map<FeatureIssue, number[]>;
}

function isUnsupportedType(error: unknown): boolean {
  return /unsupported geometry type/i.test((error as Error)?.message ?? '');
}

/**
 * Reads every feature of `layer` into the buffers. A feature whose geometry cannot be drawn keeps
 * its row with no rings, so it is never selected, and is listed under its issue.
 * @param curvesLinearized true on the second pass over a linearized copy, where an unsupported
 *   type is no longer a curve
 */
function readFeatures(
  layer: gdal.Layer, tableName: string, kind: 'polygon' | 'line', transform: gdal.CoordinateTransformation | null,
  context: TableContext, undefinedGeographic: boolean, curvesLinearized: boolean,
): FeatureRows {
  const { buffers, path } = context;
  const joinColumns = JOIN_COLUMNS[tableName] ?? [];
  const rows: FeatureRows = {
    fids: [], featureRingStart: [], columnValues: Object.fromEntries(joinColumns.map((column) => [column, []])), issues: new Map(),
  };
  const note = (issue: FeatureIssue, fid: number): void => {
    const list = rows.issues.get(issue);
    if (list) list.push(fid);
    else rows.issues.set(issue, [fid]);
  };
  const accepted = ACCEPTED_GEOMETRIES[kind];

  layer.features.forEach((feature) => {
    const fid = feature.fid;
    rows.fids.push(fid);
    rows.featureRingStart.push(buffers.ringVertexStart.length);
    for (const column of joinColumns) {
      const value = feature.fields.get(column) as number | null | undefined;
      rows.columnValues[column].push(value === null || value === undefined ? NaN : Number(value));
    }

    let geometry: gdal.Geometry | null;
    try {
      geometry = feature.getGeometry();
    } catch (error) {
      // gdal-async wraps no curve type (CircularString, CompoundCurve, CurvePolygon, MultiCurve, MultiSurface).
      note(isUnsupportedType(error) && !curvesLinearized ? 'curve' : 'unreadable', fid);
      return;
    }
    if (geometry === null || geometry.isEmpty()) {
      note('empty', fid);
      return;
    }
    const name = geometry.name.toUpperCase();
    if (name !== accepted.single && name !== accepted.multi) {
      note('wrongType', fid);
      return;
    }
    if (name === accepted.multi) note('multipart', fid);

    if (undefinedGeographic) {
      const envelope = geometry.getEnvelope();
      if (envelope.minX < -180 || envelope.maxX > 180 || envelope.minY < -90 || envelope.maxY > 90) {
        throw new Error(
          `map ${path}: table ${tableName} has srs_id 0 (undefined geographic CRS) and fid ${fid} lies outside longitude, latitude ranges ` +
            `(x ${envelope.minX}..${envelope.maxX}, y ${envelope.minY}..${envelope.maxY}); assign the table's real CRS with ogr2ogr -a_srs`,
        );
      }
    }
    if (transform !== null) {
      try {
        geometry.transform(transform);
      } catch {
        note(hasNonFiniteVertex(feature) ? 'nonFinite' : 'transformFailed', fid);
        return;
      }
    }

    const mark = buffers.mark();
    try {
      readWkb(geometry.toWKB(gdal.wkbNDR), 0, buffers);
    } catch {
      buffers.truncate(mark);
      note('unreadable', fid);
      return;
    }
    if (!buffers.finiteSince(mark)) {
      buffers.truncate(mark);
      note('nonFinite', fid);
    }
  });
  return rows;
}

/** Returns whether the stored geometry of `feature` has a NaN or infinite ordinate, which makes PROJ fail. */
function hasNonFiniteVertex(feature: gdal.Feature): boolean {
  let nonFinite = false;
  try {
    const stored = feature.getGeometry();
    if (stored === null) return false;
    readWkb(stored.toWKB(gdal.wkbNDR), 0, {
      addVertex: (x, y) => {
        if (!Number.isFinite(x) || !Number.isFinite(y)) nonFinite = true;
      },
      startRing: () => {},
    });
  } catch {
    return false;
  }
  return nonFinite;
}

/** What each feature issue means for the raster, completing "N features ... (fids ...)". */
const ISSUE_MESSAGES: Record<FeatureIssue, string> = {
  empty: 'have a null or empty geometry; they are never selected or drawn',
  multipart: 'have a multi-part geometry; every part is selected and drawn (nuPlan reads one polygon or line per feature)',
  wrongType: 'have a geometry type this table does not draw; they are skipped',
  unreadable: 'have a geometry GDAL cannot read; they are skipped',
  transformFailed: 'have coordinates that cannot be transformed to the projected CRS; they are skipped',
  nonFinite: 'have NaN or infinite coordinates; they are skipped',
  curve: 'have curve geometries; they are linearized by GDAL (ogr2ogr -nlt CONVERT_TO_LINEAR)',
};

function warnIssues(tableName: string, issues: Map<FeatureIssue, number[]>, options: ReadMapOptions): void {
  for (const [issue, fids] of issues) {
    const listed = fids.slice(0, MAX_LISTED_FIDS);
    const more = fids.length > listed.length ? `, and ${fids.length - listed.length} more` : '';
    options.onWarning?.({
      table: tableName, fids: listed, count: fids.length,
      message: `${fids.length} features ${ISSUE_MESSAGES[issue]} (fid ${listed.join(', ')}${more})`,
    });
  }
}

/** Copies one table into a GDAL Memory dataset with curves replaced by line segments and Z, M dropped. */
function linearizedCopy(dataset: gdal.Dataset, tableName: string): gdal.Dataset {
  return gdal.vectorTranslate(`linear-${tableName}`, dataset, ['-f', 'Memory', '-nlt', 'CONVERT_TO_LINEAR', '-dim', 'XY', '-preserve_fid', tableName]);
}

function readTable(context: TableContext, tableName: string, kind: 'polygon' | 'line'): TableData {
  const { dataset, path, buffers, options } = context;
  const layer = dataset.layers.get(tableName);
  const column = context.geometryColumns.get(tableName);
  if (!column) {
    throw new Error(`map ${path}: table ${tableName} has no geometry column in gpkg_geometry_columns; the map must store ${kind} geometry in it`);
  }
  const transform = transformFor(layer, column, context);
  const undefinedGeographic = column.srsId === 0;

  const start = buffers.mark();
  let rows = readFeatures(layer, tableName, kind, transform, context, undefinedGeographic, false);
  const curveFids = rows.issues.get('curve');
  if (curveFids) {
    // Read the whole table again from a linearized copy, so the features keep their order.
    buffers.truncate(start);
    const linear = linearizedCopy(dataset, tableName);
    try {
      rows = readFeatures(linear.layers.get(tableName), tableName, kind, transform, context, undefinedGeographic, true);
    } finally {
      linear.close();
    }
    rows.issues.set('curve', curveFids);
  }
  warnIssues(tableName, rows.issues, options);

  rows.featureRingStart.push(buffers.ringVertexStart.length);
  return finishTable(tableName, kind, rows.fids, rows.featureRingStart, rows.columnValues, buffers);
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

/** Formats up to MAX_LISTED_FIDS ids, with the count of the rest. */
function listFids(fids: number[]): string {
  const listed = fids.slice(0, MAX_LISTED_FIDS).join(', ');
  return fids.length > MAX_LISTED_FIDS ? `${listed}, and ${fids.length - MAX_LISTED_FIDS} more` : listed;
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
  const warn = (table: string, fids: number[], message: string): void => {
    options.onWarning?.({ table, fids: fids.slice(0, MAX_LISTED_FIDS), count: fids.length, message: `${message} (fid ${listFids(fids)})` });
  };

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
    const missingDraw: number[] = [], missingBaseline: number[] = [], duplicateBaseline: number[] = [];

    for (let feature = 0; feature < select.count; feature++) {
      drawStart[feature] = drawRanges.length / 2;
      const fid = select.fids[feature];
      if (drawGroups) {
        const matches = drawGroups.get(fid);
        if (matches) pushExteriorRanges(draw, matches[0], ringHole, ringVertexStart, drawRanges);
        else missingDraw.push(fid);
      } else {
        pushExteriorRanges(draw, feature, ringHole, ringVertexStart, drawRanges);
      }

      if (baselineGroups && baselines && baselineRanges) {
        const matches = baselineGroups.get(fid);
        if (!matches) {
          missingBaseline.push(fid);
          continue;
        }
        if (matches.length > 1) duplicateBaseline.push(fid);
        const firstRing = baselines.featureRingStart[matches[0]];
        const endRing = baselines.featureRingStart[matches[0] + 1];
        if (endRing > firstRing) {
          baselineRanges[2 * feature] = ringVertexStart[firstRing];
          baselineRanges[2 * feature + 1] = ringVertexStart[firstRing + 1];
        }
      }
    }
    drawStart[select.count] = drawRanges.length / 2;

    if (missingDraw.length > 0) {
      warn(source.selectTable, missingDraw, `${missingDraw.length} ${name} objects have no ${source.drawTable} row with a matching ${source.drawJoinColumn}; they are selected but not drawn`);
    }
    if (missingBaseline.length > 0) {
      warn(source.selectTable, missingBaseline, `${missingBaseline.length} ${name} objects have no ${BASELINE_TABLE} row with a matching ${source.baselineJoinColumn}; no baseline path is drawn for them (nuPlan raises here)`);
    }
    if (duplicateBaseline.length > 0) {
      warn(source.selectTable, duplicateBaseline, `${duplicateBaseline.length} ${name} objects have several ${BASELINE_TABLE} rows with a matching ${source.baselineJoinColumn}; the one read first (lowest fid) is drawn (nuPlan raises here)`);
    }
    layers.set(name, { name, select, drawStart, drawRanges: Uint32Array.from(drawRanges), baselineRanges });
  }

  warnLaneFidMismatches(tables.get('lanes_polygons'), options);
  return layers;
}

/**
 * Warns about lanes whose lane_fid column differs from their feature id. nuPlan takes a lane's id
 * from the fid and joins baseline paths on it, and so does this reader.
 */
function warnLaneFidMismatches(lanes: TableData | undefined, options: ReadMapOptions): void {
  const laneFids = lanes?.columns.lane_fid;
  if (!lanes || !laneFids) return;
  const mismatches: string[] = [];
  const fids: number[] = [];
  for (let feature = 0; feature < lanes.count; feature++) {
    if (laneFids[feature] === lanes.fids[feature]) continue;
    fids.push(lanes.fids[feature]);
    if (mismatches.length < MAX_LISTED_FIDS) mismatches.push(`fid ${lanes.fids[feature]} has lane_fid ${Number.isNaN(laneFids[feature]) ? 'null' : laneFids[feature]}`);
  }
  if (fids.length === 0) return;
  const more = fids.length > mismatches.length ? `, and ${fids.length - mismatches.length} more` : '';
  options.onWarning?.({
    table: 'lanes_polygons', fids: fids.slice(0, MAX_LISTED_FIDS), count: fids.length,
    message: `${fids.length} lanes have a lane_fid other than their fid (${mismatches.join(', ')}${more}); lanes are identified and joined to baseline paths by fid, as nuPlan does`,
  });
}

/**
 * Reads a nuPlan GeoPackage map: every table the rasterizer uses, reprojected from its stored CRS
 * (EPSG:4326 in nuPlan's maps, longitude first) to the CRS named by meta.projectedCoordSystem, in
 * float64, with one bounding-box index per table. docs/maps.md lists how each kind of bad input is
 * handled: what is rejected, and what loads with a warning through `options.onWarning`.
 * @param path the map.gpkg file
 * @throws Error naming the file (and the table and feature id where one is at fault) when the map
 *   cannot be served
 */
export function readMap(path: string, options: ReadMapOptions): MapData {
  const started = performance.now();
  checkSqliteFile(path);
  let dataset: gdal.Dataset;
  try {
    dataset = gdal.open(path, 'r', ['GPKG']);
  } catch (error) {
    throw new Error(`cannot open map ${path} as a GeoPackage: ${(error as Error).message}`);
  }

  // SQL result layers stay referenced until the dataset is closed (see readGeometryColumns for the reason).
  const resultSets: gdal.Layer[] = [];
  try {
    const projectedCrs = readProjectedCrs(dataset, path);
    let target: gdal.SpatialReference;
    try {
      target = gdal.SpatialReference.fromUserInput(projectedCrs);
    } catch {
      throw new Error(`map ${path}: meta.projectedCoordSystem '${projectedCrs}' is not a CRS GDAL knows; use an EPSG code such as 'epsg:32611'`);
    }

    const present = new Set(dataset.layers.map((layer) => layer.name));
    const missingRequired = REQUIRED_TABLES.filter((table) => !present.has(table));
    if (missingRequired.length > 0) {
      throw new Error(
        `map ${path} lacks table(s) ${missingRequired.join(', ')}; every raster draws the baseline paths of lanes and lane connectors, which need ${REQUIRED_TABLES.join(', ')}`,
      );
    }

    const context: TableContext = {
      dataset, path, target, geometryColumns: readGeometryColumns(dataset, path, resultSets), buffers: new GeometryBuffers(), options,
    };
    const tables = new Map<string, TableData>();
    const missingTables: string[] = [];
    const tableNames = Object.keys(MAP_TABLES);
    tableNames.forEach((tableName, done) => {
      if (!present.has(tableName)) {
        missingTables.push(tableName);
        options.onWarning?.({ table: tableName, message: 'table is missing; requests that draw its layer are rejected with FAILED_PRECONDITION' });
      } else {
        try {
          tables.set(tableName, readTable(context, tableName, MAP_TABLES[tableName]));
        } catch (error) {
          const message = (error as Error).message;
          throw new Error(message.startsWith(`map ${path}`) ? message : `map ${path}: cannot read table ${tableName}: ${message}`);
        }
      }
      options.onTable?.(tableName, done + 1, tableNames.length);
    });

    const { buffers } = context;
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
    resultSets.length = 0;
  }
}
