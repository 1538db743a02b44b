import type { StageTimings } from '../raster/scene.js';

/** Raw measurements of one benchmark path on one workload. */
export interface PathRun {
  /** Latency per sample [ms]: per step, or per call for RasterizeBatch. */
  samplesMs: number[];
  /** Stage timers of every raster, as the rasterizer reported them [us]. */
  stages: StageTimings[];
  /**
   * Client-observed time minus the server's total, per raster [us]. A batch call's share is split
   * evenly over its rasters; see runBatch for how its server time is estimated.
   */
  transportUs: number[];
  /** Rasters built while measuring. */
  rasters: number;
  /** Wall time of the measured samples [ms]. */
  elapsedMs: number;
  /** Latency per scene id over all passes [ms]; empty for batches. */
  perScene: Map<string, number[]>;
  /** True when the time budget ended the run before every planned sample was taken. */
  truncated: boolean;
}

export function emptyRun(): PathRun {
  return { samplesMs: [], stages: [], transportUs: [], rasters: 0, elapsedMs: 0, perScene: new Map(), truncated: false };
}

/** Appends the latency of one scene to `run.perScene`. */
export function recordScene(run: PathRun, sceneId: string, latencyMs: number): void {
  const list = run.perScene.get(sceneId);
  if (list) list.push(latencyMs);
  else run.perScene.set(sceneId, [latencyMs]);
}

/**
 * Records one step's raster: its latency [ms], the server's stage timers [us] and the transport
 * share (client-observed minus the server's total) [us].
 */
export function recordStep(run: PathRun, sceneId: string, latencyMs: number, timings: StageTimings): void {
  run.samplesMs.push(latencyMs);
  run.stages.push(timings);
  run.transportUs.push(latencyMs * 1000 - timings.total);
  recordScene(run, sceneId, latencyMs);
  run.rasters++;
}

/** How many samples a path takes and how long it may run. */
export interface RunPlan {
  /** Replays of the whole workload (step paths). */
  passes: number;
  /** Steps run before measuring, to warm up the JIT, caches and the connection. */
  warmupSteps: number;
  /** Wall-time limit of the measured part [ms]; the run stops early and is marked truncated past it. */
  budgetMs: number;
}
