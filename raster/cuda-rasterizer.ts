import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { MapData } from '../maps/map-data.js';
import { collectDrawables } from './map-query.js';
import type { Rasterizer } from './rasterizer.js';
import type { RasterResult, Scene, SceneJob } from './scene.js';
import { sceneParams } from './scene-params.js';
import type { RasterSettings } from './settings.js';

/** The result of CudaRasterizer.probe(). */
export interface CudaProbe {
  /** True when the CUDA addon is built and device 0 ran its test kernel. */
  available: boolean;
  /** The reason CUDA is unusable, or a one-line description of the device. */
  reason: string;
  gpuName: string;
  /** [bytes] total memory of device 0. */
  memoryBytes: number;
}

/** One batch as the addon reads it: per-scene counts, and the items of all scenes concatenated. */
export interface PackedBatch {
  /** 13 values per scene, in sceneParams order. */
  params: Float64Array;
  /** Map id (from registerMap) per scene. */
  mapIds: Int32Array;
  polygonCounts: Uint32Array;
  /** [start, end) vertex pairs into the scene's map coords, in drawing order. */
  polygonRanges: Uint32Array;
  polygonColors: Float32Array;
  baselineCounts: Uint32Array;
  baselineRanges: Uint32Array;
  agentCounts: Uint32Array;
  /** Rows of (x [m], y [m], heading [rad], length [m], width [m]). */
  agents: Float64Array;
}

/** The addon's result for one batch, with times in [ms]. */
export interface AddonBatchResult {
  /** 1 per scene that was drawn, 0 where its pose matrix was singular (that raster is all zeros). */
  sceneOk: Uint8Array;
  prepareMs: number;
  uploadMs: number;
  kernelMs: number;
  downloadMs: number;
  totalMs: number;
  /** [px] rows each block draws. */
  bandRows: number;
  /** Address of the output tensor (device memory for CUDA), valid until the next batch. */
  outputAddress: bigint;
}

/** Exports of rasterd_cuda.node and rasterd_cuda_emu.node (raster/cuda/addon.cc). */
export interface CudaAddon {
  /** 'cuda' for the GPU build, 'emulation' for the CPU emulation of the same kernels. */
  readonly backend: 'cuda' | 'emulation';

  /** Looks for a driver and device 0 and runs a test kernel there. CUDA errors become the reason, not exceptions. */
  probe(): CudaProbe & { deviceCount: number; computeCapability: string };

  /** The ego box centre [x, y] [m] for the 13 scene parameters. */
  egoCenter(params: Float64Array): Float64Array;

  /** Copies a map's vertices (x, y pairs [m]) to the device (or keeps them, for the emulation); returns its id. */
  registerMap(coords: Float64Array): number;

  /** Frees a registered map's vertices. */
  releaseMap(id: number): void;

  /**
   * Rasterizes a batch of scenes of one size into float32 [scenes, targetWidth, targetHeight, 4].
   * @param out destination of that length, or null to leave the rasters in device memory
   * @param options.bandRows caps the rows drawn per block [px], to test band boundaries
   */
  rasterizeBatch(batch: PackedBatch, out?: Float32Array | null, options?: { bandRows?: number }): AddonBatchResult;

  /** Allocates a Float32Array of `length` values in page-locked memory (CUDA), which the device copies into fastest. */
  allocateHostBuffer(length: number): Float32Array;

  /** Frees every map, ego layer and work buffer of the process's addon, including other CudaRasterizers' maps. */
  releaseDeviceMemory(): void;

  /** Test hook: cv2.fillPoly of one polygon through the batch pipeline's band code. */
  fillPolyBands(image: Float32Array, rows: number, cols: number, points: Int32Array, color: number, shift: number, bandRows: number): void;

  /** Test hook: cv2.polylines of one open polyline through the band code. */
  polylineBands(
    image: Float32Array, rows: number, cols: number, points: Int32Array, color: number, thickness: number, shift: number, bandRows: number,
  ): void;

  /** Test hook: vertices whose fixed-point transform differs between the kernel code and raster/native. */
  countVertexMismatches(coords: Float64Array, transform: Float64Array, radius: number, pixelSize: number, shift: number): number;
}

/** Timings of one batch [ms]; the GPU stages are measured with CUDA events. */
export interface BatchTimings {
  scenes: number;
  /** Map queries and packing in TypeScript. */
  mapQueryMs: number;
  /** Poses, agent corners and ring lists in C++. */
  prepareMs: number;
  uploadMs: number;
  kernelMs: number;
  /** 0 when the rasters stay on the device. */
  downloadMs: number;
  /** From the first map query to the end of the last copy. */
  totalMs: number;
  bandRows: number;
  /** Address of the output tensor (device memory for CUDA), valid until the next batch. */
  outputAddress: bigint;
}

