/**
 * The on-disk cache of roadmap tiles: one GeoTIFF per stored tile (uint8 feature indices,
 * georeferenced in the map's projected CRS) and an index.json, under
 * `<cacheDir>/tiles/<map sha256>/<config key>/`. The index is written last, so a folder with an
 * index contains a complete tile set.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { fromArrayBuffer, writeArrayBuffer, type GeoTIFFImage } from 'geotiff';

import type { TileGrid, TileSetData } from './roadmap-tiles.js';
import type { MapFeature } from './settings.js';

/** Bump when the tile layout, the drawing or the file format changes; it is part of the config key. */
export const TILE_FORMAT = 1;
const INDEX_FILE = 'index.json';
/** GeoTIFF's code for a user-defined projected CRS, written when map.projectedCrs is not 'epsg:<code>'. */
const USER_DEFINED_CRS = 32767;

/** Inputs of a tile set. A cached set is used only when all of them match. */
export interface TileSetKey {
  mapSha256: string;
  features: MapFeature[];
  /** [m/px] */
  resolution: number;
  /** [px] */
  tileSize: number;
}

/** Map facts recorded with a written tile set. */
export interface TileSetMeta {
  mapSha256: string;
  mapName: string;
  projectedCrs: string;
}

/** Contents of index.json. */
interface TileIndex {
  format: number;
  mapSha256: string;
  mapName: string;
  projectedCrs: string;
  /** EPSG code written as ProjectedCSTypeGeoKey, or 32767 (user-defined). */
  epsg: number;
  features: MapFeature[];
  resolution: number;
  tileSize: number;
  firstColumn: number;
  firstRow: number;
  columns: number;
  rows: number;
  /** Stored tiles by grid tile column and row (not offsets from the first ones); the others are empty. */
  tiles: Array<{ column: number; row: number; file: string }>;
}

/** Hex key of a roadmap configuration: SHA-256 of the features (layers and colours, in order), resolution, tile size and TILE_FORMAT, first 16 digits. */
export function tileConfigKey(features: MapFeature[], resolution: number, tileSize: number): string {
  const config = JSON.stringify({ format: TILE_FORMAT, features: features.map((feature) => [feature.layer, feature.color]), resolution, tileSize });
  return createHash('sha256').update(config).digest('hex').slice(0, 16);
}

/** Returns the folder of one tile set. */
export function tileSetDir(cacheDir: string, mapSha256: string, configKey: string): string {
  return join(cacheDir, 'tiles', mapSha256, configKey);
}

/** Parses the EPSG code of a CRS written as 'epsg:32611' (any case); returns null for other forms. */
export function epsgCode(projectedCrs: string): number | null {
  const match = /^epsg:(\d+)$/i.exec(projectedCrs.trim());
  return match ? Number(match[1]) : null;
}

/** Top-left corner of a grid tile [m]: tile column c starts at x = c * tileSize * resolution, tile row r at y = -r * tileSize * resolution. */
function tileOrigin(grid: TileGrid, column: number, row: number): [number, number] {
  const edge = grid.tileSize * grid.resolution;
  return [column * edge, -row * edge];
}

async function writeAtomically(path: string, data: Uint8Array | string): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, data);
  await rename(temporary, path);
}

/**
 * Encodes one tile as a GeoTIFF: 8-bit unsigned, one band, one uncompressed strip, pixel-is-area,
 * tie point at the tile's top-left corner, in the map's projected CRS.
 *
 * NOTE: geotiff 3.0.5 encodes a typed array one value at a time with three allocations per value
 * (1.3 s for 1024 x 1024 px). A plain number array takes its one-byte-per-value path (about 20 ms)
 * but reserves 8 bytes per value, so everything after the strip is cut off here.
 * @param values reused number array of tileSize^2 entries
 */
async function encodeTile(tile: Uint8Array, values: number[], grid: TileGrid, column: number, row: number, projectedCrs: string): Promise<Uint8Array> {
  for (let i = 0; i < tile.length; i++) values[i] = tile[i];
  const [x, y] = tileOrigin(grid, column, row);
  const encoded = writeArrayBuffer(values, {
    width: grid.tileSize,
    height: grid.tileSize,
    BitsPerSample: [8],
    SampleFormat: [1],
    StripByteCounts: [tile.length],
    ModelPixelScale: [grid.resolution, grid.resolution, 0],
    ModelTiepoint: [0, 0, 0, x, y, 0],
    GTModelTypeGeoKey: 1,
    GTRasterTypeGeoKey: 1,
    ProjectedCSTypeGeoKey: epsgCode(projectedCrs) ?? USER_DEFINED_CRS,
    GTCitationGeoKey: projectedCrs,
  });

  const stripOffset = await singleStripOffset(await (await fromArrayBuffer(encoded)).getImage());
  if (stripOffset + tile.length > encoded.byteLength) {
    throw new Error(`geotiff wrote a strip at byte ${stripOffset} that does not fit in its ${encoded.byteLength}-byte output`);
  }
  return new Uint8Array(encoded, 0, stripOffset + tile.length);
}

