import { cpus, release, totalmem } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { StageTimings } from '../raster/scene.js';
import type { MapLoadResult } from './map-load.js';
import type { PathRun } from './path-run.js';
import { REPO_ROOT } from './paths.js';
import { mean, median, roundSignificant, summarize, type LatencySummary } from './stats.js';
import type { TransportResult } from './transport.js';

/** Version of the JSON layout below; bump it when a field changes meaning or is removed. */
export const RESULT_SCHEMA_VERSION = 1;

export type PathKind = 'in-process' | 'unary' | 'stream' | 'batch';

/** Mean and median of one stage over the rasters of a path [us]. */
export interface StageStat {
  mean: number;
  p50: number;
}

/** Time of one raster per stage [us]: the server's own timers, and the rest of the client-observed time as transport. */
export interface StageSplit {
  mapQuery: StageStat;
  roadmap: StageStat;
  agents: StageStat;
  baselines: StageStat;
  ego: StageStat;
  serialization: StageStat;
  serverTotal: StageStat;
  /** Client-observed time minus the server total: encoding, gRPC, HTTP/2, loopback and decoding. */
  transport: StageStat;
}

export const STAGE_NAMES = ['mapQuery', 'roadmap', 'agents', 'baselines', 'ego', 'serialization', 'transport'] as const;

/** Summary of one path on one workload. */
export interface PathResult {
  workload: string;
  path: PathKind;
  /** Scenes per RasterizeBatch call; null for the step paths. */
  batchSize: number | null;
  device: string;
  roadmapMode: 'exact' | 'tiles';
  /** Unit of one latency sample: one simulation step or one RasterizeBatch call. */
  unit: 'step' | 'call';
  latencyMs: LatencySummary;
  rastersPerSecond: number;
  stagesUs: StageSplit;
  truncated: boolean;
  /** Mean CPU use of other processes on the machine while the path ran [cores]; null where /proc is unavailable. */
  otherCpuCores: number | null;
  /** Every latency sample [ms], rounded to 4 significant digits. */
  samplesMs: number[];
}

/** nuPlan's time and rasterd's in-process time for one parity scene. */
export interface SceneComparison {
  id: string;
  nuplanMs: number;
  /** Median over the in-process passes [ms]. */
  inProcessMs: number;
  /** nuPlan time divided by rasterd time. */
  ratio: number;
}

export interface SetComparison {
  workload: string;
  scenes: SceneComparison[];
  medianRatio: number;
  minRatio: number;
  maxRatio: number;
  nuplanMedianMs: number;
  inProcessMedianMs: number;
  /** nuPlan's median divided by the unary gRPC p50; null when the unary path did not run. */
  unaryRatio: number | null;
}

/** A nuPlan figure that this benchmark did not measure itself. */
export interface QuotedReference {
  nuplanMsPerStep: number;
  note: string;
  /** rasterd's in-process median on the matching workload [ms]; null when it did not run. */
  inProcessMedianMs: number | null;
  ratio: number | null;
}

export interface NuplanComparison {
  sets: SetComparison[];
  /** Median of the per-scene ratios over every parity scene. */
  overallMedianRatio: number | null;
  town: QuotedReference;
  profile: QuotedReference;
}

export interface TargetResult {
  id: string;
  description: string;
  target: string;
  measured: string;
  /** null when the inputs were not measured. */
  met: boolean | null;
  /** How far off a missed target is, in words. */
  shortfall: string | null;
  /** The stage with the largest mean share, for latency and throughput targets. */
  dominantStage: string | null;
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  node: string;
  kernel: string;
  grpcJs: string;
}

export interface WorkloadInfo {
  name: string;
  description: string;
  map: string;
  steps: number;
  meanObjects: number;
  rasterSize: [number, number, number];
}

export interface ServerReport {
  device: string;
  /** Threads that draw RasterizeBatch requests (--workers). */
  workers: number;
  /** Map load time per map as the server logged it [ms], and whether it came from a snapshot. */
  mapLoads: Record<string, { ms: number; fromCache: boolean }>;
  /** Resident set once every map was loaded [bytes]. */
  rssAfterLoadBytes: number | null;
  /** Peak resident set over the whole run (VmHWM) [bytes]. */
  peakRssBytes: number | null;
}