/** The addon a CudaRasterizer drives. */
export type CudaBackendName = 'cuda' | 'emulation';

const here = dirname(fileURLToPath(import.meta.url));
/** The raster/cuda folder, whether this module runs from raster/ or dist/raster/. */
const CUDA_DIR = [join(here, 'cuda'), resolve(here, '../../raster/cuda')].find((dir) => existsSync(join(dir, 'CMakeLists.txt'))) ?? join(here, 'cuda');

/** Paths of the addons that build.mjs builds. */
export const ADDON_PATHS: Record<CudaBackendName, string> = {
  cuda: join(CUDA_DIR, 'build', 'cuda', 'Release', 'rasterd_cuda.node'),
  emulation: join(CUDA_DIR, 'build', 'emulation', 'Release', 'rasterd_cuda_emu.node'),
};

const require = createRequire(import.meta.url);
const loaded = new Map<CudaBackendName, CudaAddon | Error>();
let cachedProbe: CudaProbe | undefined;

/** Loads the CUDA addon and probes device 0. Any failure becomes available=false with its reason. */
function probeOnce(): CudaProbe {
  try {
    const addon = loadCudaAddon('cuda');
    if (addon instanceof Error) return { available: false, reason: addon.message, gpuName: '', memoryBytes: 0 };
    const { available, reason, gpuName, memoryBytes } = addon.probe();
    return { available, reason, gpuName, memoryBytes };
  } catch (error) {
    return { available: false, reason: `the CUDA probe failed: ${(error as Error).message}`, gpuName: '', memoryBytes: 0 };
  }
}

/**
 * Loads the CUDA addon or its CPU emulation, once per process.
 * @returns the addon, or an Error that explains why it cannot be loaded and how to build it
 */
export function loadCudaAddon(backend: CudaBackendName): CudaAddon | Error {
  const cached = loaded.get(backend);
  if (cached) return cached;
  const path = ADDON_PATHS[backend];
  let result: CudaAddon | Error;
  if (!existsSync(path)) {
    result = new Error(`${path} is not built; run \`node raster/cuda/build.mjs\`${backend === 'cuda' ? ' on a machine with nvcc' : ''}`);
  } else {
    try {
      result = require(path) as CudaAddon;
    } catch (error) {
      result = new Error(`${path} failed to load: ${(error as Error).message}; rebuild it with \`node raster/cuda/build.mjs\``);
    }
  }
  loaded.set(backend, result);
  return result;
}

/** Options of a CudaRasterizer. */
export interface CudaRasterizerOptions {
  /** 'cuda' (default) runs on device 0; 'emulation' runs the same kernel code on the CPU, for tests. */
  backend?: CudaBackendName;
  /** Caps the rows drawn per block [px]; only tests set it. */
  bandRows?: number;
}

/** A packed batch and what was measured while packing it. */
export interface PackedJobs {
  batch: PackedBatch;
  /** [px] targetWidth of every job. */
  rows: number;
  /** [px] targetHeight of every job. */
  cols: number;
  /** [ms] map queries and packing. */
  mapQueryMs: number;
}

/**
 * Rasterizes on a CUDA device: many scenes per launch sequence, bit-identical to CpuRasterizer.
 * Map queries run here in TypeScript; poses run in C++ on the host; drawing runs on the GPU.
 * Each MapData's vertices are uploaded once and freed when the MapData is garbage-collected.
 */
export class CudaRasterizer implements Rasterizer {
  /** 'cuda', or 'cuda-emulation' for the CPU emulation. */
  readonly device: string;
  private readonly addon: CudaAddon;
  private readonly bandRows: number | undefined;
  private mapIds = new WeakMap<MapData, number>();
  /** Ids this instance registered, so that dispose() frees only its own maps. */
  private readonly ownedMapIds = new Set<number>();
  private readonly releaser: FinalizationRegistry<number>;

  /**
   * Checks once per process whether the CUDA addon is built and device 0 runs it. Never throws.
   * @returns available=false with the reason when the addon is missing or no device answers
   */
  static probe(): CudaProbe {
    cachedProbe ??= probeOnce();
    return { ...cachedProbe };
  }

  /** @throws Error with the reason when the addon is not built or, for 'cuda', no device is usable */
  constructor(options: CudaRasterizerOptions = {}) {
    const backend = options.backend ?? 'cuda';
    const addon = loadCudaAddon(backend);
    if (addon instanceof Error) throw addon;
    if (backend === 'cuda') {
      const probe = CudaRasterizer.probe();
      if (!probe.available) throw new Error(`no CUDA device is usable: ${probe.reason}; use the CPU rasterizer`);
    }
    this.addon = addon;
    this.device = backend === 'cuda' ? 'cuda' : 'cuda-emulation';
    this.bandRows = options.bandRows;
    this.releaser = new FinalizationRegistry((id) => {
      this.ownedMapIds.delete(id);
      addon.releaseMap(id);
    });
  }

