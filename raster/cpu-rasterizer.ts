import type { MapData } from '../maps/map-data.js';
import { collectDrawables, MapLayerUnavailableError } from './map-query.js';
import { roadmapTilesFor, type RoadmapTiles } from './roadmap-tiles.js';
import { native } from './native.js';
import type { Rasterizer } from './rasterizer.js';
import type { RasterResult, Scene, SceneJob } from './scene.js';
import type { RasterSettings } from './settings.js';
import { sceneParams } from './scene-params.js';
import { CpuWorkerPool } from './cpu-pool.js';

export { sceneParams };

/**
 * Finds the roadmap tiles to sample in tiles mode; undefined in exact mode.
 * @throws MapLayerUnavailableError when tiles mode is asked for layers the map has no tiles for
 */
export function tilesFor(map: MapData, settings: RasterSettings): RoadmapTiles | undefined {
  if (settings.roadmapMode !== 'tiles') return undefined;
  const tiles = roadmapTilesFor(map, settings);
  if (!tiles) {
    throw new MapLayerUnavailableError(map.name, 'roadmap_tiles', `map '${map.name}' has no roadmap tiles for these map_features (the server builds tiles for its default map_features only); use ROADMAP_MODE_EXACT or the default map_features`);
  }
  return tiles;
}

/** Rasterizes on the CPU with the C++ addon; the map query runs here in TypeScript. */
export class CpuRasterizer implements Rasterizer {
  readonly device = 'cpu';
  private readonly stageTimes = new Float64Array(5);
  private pool: CpuWorkerPool | null = null;

  /** @param workerThreads threads that draw batches (0: batches run on the calling thread) */
  constructor(private readonly workerThreads = 0) {}

  rasterize(map: MapData, scene: Scene, settings: RasterSettings, out?: Float32Array): RasterResult {
    const size = settings.targetWidth * settings.targetHeight * 4;
    const data = out && out.length === size ? out : new Float32Array(size);
    const started = performance.now();
    const params = sceneParams(scene, settings);

    // Tiles mode skips the polygons of the exact roadmap and samples the static tiles instead.
    const tiles = tilesFor(map, settings);
    const center = native.egoCenter(params);
    const drawables = collectDrawables(map, center[0], center[1], tiles ? { ...settings, mapFeatures: [] } : settings);
    const mapQuery = (performance.now() - started) * 1000;

    const ok = native.rasterize(
      params, map.coords, drawables.polygonRanges, drawables.polygonColors, drawables.baselineRanges, scene.objects, data, this.stageTimes,
    );
    if (!ok) throw new RangeError(`the ego pose (${scene.rearAxle.x}, ${scene.rearAxle.y}, ${scene.rearAxle.heading}) gives a singular transform; send finite values`);
    if (tiles) {
      const sampleStarted = performance.now();
      tiles.sample(params, settings, data);
      this.stageTimes[0] = (performance.now() - sampleStarted) * 1000;
    }

    const [roadmap, agents, baselines, ego, serialization] = this.stageTimes;
    return {
      data,
      shape: [settings.targetWidth, settings.targetHeight, 4],
      timings: { mapQuery, roadmap, agents, baselines, ego, serialization, total: (performance.now() - started) * 1000 },
    };
  }

  async rasterizeBatch(jobs: Array<SceneJob & { map: MapData }>): Promise<RasterResult[]> {
    if (this.workerThreads === 0 || jobs.length < 2) return jobs.map((job) => this.rasterize(job.map, job.scene, job.settings));
    this.pool ??= new CpuWorkerPool(this.workerThreads);
    const tiles = jobs.map((job) => tilesFor(job.map, job.settings));
    const results = await this.pool.rasterizeBatch(jobs.map((job, i) => (tiles[i] ? { ...job, settings: { ...job.settings, mapFeatures: [] } } : job)));
    results.forEach((result, i) => {
      const jobTiles = tiles[i];
      if (!jobTiles) return;
      const sampleStarted = performance.now();
      jobTiles.sample(sceneParams(jobs[i].scene, jobs[i].settings), jobs[i].settings, result.data);
      result.timings.roadmap = (performance.now() - sampleStarted) * 1000;
    });
    return results;
  }

  /** Stops the worker threads, if any were started. */
  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = null;
  }
}
