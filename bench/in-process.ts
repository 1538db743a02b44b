import type { MapData } from '../maps/map-data.js';
import type { Rasterizer } from '../raster/rasterizer.js';
import { emptyRun, recordStep, type PathRun, type RunPlan } from './path-run.js';
import type { Workload } from './workloads.js';

/**
 * Replays a workload step by step through a rasterizer in this process (no gRPC, no encoding).
 * Steps draw into one reused output buffer, as a planner calling the rasterizer in process would
 * (the server draws straight into each response's wire buffer).
 */
export function runInProcess(workload: Workload, map: MapData, rasterizer: Rasterizer, plan: RunPlan): PathRun {
  const { rasterScenes, scenes, settings } = workload;
  const out = new Float32Array(settings.targetWidth * settings.targetHeight * 4);
  for (let i = 0; i < plan.warmupSteps; i++) rasterizer.rasterize(map, rasterScenes[i % rasterScenes.length], settings, out);

  const run = emptyRun();
  const started = performance.now();
  const deadline = started + plan.budgetMs;
  passes: for (let pass = 0; pass < plan.passes; pass++) {
    for (let step = 0; step < rasterScenes.length; step++) {
      if (performance.now() > deadline) {
        run.truncated = true;
        break passes;
      }
      const before = performance.now();
      const result = rasterizer.rasterize(map, rasterScenes[step], settings, out);
      const latencyMs = performance.now() - before;
      recordStep(run, scenes[step].id, latencyMs, result.timings);
    }
  }
  run.elapsedMs = performance.now() - started;
  return run;
}
