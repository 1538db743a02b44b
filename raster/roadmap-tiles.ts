/**
 * The 'tiles' roadmap mode: the whole roadmap of a map is rasterized once into world-aligned,
 * north-up tiles, and each step samples those tiles in the ego frame. A step then costs the same
 * on a city-scale map as on a small one, but the pixels are not bit-identical to nuPlan's.
 */
import { existsSync } from 'node:fs';

import type { Logger } from 'pino';

import { fileSha256 } from '../maps/map-cache.js';
import type { MapData } from '../maps/map-data.js';
import { MapLayerUnavailableError } from './map-query.js';
import { native } from './native.js';
import { readTileSet, tileConfigKey, tileSetDir, writeTileSet } from './roadmap-tile-store.js';
import type { MapFeature, RasterSettings } from './settings.js';

/** Default tile edge [px]. */
export const DEFAULT_TILE_SIZE = 1024;
/** Largest accepted tile edge [px]; the float32 scratch image of one tile is tileSize^2 * 4 bytes. */
export const MAX_TILE_SIZE = 4096;
/** Largest accepted grid (tiles * tileSize^2) [px], so that a tiny resolution cannot ask for terabytes. */
export const MAX_GRID_PIXELS = 2 ** 32;
/** Feature indices are stored as uint8, and 0 means "no feature". */
export const MAX_TILE_FEATURES = 255;

/** Fractional bits of the vertices passed to fillPoly, lowered per polygon when its coordinates would overflow int32. */
const FILL_SHIFT = 12;

/**
 * The tile grid, anchored at the origin of the map's projected CRS. Global pixel column
 * gx = floor(x / resolution) and row gy = floor(-y / resolution), so rows grow southward (north-up).
 * Tile (column c, row r) contains gx in [c * tileSize, (c + 1) * tileSize) and gy in
 * [r * tileSize, (r + 1) * tileSize).
 */
export interface TileGrid {
  /** [m/px] edge of one pixel. */
  resolution: number;
  /** [px] edge of one tile. */
  tileSize: number;
  /** Tile column of the grid's westernmost tiles. */
  firstColumn: number;
  /** Tile row of the grid's northernmost tiles (negative north of the CRS origin). */
  firstRow: number;
  /** Number of tile columns. */
  columns: number;
  /** Number of tile rows. */
  rows: number;
}

/** Build options of a tile set. */
export interface RoadmapTilesOptions {
  /** [m/px] tile resolution; default: the settings' targetPixelSize. */
  resolution?: number;
  /** [px] tile edge; default 1024. */
  tileSize?: number;
}

/** Options of RoadmapTiles.load. */
export interface LoadRoadmapTilesOptions extends RoadmapTilesOptions {
  /** Folder of the on-disk tile cache (tiles are written under `<cacheDir>/tiles/`); no disk cache when undefined. */
  cacheDir?: string;
  logger?: Pick<Logger, 'info' | 'warn'>;
}

/** The parts of a tile set that the disk cache stores. */
export interface TileSetData {
  features: MapFeature[];
  grid: TileGrid;
  /** Feature index per pixel, row-major and north-up, per tile in grid order (row by row); null for a tile no polygon covers. */
  tiles: Array<Uint8Array | null>;
}

/** A map's roadmap rasterized into static tiles for one roadmap configuration. */
export class RoadmapTiles implements TileSetData {
  readonly features: MapFeature[];
  readonly grid: TileGrid;
  readonly tiles: Array<Uint8Array | null>;
  /** [ms] time spent building (or reading) the tiles. */
  buildMs = 0;
  /** Pixel value of each stored feature index under the settings of the latest sample call. */
  private readonly palette: Float32Array;
  /** `tiles` with every null replaced by `emptyTile`, so that sampling reads a tile without a null check. */
  private readonly lookup: Uint8Array[];
  private readonly emptyTile: Uint8Array;

