import type { MapData } from '../maps/map-data.js';
import type { Rasterizer } from '../raster/rasterizer.js';
import type { RasterResult, SceneJob } from '../raster/scene.js';

interface Waiting {
  job: SceneJob & { map: MapData };
  resolve: (result: RasterResult) => void;
  reject: (error: unknown) => void;
}

/**
 * Gathers concurrent unary Rasterize calls into one rasterizeBatch, like Triton's dynamic batching:
 * the first call of a batch waits at most `windowUs` [us] for others, and a batch closes early at
 * `maxBatchSize` calls. Off unless the server is started with --batch-window-us.
 */
export class MicroBatcher {
  private queue: Waiting[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  /** Sizes of the batches run so far, for metrics and tests. */
  readonly batchSizes: number[] = [];

  constructor(private readonly rasterizer: Rasterizer, readonly windowUs: number, readonly maxBatchSize: number) {}

  /** Queues one scene; resolves with its raster once its batch has run. */
  submit(job: SceneJob & { map: MapData }): Promise<RasterResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      if (this.queue.length >= this.maxBatchSize) this.flush();
      else if (this.timer === null) {
        // Node timers have 1 ms granularity: below that, wait for the calls already in this turn of the event loop.
        this.timer = this.windowUs < 1000 ? setImmediate(() => this.flush()) : setTimeout(() => this.flush(), this.windowUs / 1000);
      }
    });
  }

  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = null;
    }
    const batch = this.queue.splice(0, this.maxBatchSize);
    if (batch.length === 0) return;
    if (this.queue.length > 0) this.timer = setImmediate(() => this.flush());
    this.batchSizes.push(batch.length);
    if (this.batchSizes.length > 10_000) this.batchSizes.splice(0, 5_000);

    this.rasterizer.rasterizeBatch(batch.map((waiting) => waiting.job)).then(
      (results) => batch.forEach((waiting, i) => waiting.resolve(results[i])),
      (error: unknown) => {
        // One bad scene fails its whole batch; run the scenes one by one so that only it fails.
        for (const waiting of batch) {
          this.rasterizer.rasterizeBatch([waiting.job]).then((results) => waiting.resolve(results[0]), waiting.reject);
        }
        void error;
      },
    );
  }
}