  /** Builds one raster as a batch of one. `out` is reused when its length is targetWidth * targetHeight * 4. */
  rasterize(map: MapData, scene: Scene, settings: RasterSettings, out?: Float32Array): RasterResult {
    const size = settings.targetWidth * settings.targetHeight * 4;
    const data = out && out.length === size ? out : new Float32Array(size);
    const packed = this.pack([{ map, scene, settings }]);
    const result = this.run(packed, data);
    return this.resultOf(data, packed, result, 1);
  }

  /**
   * Rasterizes every job; jobs of one raster size share a launch sequence. Results are in job order
   * and share one buffer per raster size.
   */
  async rasterizeBatch(jobs: Array<SceneJob & { map: MapData }>): Promise<RasterResult[]> {
    // NOTE: the addon call is synchronous, so the event loop waits while the GPU draws (a few ms per batch).
    const results = new Array<RasterResult>(jobs.length);
    for (const indices of groupBySize(jobs)) {
      const group = indices.map((index) => jobs[index]);
      const packed = this.pack(group);
      const size = packed.rows * packed.cols * 4;
      const out = new Float32Array(size * group.length);
      const result = this.run(packed, out);
      indices.forEach((jobIndex, k) => {
        results[jobIndex] = this.resultOf(out.subarray(k * size, (k + 1) * size), packed, result, group.length);
      });
    }
    return results;
  }

  /**
   * Rasterizes jobs of one raster size and leaves the float32 [jobs, targetWidth, targetHeight, 4]
   * tensor in device memory (at outputAddress, until the next batch), for throughput measurements.
   */
  rasterizeBatchOnDevice(jobs: Array<SceneJob & { map: MapData }>): BatchTimings {
    const packed = this.pack(jobs);
    return this.timingsOf(packed, this.run(packed, null), jobs.length);
  }

  /**
   * Rasterizes jobs of one raster size into `out` (jobs * targetWidth * targetHeight * 4 values),
   * which is fastest when it comes from allocateHostBuffer.
   */
  rasterizeBatchInto(jobs: Array<SceneJob & { map: MapData }>, out: Float32Array): BatchTimings {
    const packed = this.pack(jobs);
    return this.timingsOf(packed, this.run(packed, out), jobs.length);
  }

  /** Allocates a Float32Array of `length` values in page-locked host memory (ordinary memory for the emulation). */
  allocateHostBuffer(length: number): Float32Array {
    return this.addon.allocateHostBuffer(length);
  }

  /**
   * Frees the device copies of the maps this instance uploaded; they are uploaded again on next use.
   * The addon's work buffers stay allocated for the process's other instances.
   */
  dispose(): void {
    for (const id of this.ownedMapIds) this.addon.releaseMap(id);
    this.ownedMapIds.clear();
    this.mapIds = new WeakMap();
  }

  /** Returns the id of `map` in the addon, uploading its vertices on first use. */
  private mapId(map: MapData): number {
    let id = this.mapIds.get(map);
    if (id === undefined) {
      id = this.addon.registerMap(map.coords);
      this.mapIds.set(map, id);
      this.ownedMapIds.add(id);
      this.releaser.register(map, id);
    }
    return id;
  }

  private pack(jobs: Array<{ map: MapData; scene: Scene; settings: RasterSettings }>): PackedJobs {
    return packBatch(jobs, (map) => this.mapId(map), (params) => this.addon.egoCenter(params));
  }

  /** Runs a packed batch; throws a RangeError naming the first scene whose pose matrix was singular. */
  private run(packed: PackedJobs, out: Float32Array | null): AddonBatchResult {
    const options = this.bandRows === undefined ? undefined : { bandRows: this.bandRows };
    const result = this.addon.rasterizeBatch(packed.batch, out, options);
    const failed = result.sceneOk.indexOf(0);
    if (failed >= 0) {
      const [x, y, heading] = packed.batch.params.subarray(13 * failed + 8, 13 * failed + 11);
      throw new RangeError(`the ego pose (${x}, ${y}, ${heading}) of batch scene ${failed} gives a singular transform; send finite values`);
    }
    return result;
  }

  private timingsOf(packed: PackedJobs, result: AddonBatchResult, scenes: number): BatchTimings {
    return {
      scenes,
      mapQueryMs: packed.mapQueryMs,
      prepareMs: result.prepareMs,
      uploadMs: result.uploadMs,
      kernelMs: result.kernelMs,
      downloadMs: result.downloadMs,
      totalMs: packed.mapQueryMs + result.totalMs,
      bandRows: result.bandRows,
      outputAddress: result.outputAddress,
    };
  }

