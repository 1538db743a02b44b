import { querySquare, selectFeatures, type MapData } from '../maps/map-data.js';
import type { PolygonLayerName } from '../maps/semantic-layers.js';
import type { RasterSettings } from './settings.js';

/** The map objects one step draws: vertex ranges into map.coords, in drawing order. */
export interface MapDrawables {
  /** [start, end) pairs of exterior rings. */
  polygonRanges: Uint32Array;
  /** Colour of each ring. */
  polygonColors: Float32Array;
  /** [start, end) pairs of baseline paths: lanes first, then lane connectors. */
  baselineRanges: Uint32Array;
}

/** A map is missing something a request draws. */
export class MapLayerUnavailableError extends Error {
  constructor(readonly mapName: string, readonly layer: string, message: string) {
    super(message);
    this.name = 'MapLayerUnavailableError';
  }
}

/** Computes the query square's half size [m]: (x_range[1] - x_range[0]) / 2, as RasterFeatureBuilder derives it. */
export function queryRadius(settings: RasterSettings): number {
  const xSize = (settings.targetWidth * settings.targetPixelSize) / 2.0;
  const xOffset = 2.0 * settings.egoLongitudinalOffset * xSize;
  return (xSize + xOffset - (-xSize + xOffset)) / 2;
}

function layerOf(map: MapData, name: PolygonLayerName) {
  const layer = map.layers.get(name);
  if (!layer) {
    throw new MapLayerUnavailableError(map.name, name, `map '${map.name}' cannot draw ${name}: it lacks table(s) ${map.missingTables.join(', ')}`);
  }
  return layer;
}

/**
 * Selects the map objects of one step around the ego centre (x, y) [m] and lists what to draw.
 * Each layer is queried once even when both the roadmap and the baselines need it.
 */
export function collectDrawables(map: MapData, centerX: number, centerY: number, settings: RasterSettings): MapDrawables {
  const rect = querySquare(centerX, centerY, queryRadius(settings));
  const selections = new Map<PolygonLayerName, number[]>();
  const select = (name: PolygonLayerName): number[] => {
    let selected = selections.get(name);
    if (!selected) {
      selected = selectFeatures(map, layerOf(map, name).select, rect);
      selections.set(name, selected);
    }
    return selected;
  };

  const polygonRanges: number[] = [];
  const polygonColors: number[] = [];
  for (const feature of settings.mapFeatures) {
    const layer = layerOf(map, feature.layer);
    for (const index of select(feature.layer)) {
      for (let k = layer.drawStart[index]; k < layer.drawStart[index + 1]; k++) {
        polygonRanges.push(layer.drawRanges[2 * k], layer.drawRanges[2 * k + 1]);
        polygonColors.push(feature.color);
      }
    }
  }

  const baselineRanges: number[] = [];
  for (const name of ['LANE', 'LANE_CONNECTOR'] as const) {
    const layer = layerOf(map, name);
    if (!layer.baselineRanges) {
      throw new MapLayerUnavailableError(map.name, 'baseline_paths', `map '${map.name}' has no baseline_paths table, so the baseline-path layer cannot be drawn`);
    }
    for (const index of select(name)) {
      const start = layer.baselineRanges[2 * index];
      const end = layer.baselineRanges[2 * index + 1];
      if (end > start) baselineRanges.push(start, end);
    }
  }

  return {
    polygonRanges: Uint32Array.from(polygonRanges),
    polygonColors: Float32Array.from(polygonColors),
    baselineRanges: Uint32Array.from(baselineRanges),
  };
}