  constructor(data: TileSetData) {
    this.features = data.features.map((feature) => ({ ...feature }));
    this.grid = { ...data.grid };
    this.tiles = data.tiles;
    this.palette = new Float32Array(MAX_TILE_FEATURES + 1);
    const pixels = this.grid.tileSize * this.grid.tileSize;
    if (this.tiles.length !== this.grid.columns * this.grid.rows) {
      throw new RangeError(`a tile set of ${this.grid.columns} x ${this.grid.rows} tiles needs ${this.grid.columns * this.grid.rows} entries; got ${this.tiles.length}`);
    }
    this.tiles.forEach((tile, t) => {
      if (tile !== null && tile.length !== pixels) throw new RangeError(`tile ${t} has ${tile.length} pixels; expected ${pixels}`);
    });
    this.emptyTile = new Uint8Array(pixels);
    this.lookup = this.tiles.map((tile) => tile ?? this.emptyTile);
  }

  /** Number of tiles that contain at least one drawn pixel. */
  get storedTileCount(): number {
    return this.tiles.reduce((count, tile) => count + (tile ? 1 : 0), 0);
  }

  /** Bytes of tile pixels in memory. */
  get byteLength(): number {
    return this.tiles.reduce((bytes, tile) => bytes + (tile ? tile.byteLength : 0), 0);
  }

  /** Returns true when `settings` draws the tiles' layers in the same order, so that `sample` accepts it. Colours may differ. */
  matches(settings: RasterSettings): boolean {
    return sameLayers(settings.mapFeatures, this.features);
  }

  /**
   * Rasterizes the roadmap of `map` for `settings.mapFeatures` into tiles, without the disk cache.
   * Polygons are drawn like the exact roadmap: features in config order, polygons in feature-id
   * order, later ones overwriting earlier ones, with OpenCV's fillPoly.
   * @throws MapLayerUnavailableError when the map lacks a configured layer
   * @throws RangeError for an invalid resolution, tile size or feature count
   */
  static build(map: MapData, settings: RasterSettings, options: RoadmapTilesOptions = {}): RoadmapTiles {
    const started = performance.now();
    const features = settings.mapFeatures.map((feature) => ({ ...feature }));
    const { resolution, tileSize } = resolveOptions(settings, options);
    const rings = collectRings(map, features);
    const grid = gridFor(rings.bounds, resolution, tileSize);
    const tiles = drawTiles(map.coords, rings, grid);
    const result = new RoadmapTiles({ features, grid, tiles });
    result.buildMs = performance.now() - started;
    return result;
  }

  /**
   * Returns the tiles of `map` for `settings`, read from `<cacheDir>/tiles/<map sha256>/<config key>/`
   * when a complete, matching set is there, else built (and then written there).
   *
   * A map loaded without a snapshot has no sha256, so its file is hashed here. When there is no
   * cacheDir, or the map's file does not exist, the tiles are built and nothing is written. A tile
   * set that cannot be read or written is logged as a warning and rebuilt or kept in memory only.
   */
  static async load(map: MapData, settings: RasterSettings, options: LoadRoadmapTilesOptions): Promise<{ tiles: RoadmapTiles; fromCache: boolean }> {
    const started = performance.now();
    const { cacheDir, logger } = options;
    const { resolution, tileSize } = resolveOptions(settings, options);
    const ids = { map: map.name, path: map.path, resolution, tileSize };
    if (!cacheDir) return { tiles: RoadmapTiles.build(map, settings, options), fromCache: false };

    let sha256 = map.sha256;
    if (sha256 === undefined) {
      if (!existsSync(map.path)) {
        logger?.warn(ids, `roadmap tiles of map ${map.name} are not cached on disk: its file ${map.path} does not exist, so it cannot be hashed`);
        return { tiles: RoadmapTiles.build(map, settings, options), fromCache: false };
      }
      sha256 = await fileSha256(map.path);
    }

    const key = tileConfigKey(settings.mapFeatures, resolution, tileSize);
    const dir = tileSetDir(cacheDir, sha256, key);
    const read = await readTileSet(dir, { mapSha256: sha256, features: settings.mapFeatures, resolution, tileSize });
    if (read.data) {
      const tiles = new RoadmapTiles(read.data);
      tiles.buildMs = performance.now() - started;
      logger?.info({ ...ids, dir, tiles: tiles.storedTileCount, ms: Math.round(tiles.buildMs) }, `roadmap tiles of map ${map.name} read from ${dir}`);
      return { tiles, fromCache: true };
    }
    if (read.reason !== 'missing') logger?.warn({ ...ids, dir, reason: read.reason }, `roadmap tiles of map ${map.name} in ${dir} are rebuilt: ${read.reason}`);

    const tiles = RoadmapTiles.build(map, settings, options);
    try {
      await writeTileSet(dir, tiles, { mapSha256: sha256, mapName: map.name, projectedCrs: map.projectedCrs });
      logger?.info({ ...ids, dir, tiles: tiles.storedTileCount, buildMs: Math.round(tiles.buildMs) }, `roadmap tiles of map ${map.name} built in ${Math.round(tiles.buildMs)} ms and written to ${dir}`);
    } catch (error) {
      logger?.warn({ ...ids, dir, err: (error as Error).message }, `roadmap tiles of map ${map.name} not written to ${dir}: ${(error as Error).message}`);
    }
    return { tiles, fromCache: false };
  }