/**
 * Writes a tile set to `dir`: each stored tile as `tile_<column>_<row>.tif` (grid tile indices),
 * then index.json. Every file is written to a temporary name and renamed, and any old index is
 * removed first, so readers see either no index or a complete set.
 */
export async function writeTileSet(dir: string, data: TileSetData, meta: TileSetMeta): Promise<void> {
  await mkdir(dir, { recursive: true });
  await rm(join(dir, INDEX_FILE), { force: true });

  const { grid } = data;
  const values = new Array<number>(grid.tileSize * grid.tileSize).fill(0);
  const written: TileIndex['tiles'] = [];
  for (let r = 0; r < grid.rows; r++) {
    for (let c = 0; c < grid.columns; c++) {
      const tile = data.tiles[r * grid.columns + c];
      if (tile === null) continue;
      const column = grid.firstColumn + c;
      const row = grid.firstRow + r;
      const file = `tile_${column}_${row}.tif`;
      await writeAtomically(join(dir, file), await encodeTile(tile, values, grid, column, row, meta.projectedCrs));
      written.push({ column, row, file });
    }
  }

  const index: TileIndex = {
    format: TILE_FORMAT,
    mapSha256: meta.mapSha256,
    mapName: meta.mapName,
    projectedCrs: meta.projectedCrs,
    epsg: epsgCode(meta.projectedCrs) ?? USER_DEFINED_CRS,
    features: data.features.map((feature) => ({ layer: feature.layer, color: feature.color })),
    resolution: grid.resolution,
    tileSize: grid.tileSize,
    firstColumn: grid.firstColumn,
    firstRow: grid.firstRow,
    columns: grid.columns,
    rows: grid.rows,
    tiles: written,
  };
  await writeAtomically(join(dir, INDEX_FILE), `${JSON.stringify(index, null, 1)}\n`);
}

/** A tile set read from disk, or why none was: 'missing' when the folder has no index. */
export type TileSetReadResult = { data: TileSetData; reason?: undefined } | { data: null; reason: string };

/**
 * Reads the tile set in `dir` when its index matches `key`.
 * @returns the tiles, or null with the reason: 'missing', a mismatch or an invalid file
 */
export async function readTileSet(dir: string, key: TileSetKey): Promise<TileSetReadResult> {
  let index: TileIndex;
  try {
    index = JSON.parse(await readFile(join(dir, INDEX_FILE), 'utf8')) as TileIndex;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { data: null, reason: 'missing' };
    return { data: null, reason: `${INDEX_FILE} is not readable JSON: ${(error as Error).message}` };
  }

  const mismatch = compareIndex(index, key);
  if (mismatch) return { data: null, reason: `${INDEX_FILE} does not match: ${mismatch}` };

  const grid: TileGrid = {
    resolution: index.resolution, tileSize: index.tileSize,
    firstColumn: index.firstColumn, firstRow: index.firstRow, columns: index.columns, rows: index.rows,
  };
  const tiles: Array<Uint8Array | null> = new Array(grid.columns * grid.rows).fill(null);
  for (const entry of index.tiles) {
    const c = entry.column - grid.firstColumn;
    const r = entry.row - grid.firstRow;
    if (!(Number.isInteger(c) && Number.isInteger(r) && c >= 0 && c < grid.columns && r >= 0 && r < grid.rows)) {
      return { data: null, reason: `${INDEX_FILE} lists tile (${entry.column}, ${entry.row}) outside its grid` };
    }
    try {
      tiles[r * grid.columns + c] = await readTile(join(dir, entry.file), grid, entry.column, entry.row, index.epsg);
    } catch (error) {
      return { data: null, reason: `${entry.file}: ${(error as Error).message}` };
    }
  }
  return { data: { features: index.features, grid, tiles } };
}

