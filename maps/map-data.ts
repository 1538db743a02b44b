import Flatbush from 'flatbush';

import { polygonIntersectsRect, rangesIntersectRect, type Rect } from './geometry.js';
import type { PolygonLayerName } from './semantic-layers.js';

/** One GeoPackage table in flat typed arrays; feature i is the i-th row in feature-id order. */
export interface TableData {
  name: string;
  kind: 'polygon' | 'line';
  count: number;
  /** Feature ids. */
  fids: Float64Array;
  /** Ring (or line part) index range of each feature: featureRingStart[i]..featureRingStart[i+1]. */
  featureRingStart: Uint32Array;
  /** minX, minY, maxX, maxY per feature [m]; NaN for a feature without geometry. */
  bbox: Float64Array;
  /** Integer join columns; NaN where the value is null. */
  columns: Record<string, Float64Array>;
  /** Bounding-box index over the features that have geometry; null when none has. */
  index: Flatbush | null;
  /** Feature index of each item of `index` (features without geometry are not indexed). */
  indexFeatures: Uint32Array;
}

/** The drawable objects of one nuPlan semantic layer, resolved at load time. */
export interface SemanticLayerData {
  name: PolygonLayerName;
  /** Table whose geometry selects objects. */
  select: TableData;
  /** Exterior-ring vertex ranges drawn for selected feature i: drawRanges[2k], drawRanges[2k+1] for k in drawStart[i]..drawStart[i+1]. */
  drawStart: Uint32Array;
  drawRanges: Uint32Array;
  /** Baseline path vertex range [start, end) per selected feature (lanes and lane connectors); equal values when it has none. */
  baselineRanges: Uint32Array | null;
}

/** A loaded map: all geometry in one projected, flat float64 array, plus per-layer indexes. */
export interface MapData {
  name: string;
  version: string;
  path: string;
  projectedCrs: string;
  /** x, y of every vertex of every table [m], in the map's projected CRS. */
  coords: Float64Array;
  /** Vertex start of each ring; ring r spans ringVertexStart[r]..ringVertexStart[r+1]. */
  ringVertexStart: Uint32Array;
  tables: Map<string, TableData>;
  layers: Map<PolygonLayerName, SemanticLayerData>;
  /** Tables the file lacks; requests that need them are rejected. */
  missingTables: string[];
  /** Features per table (the ListMaps layer counts). */
  layerCounts: Record<string, number>;
  loadMs: number;
  /** SHA-256 of the map file, when the load computed it (cached loads do). */
  sha256?: string;
}

/** Builds the axis-aligned query square of half-size `radius` [m] around (x, y) [m], as NuPlanMap does. */
export function querySquare(x: number, y: number, radius: number): Rect {
  return { minX: x - radius, minY: y - radius, maxX: x + radius, maxY: y + radius };
}

/**
 * Selects the features of `table` whose geometry intersects `rect` (touching counts), in feature-id
 * order, as NuPlanMap.get_proximal_map_objects does.
 * @returns indices of the selected features, ascending
 */
export function selectFeatures(map: MapData, table: TableData, rect: Rect): number[] {
  if (table.index === null) return [];
  const candidates = table.index.search(rect.minX, rect.minY, rect.maxX, rect.maxY);
  for (let i = 0; i < candidates.length; i++) candidates[i] = table.indexFeatures[candidates[i]];
  candidates.sort((a, b) => a - b);

  const selected: number[] = [];
  for (const feature of candidates) {
    const firstRing = table.featureRingStart[feature];
    const endRing = table.featureRingStart[feature + 1];
    const hit =
      table.kind === 'polygon'
        ? polygonIntersectsRect(map.coords, map.ringVertexStart, firstRing, endRing, rect)
        : rangesIntersectRect(map.coords, map.ringVertexStart, firstRing, endRing, false, rect);
    if (hit) selected.push(feature);
  }
  return selected;
}