  /**
   * Fills channel `channel` of `out` (float32 [targetWidth, targetHeight, 4]) with the roadmap
   * sampled from the tiles, nearest neighbour, in the exact mode's pixel frame. That frame is centred
   * on the ego box centre, rotated by the heading and Rz(90 deg), and flipped upside down. Colours
   * come from `settings.mapFeatures`, whose layers must be the tiles' layers in the same order.
   * Every pixel of the channel is written, 0 where no feature is.
   * @param params the 13 scene parameters of sceneParams (raster size [px], pixel size [m], pose, ...)
   * @throws RangeError when `out` has the wrong length or `channel` is not 0..3
   * @throws Error when `settings` draws other layers than the tiles contain
   */
  sample(params: Float64Array, settings: RasterSettings, out: Float32Array, channel = 2): void {
    const rasterRows = params[0];
    const rasterCols = params[1];
    const pixelSize = params[2];
    if (out.length !== rasterRows * rasterCols * 4) {
      throw new RangeError(`out must have ${rasterRows} x ${rasterCols} x 4 = ${rasterRows * rasterCols * 4} floats; got ${out.length}`);
    }
    if (!(channel === 0 || channel === 1 || channel === 2 || channel === 3)) {
      throw new RangeError(`channel must be 0, 1, 2 or 3; got ${channel}`);
    }
    this.applyColors(settings);

    // The exact mode maps a world point to pixel index (radius + u) / pixelSize, where (u, v) is the
    // point in the ego-centre frame rotated by Rz(90 deg): u = -lateral, v = forward. Output row R
    // is row rasterRows - 1 - R before the flip. Inverting that for the pixel centre (C, R) gives
    // x = cx + cos(h) * v + sin(h) * u and y = cy + sin(h) * v - cos(h) * u with u = C * pixelSize - radius.
    const radius = queryRadiusOf(params);
    // NOTE: egoCenter returns a new 2-element Float64Array, the one allocation of a step.
    const center = native.egoCenter(params);
    const heading = params[10];
    const cosH = Math.cos(heading);
    const sinH = Math.sin(heading);
    const { resolution, tileSize, firstColumn, firstRow } = this.grid;
    // Grid pixel coordinates (x / resolution and -y / resolution, less the grid's first pixel) are
    // affine in the output column.
    const originX = firstColumn * tileSize;
    const originY = firstRow * tileSize;
    const stepX = (sinH * pixelSize) / resolution;
    const stepY = (cosH * pixelSize) / resolution;
    for (let outRow = 0; outRow < rasterRows; outRow++) {
      const v = (rasterRows - 1 - outRow) * pixelSize - radius;
      const rowX = (center[0] + cosH * v - sinH * radius) / resolution - originX;
      const rowY = -(center[1] + sinH * v + cosH * radius) / resolution - originY;
      this.sampleRow(rowX, rowY, stepX, stepY, rasterCols, out, outRow * rasterCols * 4 + channel);
    }
  }

