import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import type { MapData } from '../maps/map-data.js';
import type { JobDone, JobMessage } from './cpu-worker.js';
import { collectDrawables } from './map-query.js';
import { native } from './native.js';
import { sceneParams } from './scene-params.js';
import type { RasterResult, SceneJob } from './scene.js';

/** Finds the compiled worker script: beside this file in dist/, or in dist/ when running from the sources. */
function workerScript(): URL {
  const beside = new URL('./cpu-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  const built = new URL('../dist/raster/cpu-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new Error('raster/cpu-worker.js is not built; run `npm run build`');
}

interface PendingJob { resolve: (done: JobDone) => void }

/**
 * Worker threads that draw batches of scenes in parallel. The calling thread selects each scene's
 * map objects (a flatbush query) and hands the drawing to the workers; outputs land in one shared
 * buffer per batch.
 */
export class CpuWorkerPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, PendingJob>();
  private readonly mapIds = new WeakMap<MapData, number>();
  private nextJobId = 1;
  private nextMapId = 1;
  private nextWorker = 0;

  /** @param size worker threads; default: the machine's parallelism, at most 8 */
  constructor(readonly size: number = Math.min(availableParallelism(), 8)) {
    const script = workerScript();
    for (let i = 0; i < size; i++) {
      const worker = new Worker(script);
      worker.on('message', (done: JobDone) => {
        const job = this.pending.get(done.jobId);
        this.pending.delete(done.jobId);
        job?.resolve(done);
      });
      worker.on('error', (error) => {
        // A crashed worker fails its jobs instead of hanging them.
        for (const [jobId, job] of this.pending) job.resolve({ jobId, ok: false, timings: new Float64Array(5), error: error.message });
        this.pending.clear();
      });
      this.workers.push(worker);
    }
  }

  /** Shares a map's coordinates with every worker once; later batches refer to it by id. */
  private registerMap(map: MapData): number {
    let mapId = this.mapIds.get(map);
    if (mapId !== undefined) return mapId;
    mapId = this.nextMapId++;
    const shared = new Float64Array(new SharedArrayBuffer(map.coords.byteLength));
    shared.set(map.coords);
    for (const worker of this.workers) worker.postMessage({ kind: 'map', mapId, coords: shared });
    this.mapIds.set(map, mapId);
    return mapId;
  }

  /**
   * Rasterizes jobs in parallel; results are in job order.
   * @throws RangeError naming the job whose ego pose cannot be inverted
   */
  async rasterizeBatch(jobs: Array<SceneJob & { map: MapData }>): Promise<RasterResult[]> {
    const sizes = jobs.map((job) => job.settings.targetWidth * job.settings.targetHeight * 4);
    const total = sizes.reduce((sum, size) => sum + size, 0);
    const out = new SharedArrayBuffer(total * 4);
    let offset = 0;

    const runs = jobs.map((job, index) => {
      const started = performance.now();
      const params = sceneParams(job.scene, job.settings);
      const center = native.egoCenter(params);
      const drawables = collectDrawables(job.map, center[0], center[1], job.settings);
      const mapQuery = (performance.now() - started) * 1000;

      const jobId = this.nextJobId++;
      const message: JobMessage = {
        kind: 'job', jobId, mapId: this.registerMap(job.map), params, ...drawables, agents: job.scene.objects,
        out, outOffset: offset, outLength: sizes[index],
      };
      const data = new Float32Array(out, offset * 4, sizes[index]);
      offset += sizes[index];

      const done = new Promise<JobDone>((resolve) => this.pending.set(jobId, { resolve }));
      this.workers[this.nextWorker++ % this.workers.length].postMessage(message);
      return done.then((result): RasterResult => {
        if (!result.ok) {
          throw new RangeError(result.error ?? `job ${index}: the ego pose (${job.scene.rearAxle.x}, ${job.scene.rearAxle.y}, ${job.scene.rearAxle.heading}) gives a singular transform; send finite values`);
        }
        const [roadmap, agents, baselines, ego, serialization] = result.timings;
        return {
          data,
          shape: [job.settings.targetWidth, job.settings.targetHeight, 4],
          timings: { mapQuery, roadmap, agents, baselines, ego, serialization, total: (performance.now() - started) * 1000 },
        };
      });
    });
    return Promise.all(runs);
  }

  /** Stops the worker threads. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
