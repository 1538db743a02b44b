import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import Flatbush from 'flatbush';

import { readMap, type ReadMapOptions } from './gpkg-reader.js';
import type { MapData, SemanticLayerData, TableData } from './map-data.js';
import type { MapSource } from './maps-root.js';
import type { PolygonLayerName } from './semantic-layers.js';

/**
 * An on-disk snapshot of a loaded map (flat arrays and flatbush indexes), so that a restart skips
 * GDAL parsing and reprojection. Snapshots are keyed by the SHA-256 of the map file's bytes, so an
 * edited map is never served from a stale snapshot.
 */

/** Bump when the snapshot layout or anything that shapes MapData changes. */
const SNAPSHOT_FORMAT = 1;
const MAGIC = 'RASTERD-MAP';

/** Options of a cached load. */
export interface LoadMapOptions extends ReadMapOptions {
  /** Folder for snapshots; no caching when undefined. */
  cacheDir?: string;
}

/** SHA-256 of a file's bytes, hex. */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

type ArrayKind = 'f64' | 'u32' | 'u8';
interface ArrayEntry { name: string; kind: ArrayKind; offset: number; length: number }

function kindOf(array: Float64Array | Uint32Array | Uint8Array): ArrayKind {
  if (array instanceof Float64Array) return 'f64';
  if (array instanceof Uint32Array) return 'u32';
  return 'u8';
}

/** Collects every typed array of a map under a stable name, for writing. */
function mapArrays(map: MapData): Map<string, Float64Array | Uint32Array | Uint8Array> {
  const arrays = new Map<string, Float64Array | Uint32Array | Uint8Array>();
  arrays.set('coords', map.coords);
  arrays.set('ringVertexStart', map.ringVertexStart);
  for (const [name, table] of map.tables) {
    arrays.set(`table/${name}/fids`, table.fids);
    arrays.set(`table/${name}/featureRingStart`, table.featureRingStart);
    arrays.set(`table/${name}/bbox`, table.bbox);
    arrays.set(`table/${name}/indexFeatures`, table.indexFeatures);
    for (const [column, values] of Object.entries(table.columns)) arrays.set(`table/${name}/column/${column}`, values);
    if (table.index) arrays.set(`table/${name}/index`, new Uint8Array(table.index.data));
  }
  for (const [name, layer] of map.layers) {
    arrays.set(`layer/${name}/drawStart`, layer.drawStart);
    arrays.set(`layer/${name}/drawRanges`, layer.drawRanges);
    if (layer.baselineRanges) arrays.set(`layer/${name}/baselineRanges`, layer.baselineRanges);
  }
  return arrays;
}

/** Writes a snapshot atomically (temporary file, then rename). */
export function writeSnapshot(path: string, map: MapData, sha256: string): void {
  const arrays = mapArrays(map);
  const entries: ArrayEntry[] = [];
  let offset = 0;
  for (const [name, array] of arrays) {
    offset = Math.ceil(offset / 8) * 8;
    entries.push({ name, kind: kindOf(array), offset, length: array.length });
    offset += array.byteLength;
  }

  const header = Buffer.from(JSON.stringify({
    magic: MAGIC, format: SNAPSHOT_FORMAT, sha256,
    name: map.name, version: map.version, projectedCrs: map.projectedCrs, missingTables: map.missingTables, layerCounts: map.layerCounts,
    tables: [...map.tables.values()].map((table) => ({ name: table.name, kind: table.kind, count: table.count, columns: Object.keys(table.columns) })),
    layers: [...map.layers.values()].map((layer) => ({ name: layer.name, select: layer.select.name })),
    entries,
  }));
  const headerBytes = Math.ceil((8 + header.length) / 8) * 8;
  const body = Buffer.alloc(headerBytes + offset);
  body.writeUInt32LE(header.length, 0);
  header.copy(body, 8);
  for (const entry of entries) {
    const array = arrays.get(entry.name)!;
    Buffer.from(array.buffer, array.byteOffset, array.byteLength).copy(body, headerBytes + entry.offset);
  }

  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, body);
  renameSync(temporary, path);
}

/**
 * Reads a snapshot written by writeSnapshot.
 * @returns the map, or null when the file is not a snapshot of this format and hash
 */