  /**
   * Samples one output row whose pixel `col` lies at grid pixel coordinates
   * (rowX + col * stepX, rowY + col * stepY), writing every 4th value of `out` from `start`.
   * The row is cut into runs that stay in one tile, so the inner loop has no bounds checks.
   */
  private sampleRow(rowX: number, rowY: number, stepX: number, stepY: number, cols: number, out: Float32Array, start: number): void {
    const { tileSize, columns, rows } = this.grid;
    const gridWidth = columns * tileSize;
    const gridHeight = rows * tileSize;
    const palette = this.palette;

    let col = 0;
    while (col < cols) {
      const gx = rowX + col * stepX;
      const gy = rowY + col * stepY;
      if (!(gx >= 0 && gx < gridWidth && gy >= 0 && gy < gridHeight)) {
        out[start + 4 * col] = 0;
        col++;
        continue;
      }
      const tileColumn = Math.floor(gx / tileSize);
      const tileRow = Math.floor(gy / tileSize);
      const tile = this.lookup[tileRow * columns + tileColumn];
      const x0 = tileColumn * tileSize;
      const x1 = x0 + tileSize;
      const y0 = tileRow * tileSize;
      const y1 = y0 + tileSize;

      // Each coordinate is monotonic in col, so the pixels inside this tile form one run
      // [col, end). Estimate its end past the tile edge, then step back to the last pixel inside,
      // evaluated with the same expressions as the loop below.
      let end = cols;
      if (stepX > 0) end = Math.min(end, col + Math.ceil((x1 - gx) / stepX) + 1);
      else if (stepX < 0) end = Math.min(end, col + Math.ceil((x0 - gx) / stepX) + 1);
      if (stepY > 0) end = Math.min(end, col + Math.ceil((y1 - gy) / stepY) + 1);
      else if (stepY < 0) end = Math.min(end, col + Math.ceil((y0 - gy) / stepY) + 1);
      for (;;) {
        const lastX = rowX + (end - 1) * stepX;
        const lastY = rowY + (end - 1) * stepY;
        if (lastX >= x0 && lastX < x1 && lastY >= y0 && lastY < y1) break;
        end--;
      }

      // gx - x0 is exact (Sterbenz: x0 is 0, or gx < x0 + tileSize <= 2 * x0), so both offsets are in
      // [0, tileSize) and truncation is the floor.
      for (let index = start + 4 * col; col < end; col++, index += 4) {
        const localX = rowX + col * stepX - x0;
        const localY = rowY + col * stepY - y0;
        out[index] = palette[tile[(localY | 0) * tileSize + (localX | 0)]];
      }
    }
  }

  /** Loads the colours of `settings` into the palette, after checking that its layers are the tiles' layers. */
  private applyColors(settings: RasterSettings): void {
    if (!this.matches(settings)) {
      const requested = settings.mapFeatures.map((feature) => feature.layer).join(', ');
      const built = this.features.map((feature) => feature.layer).join(', ');
      throw new Error(`roadmap tiles contain layers [${built}] but the request draws [${requested}]; build tiles for these map_features or use roadmapMode 'exact'`);
    }
    const features = settings.mapFeatures;
    for (let k = 0; k < features.length; k++) this.palette[k + 1] = features[k].color;
  }
}

/** RasterFeatureBuilder's query radius [m] from the scene parameters, as computeRanges in scene_raster.hpp derives it. */
function queryRadiusOf(params: Float64Array): number {
  const xSize = (params[0] * params[2]) / 2.0;
  const xOffset = 2.0 * params[6] * xSize;
  return (xSize + xOffset - (-xSize + xOffset)) / 2;
}

/**
 * Applies the defaults and checks the build options.
 * @throws RangeError naming the invalid value
 */
export function resolveOptions(settings: RasterSettings, options: RoadmapTilesOptions): { resolution: number; tileSize: number } {
  const resolution = options.resolution ?? settings.targetPixelSize;
  const tileSize = options.tileSize ?? DEFAULT_TILE_SIZE;
  if (!(Number.isFinite(resolution) && resolution > 0)) {
    throw new RangeError(`tile resolution must be a positive number of metres per pixel; got ${resolution}`);
  }
  if (!Number.isInteger(tileSize) || tileSize < 1 || tileSize > MAX_TILE_SIZE) {
    throw new RangeError(`tile size must be an integer in 1..${MAX_TILE_SIZE} px; got ${tileSize}`);
  }
  if (settings.mapFeatures.length > MAX_TILE_FEATURES) {
    throw new RangeError(`roadmap tiles store at most ${MAX_TILE_FEATURES} map features; got ${settings.mapFeatures.length}`);
  }
  return { resolution, tileSize };
}