  /**
   * Builds one job's result, with the batch's times divided evenly over its scenes [us]. One kernel draws
   * all layers, so host preparation, upload and kernel time are reported as `roadmap`, the copy to
   * the host as `serialization`, and the agents, baselines and ego times are 0.
   */
  private resultOf(data: Float32Array, packed: PackedJobs, result: AddonBatchResult, scenes: number): RasterResult {
    const perScene = 1000 / scenes;
    return {
      data,
      shape: [packed.rows, packed.cols, 4],
      timings: {
        mapQuery: packed.mapQueryMs * perScene,
        roadmap: (result.prepareMs + result.uploadMs + result.kernelMs) * perScene,
        agents: 0,
        baselines: 0,
        ego: 0,
        serialization: result.downloadMs * perScene,
        total: (packed.mapQueryMs + result.totalMs) * perScene,
      },
    };
  }
}

/**
 * Queries the map around each job's ego centre and packs the batch the addon reads.
 * @param mapIdOf the registered id of a map
 * @param egoCenter the ego box centre [x, y] [m] for 13 scene parameters
 * @throws RangeError when the jobs differ in raster size or ask for the 'tiles' roadmap mode
 */
export function packBatch(
  jobs: Array<{ map: MapData; scene: Scene; settings: RasterSettings }>,
  mapIdOf: (map: MapData) => number,
  egoCenter: (params: Float64Array) => Float64Array,
): PackedJobs {
  const started = performance.now();
  if (jobs.length === 0) throw new RangeError('the batch is empty; pass at least one job');
  const rows = jobs[0].settings.targetWidth;
  const cols = jobs[0].settings.targetHeight;

  const params = new Float64Array(13 * jobs.length);
  const mapIds = new Int32Array(jobs.length);
  const polygonCounts = new Uint32Array(jobs.length);
  const baselineCounts = new Uint32Array(jobs.length);
  const agentCounts = new Uint32Array(jobs.length);
  const polygonParts: Uint32Array[] = [];
  const colorParts: Float32Array[] = [];
  const baselineParts: Uint32Array[] = [];
  const agentParts: Float64Array[] = [];

  jobs.forEach((job, i) => {
    const { settings, scene } = job;
    if (settings.targetWidth !== rows || settings.targetHeight !== cols) {
      throw new RangeError(`job ${i} is ${settings.targetWidth} x ${settings.targetHeight} px but job 0 is ${rows} x ${cols} px; batch rasters of one size`);
    }
    if (settings.roadmapMode !== 'exact') {
      throw new RangeError(`job ${i} asks for roadmap mode '${settings.roadmapMode}'; the CUDA rasterizer draws 'exact' only`);
    }
    const sceneValues = sceneParams(scene, settings);
    params.set(sceneValues, 13 * i);
    mapIds[i] = mapIdOf(job.map);
    const center = egoCenter(sceneValues);
    const drawables = collectDrawables(job.map, center[0], center[1], settings);
    polygonCounts[i] = drawables.polygonColors.length;
    baselineCounts[i] = drawables.baselineRanges.length / 2;
    agentCounts[i] = scene.objects.length / 5;
    polygonParts.push(drawables.polygonRanges);
    colorParts.push(drawables.polygonColors);
    baselineParts.push(drawables.baselineRanges);
    agentParts.push(scene.objects);
  });

  const batch: PackedBatch = {
    params, mapIds, polygonCounts, baselineCounts, agentCounts,
    polygonRanges: concat(Uint32Array, polygonParts),
    polygonColors: concat(Float32Array, colorParts),
    baselineRanges: concat(Uint32Array, baselineParts),
    agents: concat(Float64Array, agentParts),
  };
  return { batch, rows, cols, mapQueryMs: performance.now() - started };
}

/** Job indices grouped by raster size, in order of first appearance. */
function groupBySize(jobs: Array<{ settings: RasterSettings }>): number[][] {
  const groups = new Map<string, number[]>();
  jobs.forEach((job, index) => {
    const key = `${job.settings.targetWidth}x${job.settings.targetHeight}`;
    const group = groups.get(key);
    if (group) group.push(index);
    else groups.set(key, [index]);
  });
  return [...groups.values()];
}

function concat<T extends Uint32Array | Float32Array | Float64Array>(type: { new (length: number): T }, parts: T[]): T {
  let length = 0;
  for (const part of parts) length += part.length;
  const result = new type(length);
  let offset = 0;
  for (const part of parts) {
    result.set(part as never, offset);
    offset += part.length;
  }
  return result;
}
