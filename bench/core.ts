import { availableParallelism } from 'node:os';
import { join } from 'node:path';

import type { ServiceError } from '@grpc/grpc-js';

import { loadMap } from '../maps/map-cache.js';
import type { MapData } from '../maps/map-data.js';
import type { MapSource } from '../maps/maps-root.js';
import type { SampleMapOptions } from '../maps/sample-map.js';
import { CpuRasterizer } from '../raster/cpu-rasterizer.js';
import type { Rasterizer } from '../raster/rasterizer.js';
import { attachRoadmapTiles, RoadmapTiles } from '../raster/roadmap-tiles.js';
import { NUPLAN_DEFAULT_SETTINGS } from '../raster/settings.js';
import type { RasterizeRequestMessage } from '../server/request.js';
import { procMemoryBytes } from './child-process.js';
import { CpuMeter } from './cpu-meter.js';
import { createClient, rasterizeOnce, runBatch, runStream, runUnary, waitForReady, type RasterClient, type ResponseMessage } from './grpc-paths.js';
import { runInProcess } from './in-process.js';
import { measureMapLoad, type MapLoadResult } from './map-load.js';
import { loadCudaRasterizer } from './optional-modules.js';
import type { PathRun, RunPlan } from './path-run.js';
import { BENCH_CACHE } from './paths.js';
import {
  machineInfo, pathLabel, pathResult, RESULT_SCHEMA_VERSION,
  type BenchResult, type ConsistencyCheck, type PathKind, type PathResult, type ServerReport,
} from './results.js';
import { compareWithNuplan, evaluateTargets } from './targets.js';
import { startServerProcess } from './server-process.js';
import { runTransportExperiments, type TransportPlan, type TransportResult } from './transport.js';
import {
  isSkipped, loadParityWorkload, PARITY_SETS, TOWN_DRIVE, TOWN_MAP_OPTIONS, townDriveWorkload, type Workload,
} from './workloads.js';

/** Settings of one benchmark run: the workloads and paths it measures, and the time each part may take. */
export interface BenchConfig {
  mode: string;
  /** Parity sets to replay, by name. */
  paritySets: readonly string[];
  /** Steps kept of each parity set. */
  maxParitySteps: number;
  /** The Las-Vegas-scale drive; null leaves it out. */
  town: { steps: number; mapOptions: SampleMapOptions } | null;
  inProcessPasses: number;
  unaryPasses: number;
  streamPasses: number;
  warmupSteps: number;
  /** RasterizeBatch sizes, the calls measured at each, and the workloads they run on (default: all). */
  batches: Array<{ size: number; calls: number; workloads?: string[] }>;
  batchWarmupCalls: number;
  /** Wall-time limit of each path on each workload [ms]. */
  pathBudgetMs: number;
  /** Fresh processes per map-load measurement; 0 skips map-load measurements. */
  mapLoadRuns: number;
  /** Maps whose load is measured: 'town' (the Las-Vegas-scale map only) or 'all'. */
  mapLoadMaps: 'town' | 'all';
  transport: TransportPlan | null;
  /** Folder of the generated map, the map snapshots and the roadmap tiles. */
  cacheDir: string;
}

/** `npm run bench`: about 4 minutes on a 2-core machine. */
export const FULL_CONFIG: BenchConfig = {
  mode: 'full',
  paritySets: PARITY_SETS,
  maxParitySteps: Infinity,
  town: { steps: 149, mapOptions: TOWN_MAP_OPTIONS },
  inProcessPasses: 5,
  unaryPasses: 3,
  streamPasses: 3,
  warmupSteps: 20,
  batches: [{ size: 1, calls: 300 }, { size: 8, calls: 60 }, { size: 64, calls: 12 }, { size: 256, calls: 6 }],
  batchWarmupCalls: 1,
  pathBudgetMs: 30_000,
  mapLoadRuns: 3,
  mapLoadMaps: 'all',
  transport: { steps: 149, batchCalls: 3, rounds: 3, warmupSteps: 10, budgetMs: 150_000 },
  cacheDir: BENCH_CACHE,
};

/** `npm run bench -- --quick`: every path on a few steps, for CI; under a minute once the map is cached. */
export const QUICK_CONFIG: BenchConfig = {
  mode: 'quick',
  paritySets: PARITY_SETS,
  maxParitySteps: 10,
  town: { steps: 20, mapOptions: TOWN_MAP_OPTIONS },
  inProcessPasses: 1,
  unaryPasses: 1,
  streamPasses: 1,
  warmupSteps: 3,
  // The large batches run on one workload only, because one call of 256 rasters takes about 2 s on 2 cores.
  batches: [{ size: 1, calls: 10 }, { size: 8, calls: 2 }, { size: 64, calls: 1, workloads: [TOWN_DRIVE] }, { size: 256, calls: 1, workloads: [TOWN_DRIVE] }],
  batchWarmupCalls: 0,
  pathBudgetMs: 5_000,
  mapLoadRuns: 1,
  mapLoadMaps: 'town',
  transport: { steps: 10, batchCalls: 1, rounds: 1, warmupSteps: 2, budgetMs: 10_000 },
  cacheDir: BENCH_CACHE,
};