/** The exterior rings to draw, in drawing order, with their feature index (1-based) and bounding box [m]. */
interface RingList {
  count: number;
  start: Uint32Array;
  end: Uint32Array;
  feature: Uint8Array;
  /** minX, minY, maxX, maxY per ring [m]. */
  bbox: Float64Array;
  /** minX, minY, maxX, maxY of all rings [m]; empty (min > max) when there are none. */
  bounds: Float64Array;
}

/** Lists every exterior ring of every configured feature, in drawing order, with its bounding box. */
function collectRings(map: MapData, features: MapFeature[]): RingList {
  const layers = features.map((feature) => {
    const layer = map.layers.get(feature.layer);
    if (!layer) {
      throw new MapLayerUnavailableError(map.name, feature.layer, `map '${map.name}' cannot draw ${feature.layer}: it lacks table(s) ${map.missingTables.join(', ')}`);
    }
    return layer;
  });

  let count = 0;
  for (const layer of layers) {
    const objects = layer.drawStart.length - 1;
    count += layer.drawStart[objects] - layer.drawStart[0];
  }

  const rings: RingList = {
    count: 0,
    start: new Uint32Array(count),
    end: new Uint32Array(count),
    feature: new Uint8Array(count),
    bbox: new Float64Array(4 * count),
    bounds: Float64Array.of(Infinity, Infinity, -Infinity, -Infinity),
  };
  const coords = map.coords;
  layers.forEach((layer, k) => {
    const objects = layer.drawStart.length - 1;
    for (let object = 0; object < objects; object++) {
      for (let ring = layer.drawStart[object]; ring < layer.drawStart[object + 1]; ring++) {
        const start = layer.drawRanges[2 * ring];
        const end = layer.drawRanges[2 * ring + 1];
        if (end <= start) continue;
        let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
        for (let vertex = start; vertex < end; vertex++) {
          const x = coords[2 * vertex];
          const y = coords[2 * vertex + 1];
          if (x < minX) minX = x;
          if (x > maxX) maxX = x;
          if (y < minY) minY = y;
          if (y > maxY) maxY = y;
        }
        // A ring with a non-finite vertex cannot be placed on the grid, so it is skipped.
        if (!(Number.isFinite(minX) && Number.isFinite(minY) && Number.isFinite(maxX) && Number.isFinite(maxY))) continue;
        const n = rings.count++;
        rings.start[n] = start;
        rings.end[n] = end;
        rings.feature[n] = k + 1;
        rings.bbox[4 * n] = minX;
        rings.bbox[4 * n + 1] = minY;
        rings.bbox[4 * n + 2] = maxX;
        rings.bbox[4 * n + 3] = maxY;
        rings.bounds[0] = Math.min(rings.bounds[0], minX);
        rings.bounds[1] = Math.min(rings.bounds[1], minY);
        rings.bounds[2] = Math.max(rings.bounds[2], maxX);
        rings.bounds[3] = Math.max(rings.bounds[3], maxY);
      }
    }
  });
  return rings;
}

/**
 * Writes the global pixel range gx0, gy0, gx1, gy1 (inclusive) of the bounding box at `bbox[b..b + 3]` [m]
 * to `out`, one pixel wider on each side than the box.
 */
function pixelRange(bbox: Float64Array, b: number, resolution: number, out: Float64Array): Float64Array {
  out[0] = Math.floor(bbox[b] / resolution) - 1;
  out[1] = Math.floor(-bbox[b + 3] / resolution) - 1;
  out[2] = Math.floor(bbox[b + 2] / resolution) + 1;
  out[3] = Math.floor(-bbox[b + 1] / resolution) + 1;
  return out;
}

