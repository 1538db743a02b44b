import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { QUICK_CONFIG, runBench, type BenchConfig } from './core.js';
import { writeOutputs } from './output.js';
import { formatPerScene, formatReport } from './report.js';
import type { BenchResult } from './results.js';
import { TOWN_DRIVE } from './workloads.js';

/**
 * Runs the benchmark core on a tiny workload (3 steps of town-a and of a drive through a 3x3-block
 * town) with the server in a child process, and checks the shape of what it reports. Needs the
 * build in dist/ (`npx tsc -p tsconfig.json`), as `npm test` makes it.
 */
const STEPS = 3;

let workDir: string;
let result: BenchResult;
let lines: string[];

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'rasterd-bench-test-'));
  const config: BenchConfig = {
    ...QUICK_CONFIG,
    mode: 'test',
    paritySets: ['town-a'],
    maxParitySteps: STEPS,
    town: { steps: STEPS, mapOptions: { blocksX: 3, blocksY: 3 } },
    warmupSteps: 1,
    batches: [{ size: 1, calls: 2 }, { size: 4, calls: 1 }],
    mapLoadRuns: 1,
    transport: { steps: 2, batchCalls: 1, rounds: 1, warmupSteps: 1, budgetMs: 10_000 },
    cacheDir: join(workDir, 'cache'),
  };
  lines = [];
  result = await runBench(config, (line) => lines.push(line), 'vitest bench/bench.test.ts');
}, 90_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('benchmark core on a tiny workload', () => {
  it('replays both workloads', () => {
    expect(result.schemaVersion).toBe(1);
    expect(result.workloads.map((workload) => workload.name)).toEqual(['town-a', TOWN_DRIVE]);
    for (const workload of result.workloads) {
      expect(workload.steps).toBe(STEPS);
      expect(workload.rasterSize).toEqual([224, 224, 4]);
    }
    const townDrive = result.workloads.find((workload) => workload.name === TOWN_DRIVE)!;
    expect(townDrive.meanObjects).toBeGreaterThanOrEqual(50);
    expect(townDrive.meanObjects).toBeLessThanOrEqual(150);
  });

  it('reports every path with stats', () => {
    const labels = result.paths.map((path) => `${path.workload} ${path.path}${path.batchSize ?? ''}`);
    for (const workload of ['town-a', TOWN_DRIVE]) {
      for (const path of ['in-process', 'unary', 'stream', 'batch1', 'batch4']) expect(labels).toContain(`${workload} ${path}`);
    }
    for (const path of result.paths) {
      const name = `${path.workload} ${path.path}`;
      expect(path.latencyMs.count, name).toBe(path.samplesMs.length);
      expect(path.latencyMs.count, name).toBeGreaterThan(0);
      for (const key of ['p50', 'p90', 'p99', 'max'] as const) expect(path.latencyMs[key], `${name} ${key}`).toBeGreaterThan(0);
      expect(path.latencyMs.p50, name).toBeLessThanOrEqual(path.latencyMs.p99);
      expect(path.latencyMs.p99, name).toBeLessThanOrEqual(path.latencyMs.max);
      expect(path.rastersPerSecond, name).toBeGreaterThan(0);
      expect(path.stagesUs.serverTotal.mean, name).toBeGreaterThan(0);
      expect(Object.keys(path.stagesUs).sort()).toEqual(['agents', 'baselines', 'ego', 'mapQuery', 'roadmap', 'serialization', 'serverTotal', 'transport']);
    }
  });

  it('runs or explains the tiles mode', () => {
    for (const path of ['in-process', 'unary']) {
      const measured = result.paths.some((row) => row.workload === 'town-a' && row.path === path && row.roadmapMode === 'tiles');
      const explained = result.skipped.some((entry) => entry.what.includes('tiles') && entry.what.includes(path === 'unary' ? 'gRPC' : path));
      expect(measured || explained, path).toBe(true);
    }
  });

  it('matches gRPC and in-process rasters', () => {
    expect(result.consistency.map((check) => check.workload).sort()).toEqual([TOWN_DRIVE, 'town-a'].sort());
    for (const check of result.consistency) expect(check.identical, check.workload).toBe(true);
  });

  it('compares with nuPlan per scene', () => {
    const [townA] = result.nuplan.sets;
    expect(townA.workload).toBe('town-a');
    expect(townA.scenes).toHaveLength(STEPS);
    for (const scene of townA.scenes) {
      expect(scene.nuplanMs, scene.id).toBeGreaterThan(0);
      expect(scene.ratio, scene.id).toBeCloseTo(scene.nuplanMs / scene.inProcessMs, 6);
    }
    expect(result.nuplan.overallMedianRatio).toBeGreaterThan(0);
    expect(result.nuplan.profile.nuplanMsPerStep).toBe(112);
    expect(result.nuplan.town.nuplanMsPerStep).toBe(166);
  });

  it('measures map loads and server memory', () => {
    const [load] = result.mapLoad;
    expect(load.map).toBe(TOWN_DRIVE);
    expect(load.coldMs).toHaveLength(1);
    expect(load.cacheMs).toHaveLength(1);
    expect(load.coldPeakRssBytes).toBeGreaterThan(load.baselineRssBytes);
    expect(result.servers).toHaveLength(1);
    expect(result.servers[0].peakRssBytes).toBeGreaterThan(0);
    expect(Object.keys(result.servers[0].mapLoads).sort()).toEqual([TOWN_DRIVE, 'town-a'].sort());
  });

  it('runs the transport experiments', () => {
    const names = result.transport!.variants.map((variant) => variant.name);
    expect(names).toContain('grpc default');
    expect(names).toContain('grpc window 16 MiB, server nodelay');
    expect(names).toContain('tcp');
    for (const variant of result.transport!.variants) expect(variant.latencyMs.count, variant.name).toBeGreaterThan(0);
  });

  it('evaluates every target', () => {
    expect(result.targets.map((target) => target.id)).toEqual([
      'in-process-speedup', 'unary-p50', 'unary-p99', 'batch-throughput', 'town-load-cold', 'town-load-cache', 'town-load-rss',
    ]);
    for (const target of result.targets) {
      expect(target.met, target.id).not.toBeNull();
      if (target.met === false) expect(target.shortfall, target.id).toBeTruthy();
    }
  });

  it('writes JSON, SVG and the report', () => {
    const outDir = join(workDir, 'results');
    const { written } = writeOutputs(result, outDir, true);
    const latest = join(outDir, 'latest-quick.json');
    expect(written).toContain(latest);
    expect(JSON.parse(readFileSync(latest, 'utf8'))).toEqual(JSON.parse(JSON.stringify(result)));
    expect(readFileSync(join(outDir, 'latest-quick.svg'), 'utf8')).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(existsSync(join(outDir, 'latest.json'))).toBe(false);

    const report = formatReport(result);
    for (const heading of ['## Latency per path', '## Stage split', '## Map load and memory', '## Side by side with nuPlan', '## Transport', '## Targets']) {
      expect(report).toContain(heading);
    }
    expect(formatPerScene(result)).toContain('town-a-11-0000');
  });
});