const SERVER_START_TIMEOUT_MS = 180_000;

/** Progress lines; the benchmark writes them to stderr so that stdout holds only the report. */
export type Logger = (line: string) => void;

interface BenchState {
  config: BenchConfig;
  log: Logger;
  workloads: Workload[];
  skipped: Array<{ what: string; reason: string }>;
  paths: PathResult[];
  inProcessRuns: Map<string, PathRun>;
  /** The in-process CPU raster of each workload's first step, for the gRPC consistency check. */
  firstRasters: Map<string, Float32Array>;
  consistency: ConsistencyCheck[];
  servers: ServerReport[];
  transport: TransportResult | null;
}

type PathFields = { workload: string; path: PathKind; batchSize: number | null; device: string; roadmapMode: 'exact' | 'tiles' };

/**
 * Runs one path, records its summary with the CPU that other processes used meanwhile, and logs it.
 * @param pids the benchmark's own processes
 */
async function measure(state: BenchState, pids: number[], fields: PathFields, run: () => PathRun | Promise<PathRun>): Promise<PathRun> {
  const meter = new CpuMeter(pids);
  const raw = await run();
  const result = pathResult(raw, { ...fields, otherCpuCores: meter.otherCores() });
  state.paths.push(result);
  const { p50, p99 } = result.latencyMs;
  const other = result.otherCpuCores === null ? '' : `, other processes ${result.otherCpuCores.toFixed(2)} cores`;
  state.log(`  ${fields.workload} ${pathLabel(result)}: p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, ${result.rastersPerSecond.toFixed(0)} rasters/s${other}${raw.truncated ? ' (time budget reached)' : ''}`);
  return raw;
}

async function buildWorkloads(state: BenchState): Promise<number | null> {
  const { config, log } = state;
  for (const name of config.paritySets) {
    const loaded = loadParityWorkload(name, config.maxParitySteps);
    if (isSkipped(loaded)) {
      state.skipped.push({ what: `workload ${name}`, reason: loaded.reason });
      log(`skipped workload ${name}: ${loaded.reason}`);
    } else {
      state.workloads.push(loaded);
    }
  }
  if (!config.town) return null;
  log(`preparing the ${TOWN_DRIVE} map in ${config.cacheDir} (written once, about 6 s)`);
  const { workload, generatedMs } = await townDriveWorkload(config.cacheDir, config.town.steps, config.town.mapOptions);
  state.workloads.push(workload);
  return generatedMs > 0 ? generatedMs : null;
}

function uniqueMaps(workloads: Workload[]): MapSource[] {
  const maps = new Map<string, MapSource>();
  for (const workload of workloads) maps.set(workload.map.name, workload.map);
  return [...maps.values()];
}

/** Cache folder of the map snapshots and roadmap tiles, shared by the load probes, this process and the servers. */
function rasterdCacheDir(config: BenchConfig): string {
  return join(config.cacheDir, 'rasterd-cache');
}

async function measureMapLoads(state: BenchState): Promise<MapLoadResult[]> {
  const { config, log } = state;
  if (config.mapLoadRuns === 0) return [];
  const results: MapLoadResult[] = [];
  const maps = uniqueMaps(state.workloads).filter((map) => config.mapLoadMaps === 'all' || map.name === TOWN_DRIVE);
  for (const map of maps) {
    log(`map load: ${map.name}, ${config.mapLoadRuns} cold and cached loads in fresh processes`);
    const result = await measureMapLoad(map, rasterdCacheDir(config), config.mapLoadRuns);
    if (result.cacheSkipped) state.skipped.push({ what: `map load from cache (${map.name})`, reason: result.cacheSkipped });
    log(`  cold ${result.coldMedianMs.toFixed(0)} ms, cache ${result.cacheMedianMs?.toFixed(0) ?? '-'} ms, peak RSS ${(result.coldPeakRssBytes / 1e6).toFixed(0)} MB`);
    results.push(result);
  }
  return results;
}

function stepPlan(config: BenchConfig, passes: number): RunPlan {
  return { passes, warmupSteps: config.warmupSteps, budgetMs: config.pathBudgetMs };
}