export interface ConsistencyCheck {
  workload: string;
  device: string;
  /** Whether the gRPC raster of the first step has the same bits as the in-process one. */
  identical: boolean;
}

export interface BenchResult {
  schemaVersion: number;
  mode: string;
  startedAt: string;
  durationS: number;
  command: string;
  machine: MachineInfo;
  workloads: WorkloadInfo[];
  skipped: Array<{ what: string; reason: string }>;
  /** Time to write the Las-Vegas-scale map; null when the cached copy was used. */
  townMapGeneratedMs: number | null;
  mapLoad: MapLoadResult[];
  servers: ServerReport[];
  paths: PathResult[];
  consistency: ConsistencyCheck[];
  nuplan: NuplanComparison;
  transport: TransportResult | null;
  targets: TargetResult[];
}

export function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) cpuModel = match[1].trim();
  } catch {
    // Not Linux: keep os.cpus()'s model.
  }
  let grpcJs = 'unknown';
  try {
    grpcJs = JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', '@grpc', 'grpc-js', 'package.json'), 'utf8')).version;
  } catch {
    // Left as unknown.
  }
  return { cpuModel, cores: cpus().length, memoryBytes: totalmem(), node: process.version, kernel: release(), grpcJs };
}

function stageStat(values: number[]): StageStat {
  return { mean: roundSignificant(mean(values)), p50: roundSignificant(median(values)) };
}

function stageSplit(stages: StageTimings[], transportUs: number[]): StageSplit {
  const pick = (key: keyof StageTimings): StageStat => stageStat(stages.map((stage) => stage[key]));
  return {
    mapQuery: pick('mapQuery'), roadmap: pick('roadmap'), agents: pick('agents'), baselines: pick('baselines'),
    ego: pick('ego'), serialization: pick('serialization'), serverTotal: pick('total'), transport: stageStat(transportUs),
  };
}

/** Summarizes a raw run into its table row. */
export function pathResult(
  run: PathRun,
  fields: { workload: string; path: PathKind; batchSize: number | null; device: string; roadmapMode: 'exact' | 'tiles'; otherCpuCores: number | null },
): PathResult {
  const latency = summarize(run.samplesMs);
  const rounded = Object.fromEntries(Object.entries(latency).map(([key, value]) => [key, key === 'count' ? value : roundSignificant(value)])) as unknown as LatencySummary;
  return {
    ...fields,
    unit: fields.path === 'batch' ? 'call' : 'step',
    latencyMs: rounded,
    rastersPerSecond: roundSignificant(run.elapsedMs > 0 ? (run.rasters * 1000) / run.elapsedMs : NaN),
    stagesUs: stageSplit(run.stages, run.transportUs),
    truncated: run.truncated,
    otherCpuCores: fields.otherCpuCores === null ? null : roundSignificant(fields.otherCpuCores, 2),
    samplesMs: run.samplesMs.map((sample) => roundSignificant(sample)),
  };
}

/** Short name of a path for tables and plots, e.g. "batch-64 cpu" or "unary cpu tiles". */
export function pathLabel(result: Pick<PathResult, 'path' | 'batchSize' | 'device' | 'roadmapMode'>): string {
  const name = result.path === 'batch' ? `batch-${result.batchSize}` : result.path;
  return `${name} ${result.device}${result.roadmapMode === 'tiles' ? ' tiles' : ''}`;
}

/** Returns the stage with the largest mean time per raster. */
export function dominantStage(split: StageSplit): { name: string; meanUs: number } {
  let best: { name: string; meanUs: number } = { name: STAGE_NAMES[0], meanUs: -Infinity };
  for (const name of STAGE_NAMES) {
    if (split[name].mean > best.meanUs) best = { name, meanUs: split[name].mean };
  }
  return best;
}