/** Names the first field of `index` that differs from `key`, or returns null when all match. */
function compareIndex(index: TileIndex, key: TileSetKey): string | null {
  if (index.format !== TILE_FORMAT) return `format ${index.format}, expected ${TILE_FORMAT}`;
  if (index.mapSha256 !== key.mapSha256) return `map sha256 ${index.mapSha256}, expected ${key.mapSha256}`;
  if (index.resolution !== key.resolution) return `resolution ${index.resolution} m/px, expected ${key.resolution}`;
  if (index.tileSize !== key.tileSize) return `tile size ${index.tileSize} px, expected ${key.tileSize}`;
  const stored = JSON.stringify(index.features?.map((feature) => [feature.layer, feature.color]));
  const expected = JSON.stringify(key.features.map((feature) => [feature.layer, feature.color]));
  if (stored !== expected) return `map features ${stored}, expected ${expected}`;
  for (const field of ['firstColumn', 'firstRow', 'columns', 'rows'] as const) {
    if (!Number.isInteger(index[field])) return `${field} ${index[field]} is not an integer`;
  }
  if (!Array.isArray(index.tiles)) return 'no tile list';
  return null;
}

/**
 * Reads one tile written by writeTileSet and checks its layout and georeferencing.
 *
 * NOTE: geotiff's readRasters took 40 to 150 ms per 1024 x 1024 uint8 tile (Node 20, one core),
 * so the pixels are copied straight from the one uncompressed strip that this layout has. A file of
 * another layout is rejected, and the caller rebuilds the set.
 * @throws Error naming what does not match
 */
async function readTile(path: string, grid: TileGrid, column: number, row: number, epsg: number): Promise<Uint8Array> {
  const file = await readFile(path);
  const buffer = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength);
  const image = await (await fromArrayBuffer(buffer)).getImage();
  await checkLayout(image, grid.tileSize);

  const [x, y] = tileOrigin(grid, column, row);
  const origin = image.getOrigin();
  const scale = image.getResolution();
  if (origin[0] !== x || origin[1] !== y) throw new Error(`origin (${origin[0]}, ${origin[1]}) m, expected (${x}, ${y})`);
  if (scale[0] !== grid.resolution || scale[1] !== -grid.resolution) {
    throw new Error(`pixel scale (${scale[0]}, ${scale[1]}) m, expected (${grid.resolution}, ${-grid.resolution})`);
  }
  const crs = image.getGeoKeys()?.ProjectedCSTypeGeoKey;
  if (crs !== epsg) throw new Error(`ProjectedCSTypeGeoKey ${crs}, expected ${epsg}`);

  const offset = await singleStripOffset(image);
  const pixels = grid.tileSize * grid.tileSize;
  if (offset + pixels > buffer.byteLength) throw new Error(`strip at byte ${offset} runs past the end of the ${buffer.byteLength}-byte file`);
  return new Uint8Array(buffer, offset, pixels);
}

/**
 * Returns the byte offset of an image's pixel data.
 * @throws Error when the image is not stored as exactly one strip
 */
async function singleStripOffset(image: GeoTIFFImage): Promise<number> {
  const offsets = (await image.getFileDirectory().loadValue('StripOffsets')) as ArrayLike<number> | undefined;
  if (offsets?.length !== 1) throw new Error(`${offsets?.length ?? 0} strips, expected 1`);
  return Number(offsets[0]);
}

/** Checks that a GeoTIFF image is one uncompressed strip of tileSize x tileSize unsigned 8-bit samples. */
async function checkLayout(image: GeoTIFFImage, tileSize: number): Promise<void> {
  const directory = image.getFileDirectory();
  const size = `${image.getWidth()} x ${image.getHeight()}`;
  if (image.getWidth() !== tileSize || image.getHeight() !== tileSize) throw new Error(`${size} px, expected ${tileSize} x ${tileSize}`);
  if (image.getSamplesPerPixel() !== 1) throw new Error(`${image.getSamplesPerPixel()} samples per pixel, expected 1`);

  const bits = (await directory.loadValue('BitsPerSample')) as ArrayLike<number> | undefined;
  const format = (await directory.loadValue('SampleFormat')) as ArrayLike<number> | undefined;
  const compression = (await directory.loadValue('Compression')) as number | undefined;
  const offsets = (await directory.loadValue('StripOffsets')) as ArrayLike<number> | undefined;
  const counts = (await directory.loadValue('StripByteCounts')) as ArrayLike<number> | undefined;
  if (bits?.[0] !== 8 || (format !== undefined && format[0] !== 1)) throw new Error(`samples are not unsigned 8-bit (BitsPerSample ${bits?.[0]}, SampleFormat ${format?.[0]})`);
  if (compression !== undefined && compression !== 1) throw new Error(`compression ${compression}, expected 1 (none)`);
  if (offsets?.length !== 1 || counts?.[0] !== tileSize * tileSize) {
    throw new Error(`${offsets?.length} strips of ${counts?.[0]} bytes, expected one strip of ${tileSize * tileSize}`);
  }
}