/** Loads the maps into this process, each with the roadmap tiles of nuPlan's default map_features. */
async function loadMapsInProcess(state: BenchState): Promise<Map<string, MapData>> {
  const cacheDir = rasterdCacheDir(state.config);
  const maps = new Map<string, MapData>();
  for (const source of uniqueMaps(state.workloads)) {
    const { map } = await loadMap(source, { name: source.name, version: source.version, cacheDir });
    try {
      const { tiles } = await RoadmapTiles.load(map, NUPLAN_DEFAULT_SETTINGS, { cacheDir });
      attachRoadmapTiles(map, tiles);
    } catch (error) {
      state.skipped.push({ what: `in-process tiles roadmap mode on ${source.name}`, reason: `building its roadmap tiles failed: ${(error as Error).message}` });
    }
    maps.set(source.name, map);
  }
  return maps;
}

/** Returns null when `rasterizer` draws the workload's first step in `mode`, else the reason it cannot. */
function inProcessSkipReason(rasterizer: Rasterizer, map: MapData, workload: Workload, mode: RoadmapMode): string | null {
  try {
    rasterizer.rasterize(map, workload.rasterScenes[0], { ...workload.settings, roadmapMode: mode });
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

async function runInProcessPaths(state: BenchState): Promise<void> {
  const { config, log } = state;
  const maps = await loadMapsInProcess(state);
  const rasterizers: Rasterizer[] = [new CpuRasterizer()];
  const cuda = await loadCudaRasterizer();
  if ('reason' in cuda) state.skipped.push({ what: 'CUDA paths (in-process and gRPC)', reason: cuda.reason });
  else rasterizers.push(cuda.rasterizer);

  log('in-process paths');
  for (const rasterizer of rasterizers) {
    for (const mode of ROADMAP_MODES) {
      if (mode === 'tiles' && rasterizer.device !== 'cpu') {
        state.skipped.push({ what: `in-process ${rasterizer.device} tiles`, reason: 'the tiles mode samples its tiles on the CPU whatever the device, as RasterService does' });
        continue;
      }
      for (const workload of state.workloads) {
        const map = maps.get(workload.map.name)!;
        const reason = inProcessSkipReason(rasterizer, map, workload, mode);
        if (reason !== null) {
          state.skipped.push({ what: `in-process ${rasterizer.device} ${mode} on ${workload.name}`, reason });
          continue;
        }
        const modeWorkload = mode === 'exact' ? workload : { ...workload, settings: { ...workload.settings, roadmapMode: mode } };
        const fields: PathFields = { workload: workload.name, path: 'in-process', batchSize: null, device: rasterizer.device, roadmapMode: mode };
        const run = await measure(state, [process.pid], fields, () => runInProcess(modeWorkload, map, rasterizer, stepPlan(config, config.inProcessPasses)));
        if (rasterizer.device === 'cpu' && mode === 'exact') {
          state.inProcessRuns.set(workload.name, run);
          state.firstRasters.set(workload.name, rasterizer.rasterize(map, workload.rasterScenes[0], workload.settings).data);
        }
      }
    }
  }
}

type RoadmapMode = 'exact' | 'tiles';
const ROADMAP_MODES: RoadmapMode[] = ['exact', 'tiles'];

function withRoadmapMode(requests: RasterizeRequestMessage[], mode: RoadmapMode): RasterizeRequestMessage[] {
  if (mode === 'exact') return requests;
  return requests.map((request) => ({ ...request, config: { ...(request.config ?? {}), roadmapMode: 'ROADMAP_MODE_TILES' } }));
}

/** Asks the server for the workload's first step in `mode`; returns null when it serves it, else the reason. */
async function serverSkipReason(client: RasterClient, workload: Workload, mode: RoadmapMode): Promise<string | null> {
  try {
    await rasterizeOnce(client, withRoadmapMode(workload.requests.slice(0, 1), mode)[0]);
    return null;
  } catch (error) {
    const serviceError = error as ServiceError;
    return `the server rejected the first request (gRPC status ${serviceError.code}): ${serviceError.details ?? serviceError.message}`;
  }
}

async function checkConsistency(state: BenchState, client: RasterClient, workload: Workload, device: string): Promise<void> {
  const expected = state.firstRasters.get(workload.name);
  if (!expected) return;
  const { response } = await rasterizeOnce<ResponseMessage>(client, workload.requests[0]);
  const data = response.raster?.data ?? Buffer.alloc(0);
  const identical = Buffer.compare(data, Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)) === 0;
  state.consistency.push({ workload: workload.name, device, identical });
  if (!identical) state.log(`  WARNING: ${workload.name} on ${device}: the gRPC raster of the first step differs from the in-process raster`);
}

async function runServerPaths(state: BenchState, device: 'cpu' | 'cuda'): Promise<void> {
  const { config, log } = state;
  const maps = uniqueMaps(state.workloads);
  log(`starting \`rasterd serve --device ${device}\` in a child process with ${maps.map((map) => map.name).join(', ')}`);
  const cacheDir = rasterdCacheDir(config);
  // The default of `rasterd serve`: one batch thread per core.
  const workers = availableParallelism();
  const server = await startServerProcess({ maps, device, cacheDir, workers, timeoutMs: SERVER_START_TIMEOUT_MS });
  const report: ServerReport = {
    device,
    workers,
    mapLoads: server.mapLoads,
    rssAfterLoadBytes: procMemoryBytes(server.pid, 'VmRSS'),
    peakRssBytes: null,
  };
  const target = `127.0.0.1:${server.port}`;
  const pids = [process.pid, server.pid];
  const client = createClient(target);
  try {
    await waitForReady(client);
    for (const mode of ROADMAP_MODES) {
      for (const workload of state.workloads) {
        const reason = await serverSkipReason(client, workload, mode);
        if (reason !== null) {
          state.skipped.push({ what: `gRPC ${device} ${mode} on ${workload.name}`, reason });
          continue;
        }
        log(`gRPC paths: ${workload.name}, ${device}, ${mode}`);
        const requests = withRoadmapMode(workload.requests, mode);
        const fields = { workload: workload.name, device, roadmapMode: mode };
        if (mode === 'exact') await checkConsistency(state, client, workload, device);
        await measure(state, pids, { ...fields, path: 'unary', batchSize: null }, () => runUnary(client, workload, requests, stepPlan(config, config.unaryPasses)));
        await measure(state, pids, { ...fields, path: 'stream', batchSize: null }, () => runStream(client, workload, requests, stepPlan(config, config.streamPasses)));
        for (const { size, calls, workloads } of config.batches) {
          if (workloads && !workloads.includes(workload.name)) continue;
          const parallelism = size < 2 ? 1 : Math.min(size, workers);
          await measure(state, pids, { ...fields, path: 'batch', batchSize: size }, () => runBatch(client, workload, requests, size, calls, config.batchWarmupCalls, config.pathBudgetMs, parallelism));
        }
      }
    }

    if (device === 'cpu' && config.transport) {
      const workload = state.workloads.find((candidate) => candidate.name === TOWN_DRIVE) ?? state.workloads[0];
      log(`transport experiments on ${workload.name}`);
      const startNoDelayServer = () => startServerProcess({ maps, device, cacheDir, workers, tcpNoDelay: true, timeoutMs: SERVER_START_TIMEOUT_MS });
      state.transport = await runTransportExperiments(target, startNoDelayServer, pids, workload, config.transport, workers);
      for (const variant of state.transport.variants) {
        log(`  ${variant.name}: p50 ${variant.latencyMs.p50.toFixed(3)} ms, p99 ${variant.latencyMs.p99.toFixed(3)} ms`);
      }
    }
    report.peakRssBytes = procMemoryBytes(server.pid, 'VmHWM');
  } finally {
    client.close();
    await server.stop();
  }
  state.servers.push(report);
}

/**
 * Runs the benchmark: builds the workloads, measures map loads in fresh processes, then every path
 * on every workload (in-process, then gRPC against a server in a child process).
 * @param command the command line to record with the results
 */
export async function runBench(config: BenchConfig, log: Logger, command: string): Promise<BenchResult> {
  const startedAt = new Date();
  const started = performance.now();
  const state: BenchState = {
    config, log, workloads: [], skipped: [], paths: [], inProcessRuns: new Map(), firstRasters: new Map(),
    consistency: [], servers: [], transport: null,
  };

  const townMapGeneratedMs = await buildWorkloads(state);
  if (state.workloads.length === 0) throw new Error('no workload could be built; see the skipped workloads above');
  const mapLoad = await measureMapLoads(state);
  await runInProcessPaths(state);
  await runServerPaths(state, 'cpu');
  if (state.paths.some((path) => path.device === 'cuda')) await runServerPaths(state, 'cuda');

  const nuplan = compareWithNuplan(state.workloads, state.inProcessRuns, state.paths);
  return {
    schemaVersion: RESULT_SCHEMA_VERSION,
    mode: config.mode,
    startedAt: startedAt.toISOString(),
    durationS: (performance.now() - started) / 1000,
    command,
    machine: machineInfo(),
    workloads: state.workloads.map((workload) => ({
      name: workload.name,
      description: workload.description,
      map: workload.map.name,
      steps: workload.scenes.length,
      meanObjects: workload.scenes.reduce((sum, scene) => sum + scene.agents.length, 0) / workload.scenes.length,
      rasterSize: [workload.settings.targetWidth, workload.settings.targetHeight, 4],
    })),
    skipped: state.skipped,
    townMapGeneratedMs,
    mapLoad,
    servers: state.servers,
    paths: state.paths,
    consistency: state.consistency,
    nuplan,
    transport: state.transport,
    targets: evaluateTargets(state.workloads, state.paths, nuplan, mapLoad),
  };
}