export function readSnapshot(path: string, sha256: string, source: MapSource): MapData | null {
  const started = performance.now();
  const file = readFileSync(path);
  if (file.length < 8) return null;
  const headerLength = file.readUInt32LE(0);
  let header;
  try {
    header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8'));
  } catch {
    return null;
  }
  if (header.magic !== MAGIC || header.format !== SNAPSHOT_FORMAT || header.sha256 !== sha256) return null;

  // One aligned copy of the body; every typed array is a view of it.
  const headerBytes = Math.ceil((8 + headerLength) / 8) * 8;
  const body = new ArrayBuffer(file.length - headerBytes);
  new Uint8Array(body).set(file.subarray(headerBytes));
  const arrays = new Map<string, Float64Array | Uint32Array | Uint8Array>();
  for (const entry of header.entries as ArrayEntry[]) {
    const view = entry.kind === 'f64' ? new Float64Array(body, entry.offset, entry.length)
      : entry.kind === 'u32' ? new Uint32Array(body, entry.offset, entry.length)
        : new Uint8Array(body, entry.offset, entry.length);
    arrays.set(entry.name, view);
  }

  const tables = new Map<string, TableData>();
  for (const table of header.tables as Array<{ name: string; kind: 'polygon' | 'line'; count: number; columns: string[] }>) {
    const prefix = `table/${table.name}`;
    const indexBytes = arrays.get(`${prefix}/index`) as Uint8Array | undefined;
    let index: Flatbush | null = null;
    if (indexBytes) {
      const copy = indexBytes.buffer.slice(indexBytes.byteOffset, indexBytes.byteOffset + indexBytes.byteLength);
      index = Flatbush.from(copy);
    }
    tables.set(table.name, {
      name: table.name, kind: table.kind, count: table.count,
      fids: arrays.get(`${prefix}/fids`) as Float64Array,
      featureRingStart: arrays.get(`${prefix}/featureRingStart`) as Uint32Array,
      bbox: arrays.get(`${prefix}/bbox`) as Float64Array,
      indexFeatures: arrays.get(`${prefix}/indexFeatures`) as Uint32Array,
      columns: Object.fromEntries(table.columns.map((column) => [column, arrays.get(`${prefix}/column/${column}`) as Float64Array])),
      index,
    });
  }

  const layers = new Map<PolygonLayerName, SemanticLayerData>();
  for (const layer of header.layers as Array<{ name: PolygonLayerName; select: string }>) {
    const prefix = `layer/${layer.name}`;
    layers.set(layer.name, {
      name: layer.name,
      select: tables.get(layer.select)!,
      drawStart: arrays.get(`${prefix}/drawStart`) as Uint32Array,
      drawRanges: arrays.get(`${prefix}/drawRanges`) as Uint32Array,
      baselineRanges: (arrays.get(`${prefix}/baselineRanges`) as Uint32Array | undefined) ?? null,
    });
  }

  return {
    name: source.name, version: source.version, path: source.path, projectedCrs: header.projectedCrs,
    coords: arrays.get('coords') as Float64Array,
    ringVertexStart: arrays.get('ringVertexStart') as Uint32Array,
    tables, layers, missingTables: header.missingTables, layerCounts: header.layerCounts,
    loadMs: performance.now() - started,
  };
}

/**
 * Loads a map, from its snapshot in `cacheDir` when one matches the file's hash, else with GDAL
 * (then writes the snapshot). A snapshot that cannot be written is reported and skipped.
 */
export async function loadMap(source: MapSource, options: LoadMapOptions): Promise<{ map: MapData; fromCache: boolean; sha256?: string }> {
  if (!options.cacheDir || !existsSync(source.path)) return { map: readMap(source.path, options), fromCache: false };

  const started = performance.now();
  const sha256 = await fileSha256(source.path);
  const snapshotPath = join(options.cacheDir, `map-${sha256}.bin`);
  if (existsSync(snapshotPath)) {
    const map = readSnapshot(snapshotPath, sha256, source);
    if (map) {
      map.loadMs = performance.now() - started;
      map.sha256 = sha256;
      return { map, fromCache: true, sha256 };
    }
  }

  const map = readMap(source.path, options);
  try {
    mkdirSync(options.cacheDir, { recursive: true });
    writeSnapshot(snapshotPath, map, sha256);
  } catch (error) {
    options.onWarning?.({ table: '', message: `map snapshot not written to ${snapshotPath}: ${(error as Error).message}` });
  }
  map.loadMs = performance.now() - started;
  map.sha256 = sha256;
  return { map, fromCache: false, sha256 };
}