/**
 * Computes the smallest grid of whole tiles that covers `bounds` [m].
 * @throws RangeError when the grid would exceed MAX_GRID_PIXELS
 */
function gridFor(bounds: Float64Array, resolution: number, tileSize: number): TileGrid {
  if (!(bounds[0] <= bounds[2])) return { resolution, tileSize, firstColumn: 0, firstRow: 0, columns: 0, rows: 0 };
  const [gx0, gy0, gx1, gy1] = pixelRange(bounds, 0, resolution, new Float64Array(4));
  const firstColumn = Math.floor(gx0 / tileSize);
  const firstRow = Math.floor(gy0 / tileSize);
  const columns = Math.floor(gx1 / tileSize) - firstColumn + 1;
  const rows = Math.floor(gy1 / tileSize) - firstRow + 1;
  const pixels = columns * rows * tileSize * tileSize;
  if (pixels > MAX_GRID_PIXELS) {
    throw new RangeError(`roadmap tiles of ${columns} x ${rows} tiles of ${tileSize} px (${pixels} px) exceed the limit of ${MAX_GRID_PIXELS} px; choose a coarser resolution than ${resolution} m/px`);
  }
  return { resolution, tileSize, firstColumn, firstRow, columns, rows };
}

/**
 * Buckets ring indices by the tiles their bounding boxes touch, keeping ring order: the rings of
 * tile t are ringsOfTile[tileStart[t]..tileStart[t + 1]] (compressed sparse rows).
 */
function bucketRings(rings: RingList, grid: TileGrid): { tileStart: Uint32Array; ringsOfTile: Uint32Array } {
  const { resolution, tileSize, firstColumn, firstRow, columns } = grid;
  const tileCount = columns * grid.rows;
  const tileRange = new Int32Array(4 * rings.count);
  const tileStart = new Uint32Array(tileCount + 1);
  const range = new Float64Array(4);
  for (let ring = 0; ring < rings.count; ring++) {
    const b = 4 * ring;
    pixelRange(rings.bbox, b, resolution, range);
    tileRange[b] = Math.floor(range[0] / tileSize) - firstColumn;
    tileRange[b + 1] = Math.floor(range[1] / tileSize) - firstRow;
    tileRange[b + 2] = Math.floor(range[2] / tileSize) - firstColumn;
    tileRange[b + 3] = Math.floor(range[3] / tileSize) - firstRow;
    for (let r = tileRange[b + 1]; r <= tileRange[b + 3]; r++) {
      for (let c = tileRange[b]; c <= tileRange[b + 2]; c++) tileStart[r * columns + c + 1]++;
    }
  }
  for (let t = 0; t < tileCount; t++) tileStart[t + 1] += tileStart[t];
  const ringsOfTile = new Uint32Array(tileStart[tileCount]);
  const filled = tileStart.slice(0, tileCount);
  for (let ring = 0; ring < rings.count; ring++) {
    const b = 4 * ring;
    for (let r = tileRange[b + 1]; r <= tileRange[b + 3]; r++) {
      for (let c = tileRange[b]; c <= tileRange[b + 2]; c++) ringsOfTile[filled[r * columns + c]++] = ring;
    }
  }
  return { tileStart, ringsOfTile };
}

