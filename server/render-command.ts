import { readFileSync, writeFileSync } from 'node:fs';

import { PNG } from 'pngjs';

import { readMap } from '../maps/gpkg-reader.js';
import type { MapData } from '../maps/map-data.js';
import type { MapSource } from '../maps/maps-root.js';
import { CpuRasterizer } from '../raster/cpu-rasterizer.js';
import { PACIFICA, type Scene } from '../raster/scene.js';
import type { RasterSettings } from '../raster/settings.js';

/** Options of `rasterd render`. */
export interface RenderOptions {
  sources: MapSource[];
  settings: RasterSettings;
  mapName?: string;
  /** Ego rear axle [m], [m], [rad]; without x and y the ego sits on the lane baseline path nearest the map's centre. */
  x?: number;
  y?: number;
  heading?: number;
  /** A parity scenes.json and the id of the scene to take the ego and objects from. */
  scenesFile?: string;
  sceneId?: string;
  out: string;
  /** PNG pixels per raster pixel. */
  scale: number;
}

/** RGB of each channel where it is set, drawn in this order: roadmap (grey by value), baselines, agents, ego. */
const BACKGROUND = [18, 20, 28];
const BASELINE = [250, 200, 40];
const AGENTS = [40, 200, 255];
const EGO = [255, 70, 70];

/**
 * Colours a [rows, cols, 4] raster for people to look at.
 * @returns an RGBA PNG image, `scale` output pixels per raster pixel
 */
export function rasterToPng(data: Float32Array, rows: number, cols: number, scale: number): PNG {
  const png = new PNG({ width: cols * scale, height: rows * scale });
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const base = 4 * (r * cols + c);
      const [ego, agents, roadmap, baseline] = [data[base], data[base + 1], data[base + 2], data[base + 3]];
      let color = BACKGROUND;
      if (roadmap > 0) color = [40 + 110 * roadmap, 44 + 110 * roadmap, 52 + 110 * roadmap];
      if (baseline > 0) color = BASELINE;
      if (agents > 0) color = AGENTS;
      if (ego > 0) color = EGO;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const index = 4 * ((r * scale + dy) * cols * scale + c * scale + dx);
          png.data[index] = color[0];
          png.data[index + 1] = color[1];
          png.data[index + 2] = color[2];
          png.data[index + 3] = 255;
        }
      }
    }
  }
  return png;
}

/**
 * Places the ego on the lane baseline path closest to the centre of the map's lanes, heading along it,
 * so that a render without a pose shows road.
 */
function egoOnBaselineNearCentre(map: MapData): { x: number; y: number; heading: number } | null {
  const baselines = map.tables.get('baseline_paths');
  if (!baselines || baselines.count === 0) return null;
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (let i = 0; i < baselines.count; i++) {
    if (Number.isNaN(baselines.bbox[4 * i])) continue;
    minX = Math.min(minX, baselines.bbox[4 * i]);
    minY = Math.min(minY, baselines.bbox[4 * i + 1]);
    maxX = Math.max(maxX, baselines.bbox[4 * i + 2]);
    maxY = Math.max(maxY, baselines.bbox[4 * i + 3]);
  }
  const centerX = (minX + maxX) / 2, centerY = (minY + maxY) / 2;

  let best: { x: number; y: number; heading: number } | null = null;
  let bestDistance = Infinity;
  for (let i = 0; i < baselines.count; i++) {
    if (Number.isNaN(baselines.columns.lane_fid[i])) continue;
    const ring = baselines.featureRingStart[i];
    if (baselines.featureRingStart[i + 1] === ring) continue;
    const start = map.ringVertexStart[ring], end = map.ringVertexStart[ring + 1];
    for (let k = start; k + 1 < end; k++) {
      const px = map.coords[2 * k], py = map.coords[2 * k + 1];
      const distance = Math.hypot(px - centerX, py - centerY);
      if (distance < bestDistance) {
        bestDistance = distance;
        best = { x: px, y: py, heading: Math.atan2(map.coords[2 * k + 3] - py, map.coords[2 * k + 2] - px) };
      }
    }
  }
  return best;
}

/** Rasterizes one scene in process and writes it as a colour PNG. */
export async function runRender(options: RenderOptions): Promise<void> {
  const source = options.mapName ? options.sources.find((candidate) => candidate.name === options.mapName) : options.sources[0];
  if (!source) throw new Error(`--map-name '${options.mapName}' is not among the given maps: ${options.sources.map((s) => s.name).join(', ')}`);
  const map = readMap(source.path, { name: source.name, version: source.version });

  let scene: Scene;
  if (options.scenesFile) {
    const spec = JSON.parse(readFileSync(options.scenesFile, 'utf8'));
    const found = spec.scenes.find((candidate: { id: string }) => candidate.id === options.sceneId) ?? (options.sceneId ? undefined : spec.scenes[0]);
    if (!found) throw new Error(`--scene-id '${options.sceneId}' is not in ${options.scenesFile}`);
    const objects = new Float64Array(5 * found.agents.length);
    found.agents.forEach((a: { x: number; y: number; heading: number; length: number; width: number }, i: number) => objects.set([a.x, a.y, a.heading, a.length, a.width], 5 * i));
    scene = { rearAxle: found.ego, vehicle: PACIFICA, objects };
  } else {
    let x = options.x, y = options.y, heading = options.heading ?? 0;
    if (x === undefined || y === undefined) {
      const placed = egoOnBaselineNearCentre(map);
      if (placed) ({ x, y, heading } = placed);
    }
    if (x === undefined || y === undefined || !Number.isFinite(x) || !Number.isFinite(y) || !Number.isFinite(heading)) {
      throw new Error(`the ego pose must be finite numbers; got --x ${x} --y ${y} --heading ${heading}`);
    }
    scene = { rearAxle: { x, y, heading }, vehicle: PACIFICA, objects: new Float64Array(0) };
  }

  const result = new CpuRasterizer().rasterize(map, scene, options.settings);
  const png = rasterToPng(result.data, result.shape[0], result.shape[1], options.scale);
  writeFileSync(options.out, PNG.sync.write(png));
  process.stdout.write(`wrote ${options.out} (${result.shape[0]} x ${result.shape[1]} px, map ${map.name}, ego at ${scene.rearAxle.x.toFixed(2)}, ${scene.rearAxle.y.toFixed(2)}, ${(result.timings.total / 1000).toFixed(2)} ms)\n`);
}
