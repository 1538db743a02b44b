import type { MapData } from '../maps/map-data.js';
import { collectDrawables } from './map-query.js';
import { native } from './native.js';
import type { Rasterizer } from './rasterizer.js';
import type { RasterResult, Scene, SceneJob } from './scene.js';
import type { RasterSettings } from './settings.js';
import { sceneParams } from './scene-params.js';
import { CpuWorkerPool } from './cpu-pool.js';

export { sceneParams };

/** Rasterizes on the CPU with the C++ addon; the map query runs here in TypeScript. */
export class CpuRasterizer implements Rasterizer {
  readonly device = 'cpu';
  private readonly stageTimes = new Float64Array(5);
  private pool: CpuWorkerPool | null = null;

  /** @param workerThreads threads that draw batches (0: batches run on the calling thread) */
  constructor(private readonly workerThreads = 0) {}

  rasterize(map: MapData, scene: Scene, settings: RasterSettings, out?: Float32Array): RasterResult {
    const started = performance.now();
    const params = sceneParams(scene, settings);
    const size = settings.targetWidth * settings.targetHeight * 4;
    const data = out && out.length === size ? out : new Float32Array(size);

    const center = native.egoCenter(params);
    const drawables = collectDrawables(map, center[0], center[1], settings);
    const mapQuery = (performance.now() - started) * 1000;

    const ok = native.rasterize(
      params, map.coords, drawables.polygonRanges, drawables.polygonColors, drawables.baselineRanges, scene.objects, data, this.stageTimes,
    );
    if (!ok) throw new RangeError(`the ego pose (${scene.rearAxle.x}, ${scene.rearAxle.y}, ${scene.rearAxle.heading}) gives a singular transform; send finite values`);

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
    return this.pool.rasterizeBatch(jobs);
  }

  /** Stops the worker threads, if any were started. */
  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = null;
  }
}