/** Draws every tile of `grid`: each ring into every tile its bounding box touches, in ring order. */
function drawTiles(coords: Float64Array, rings: RingList, grid: TileGrid): Array<Uint8Array | null> {
  const { resolution, tileSize, firstColumn, firstRow, columns, rows } = grid;
  const tiles: Array<Uint8Array | null> = new Array(columns * rows).fill(null);
  if (tiles.length === 0) return tiles;

  const { tileStart, ringsOfTile } = bucketRings(rings, grid);
  const scratch = new Float32Array(tileSize * tileSize);
  const points = new PointBuffer();
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) {
      const t = r * columns + c;
      if (tileStart[t] === tileStart[t + 1]) continue;
      scratch.fill(0);
      // Tile-local OpenCV coordinates put pixel centres on integers: lx = x / resolution - tile's first gx - 0.5.
      const offsetX = (firstColumn + c) * tileSize + 0.5;
      const offsetY = (firstRow + r) * tileSize + 0.5;
      for (let k = tileStart[t]; k < tileStart[t + 1]; k++) {
        const ring = ringsOfTile[k];
        const b = 4 * ring;
        const reach = Math.max(
          Math.abs(rings.bbox[b] / resolution - offsetX), Math.abs(rings.bbox[b + 2] / resolution - offsetX),
          Math.abs(-rings.bbox[b + 1] / resolution - offsetY), Math.abs(-rings.bbox[b + 3] / resolution - offsetY),
        ) + 1;
        let shift = FILL_SHIFT;
        while (shift > 0 && reach * 2 ** shift >= 2 ** 31) shift--;
        const scale = 2 ** shift;

        const vertices = rings.end[ring] - rings.start[ring];
        const view = points.view(vertices);
        for (let i = 0, vertex = rings.start[ring]; i < vertices; i++, vertex++) {
          view[2 * i] = Math.round((coords[2 * vertex] / resolution - offsetX) * scale);
          view[2 * i + 1] = Math.round((-coords[2 * vertex + 1] / resolution - offsetY) * scale);
        }
        native.fillPoly(scratch, tileSize, tileSize, view, rings.feature[ring], shift);
      }
      tiles[t] = toIndexTile(scratch);
    }
  }
  return tiles;
}

/** Converts a drawn scratch tile (feature indices as floats) to uint8, or null when nothing was drawn. */
function toIndexTile(scratch: Float32Array): Uint8Array | null {
  let drawn = false;
  for (let i = 0; i < scratch.length; i++) {
    if (scratch[i] !== 0) {
      drawn = true;
      break;
    }
  }
  if (!drawn) return null;
  const tile = new Uint8Array(scratch.length);
  tile.set(scratch);
  return tile;
}

/** A growable Int32Array of (x, y) vertices with one cached view per vertex count, so that filling polygons does not allocate. */
class PointBuffer {
  private buffer = new Int32Array(256);
  private views: Int32Array[] = [];

  /** Returns a view of the first `vertices` (x, y) pairs, growing the buffer when needed. */
  view(vertices: number): Int32Array {
    if (2 * vertices > this.buffer.length) {
      this.buffer = new Int32Array(Math.max(2 * vertices, 2 * this.buffer.length));
      this.views = [];
    }
    let view = this.views[vertices];
    if (view === undefined) {
      view = this.buffer.subarray(0, 2 * vertices);
      this.views[vertices] = view;
    }
    return view;
  }
}

/** Tile sets built for each loaded map, found by roadmapTilesFor. */
const tilesByMap = new WeakMap<MapData, RoadmapTiles[]>();

/** Registers a tile set of `map` for roadmapTilesFor; a set of the same layers, resolution and tile size replaces the old one. */
export function attachRoadmapTiles(map: MapData, tiles: RoadmapTiles): void {
  const sets = (tilesByMap.get(map) ?? []).filter((registered) => !(sameLayers(registered.features, tiles.features)
    && registered.grid.resolution === tiles.grid.resolution && registered.grid.tileSize === tiles.grid.tileSize));
  sets.push(tiles);
  tilesByMap.set(map, sets);
}

/**
 * Finds the registered tile set of `map` that draws the layers of `settings` in order: the one whose
 * resolution equals settings.targetPixelSize, else the finest. Returns undefined when there is none.
 */
export function roadmapTilesFor(map: MapData, settings: RasterSettings): RoadmapTiles | undefined {
  let best: RoadmapTiles | undefined;
  for (const tiles of tilesByMap.get(map) ?? []) {
    if (!tiles.matches(settings)) continue;
    if (tiles.grid.resolution === settings.targetPixelSize) return tiles;
    if (best === undefined || tiles.grid.resolution < best.grid.resolution) best = tiles;
  }
  return best;
}

/** Whether two feature lists draw the same layers in the same order (a loop, so that sample does not allocate). */
function sameLayers(a: MapFeature[], b: MapFeature[]): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) {
    if (a[k].layer !== b[k].layer) return false;
  }
  return true;
}
