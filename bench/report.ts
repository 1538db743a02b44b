import { pathLabel, type BenchResult, type PathResult } from './results.js';
import { median } from './stats.js';

const MB = 1000 * 1000;

function table(header: string[], rows: Array<Array<string | number>>): string {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => ' --- ').join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

function ms(value: number | null | undefined, digits = 3): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

function us(value: number): string {
  return Number.isFinite(value) ? value.toFixed(0) : '-';
}

function megabytes(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? '-' : `${(bytes / MB).toFixed(0)} MB`;
}

function metText(met: boolean | null): string {
  if (met === null) return 'not measured';
  return met ? 'yes' : 'no';
}

function latencyRows(paths: PathResult[]): Array<Array<string | number>> {
  return paths.map((path) => [
    path.workload, pathLabel(path), path.unit, path.latencyMs.count,
    ms(path.latencyMs.p50), ms(path.latencyMs.p90), ms(path.latencyMs.p99), ms(path.latencyMs.max),
    path.rastersPerSecond.toFixed(0) + (path.truncated ? ' (cut by time budget)' : ''),
    path.otherCpuCores === null ? '-' : path.otherCpuCores.toFixed(2),
  ]);
}

function stageRows(paths: PathResult[]): Array<Array<string | number>> {
  return paths.map((path) => {
    const s = path.stagesUs;
    return [
      path.workload, pathLabel(path), us(s.mapQuery.mean), us(s.roadmap.mean), us(s.agents.mean), us(s.baselines.mean),
      us(s.ego.mean), us(s.serialization.mean), us(s.serverTotal.mean), us(s.transport.mean),
    ];
  });
}

/** Formats the benchmark results as Markdown tables, in reading order. */
export function formatReport(result: BenchResult): string {
  const parts: string[] = [];
  const m = result.machine;
  parts.push(`# rasterd benchmark (${result.mode})`);
  parts.push(
    `${result.startedAt}, ${result.durationS.toFixed(0)} s. Machine: ${m.cpuModel}, ${m.cores} cores, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, ` +
    `Node.js ${m.node}, grpc-js ${m.grpcJs}, Linux ${m.kernel}. Command: \`${result.command}\`.`,
  );

  parts.push('## Workloads');
  parts.push(table(['workload', 'steps', 'objects per step', 'raster', 'description'], result.workloads.map((w) => [
    w.name, w.steps, w.meanObjects.toFixed(0), w.rasterSize.join('x'), w.description,
  ])));
  if (result.skipped.length > 0) {
    parts.push('Skipped:');
    parts.push(result.skipped.map((entry) => `- ${entry.what}: ${entry.reason}`).join('\n'));
  }

  parts.push('## Latency per path');
  parts.push('Client-observed time of one step (unit step) or one RasterizeBatch call (unit call) [ms]; rasters/s over the measured samples. Other CPU: mean CPU use of processes outside the benchmark meanwhile [cores]; above about 0.2 the row was disturbed.');
  parts.push(table(['workload', 'path', 'unit', 'n', 'p50', 'p90', 'p99', 'max', 'rasters/s', 'other CPU'], latencyRows(result.paths)));

  parts.push('## Stage split');
  parts.push('Mean per raster [us], from the rasterizer\'s own timers (include_timings). Transport is the client-observed time minus the server total: request encoding and parsing, response encoding, gRPC, HTTP/2, loopback and decoding. For batch rows the server total is the sum of the stage timers, because the total of a raster drawn by the worker pool includes its wait for a thread. Their transport is an estimate: the raster time of a call is taken as that sum over its rasters divided by the server\'s batch threads (perfect parallelism).');
  parts.push(table(['workload', 'path', 'map query', 'roadmap', 'agents', 'baselines', 'ego', 'serialization', 'server total', 'transport'], stageRows(result.paths)));

  parts.push('## Map load and memory');
  parts.push('Each load runs in a fresh process; peak RSS (VmHWM) includes Node.js and GDAL themselves.');
  parts.push(table(['map', 'vertices', 'cold (GDAL) median', 'cold runs', 'from cache median', 'cache runs', 'cache fill', 'peak RSS cold', 'peak RSS cache', 'RSS before load'], result.mapLoad.map((load) => [
    load.map, load.vertices, `${ms(load.coldMedianMs, 0)} ms`, load.coldMs.map((v) => v.toFixed(0)).join(', '),
    load.cacheMedianMs === null ? '-' : `${ms(load.cacheMedianMs, 0)} ms`, load.cacheMs.map((v) => v.toFixed(0)).join(', ') || '-',
    load.cacheFillMs === null ? '-' : `${ms(load.cacheFillMs, 0)} ms`,
    megabytes(load.coldPeakRssBytes), megabytes(load.cachePeakRssBytes), megabytes(load.baselineRssBytes),
  ])));
  if (result.townMapGeneratedMs !== null) parts.push(`The Las-Vegas-scale map was generated in this run in ${(result.townMapGeneratedMs / 1000).toFixed(1)} s.`);
  parts.push(table(['server', 'map load as logged [ms]', 'RSS after load', 'peak RSS of the run'], result.servers.map((server) => [
    `${server.device}, ${server.workers} batch threads`, Object.entries(server.mapLoads).map(([name, load]) => `${name} ${load.ms.toFixed(0)}${load.fromCache ? ' (snapshot)' : ''}`).join(', '),
    megabytes(server.rssAfterLoadBytes), megabytes(server.peakRssBytes),
  ])));

  parts.push('## Side by side with nuPlan');
  parts.push('nuPlan: RasterFeatureBuilder._compute_feature per scene from each parity set\'s reference.json, measured on a 2-core machine of this kind. rasterd: in-process CPU median over the passes. Ratio: nuPlan time / rasterd time.');
  const n = result.nuplan;
  parts.push(table(['workload', 'scenes', 'nuPlan median [ms]', 'rasterd in-process median [ms]', 'ratio median', 'ratio min', 'ratio max', 'nuPlan / unary p50'], n.sets.map((set) => [
    set.workload, set.scenes.length, ms(set.nuplanMedianMs, 2), ms(set.inProcessMedianMs), `${set.medianRatio.toFixed(1)}x`,
    `${set.minRatio.toFixed(1)}x`, `${set.maxRatio.toFixed(1)}x`, set.unaryRatio === null ? '-' : `${set.unaryRatio.toFixed(1)}x`,
  ])));
  if (n.overallMedianRatio !== null) parts.push(`Median ratio over all ${n.sets.reduce((sum, set) => sum + set.scenes.length, 0)} parity scenes: ${n.overallMedianRatio.toFixed(1)}x.`);
  parts.push(table(['nuPlan reference', 'nuPlan [ms per step]', 'rasterd in-process p50, Las-Vegas-scale drive [ms]', 'ratio'], [n.town, n.profile].map((ref) => [
    ref.note, ref.nuplanMsPerStep, ms(ref.inProcessMedianMs), ref.ratio === null ? '-' : `${ref.ratio.toFixed(0)}x`,
  ])));

  if (result.transport) {
    const t = result.transport;
    parts.push('## Transport');
    parts.push(
      `Round trip of one ${t.workload} step (${(t.responseBytes / 1000).toFixed(0)} kB response) or one RasterizeBatch call of 64 steps, per client option and server change; ` +
      `${t.rounds} interleaved rounds, each with ${t.steps} unary steps or ${t.batchCalls} batch calls per variant. ` +
      `The http2 and tcp rows send the same byte count from a bare Node.js server, as floors. Other processes used ${t.otherCpuCores === null ? 'an unknown share of the' : `${t.otherCpuCores.toFixed(2)}`} CPU cores meanwhile.`,
    );
    parts.push(table(['variant', 'server', 'options', 'p50 [ms]', 'p90 [ms]', 'p99 [ms]', 'max [ms]', 'transport p50 [us]', 'rasters/s', 'note'], t.variants.map((v) => [
      v.name, v.server, Object.keys(v.options).length === 0 ? '-' : `\`${JSON.stringify(v.options)}\``, ms(v.latencyMs.p50), ms(v.latencyMs.p90), ms(v.latencyMs.p99), ms(v.latencyMs.max),
      v.transportUs ? us(v.transportUs.p50) : '-', Number.isFinite(v.rastersPerSecond) ? v.rastersPerSecond.toFixed(0) : '-', v.note,
    ])));
  }

  if (result.consistency.length > 0) {
    const differing = result.consistency.filter((check) => !check.identical);
    parts.push(differing.length === 0
      ? `The first step of each workload came back over gRPC bit-identical to the in-process raster (${result.consistency.length} checks).`
      : `WARNING: gRPC rasters differ from the in-process ones on ${differing.map((check) => `${check.workload} (${check.device})`).join(', ')}.`);
  }

  parts.push('## Targets');
  parts.push(table(['target', 'goal', 'measured', 'met', 'shortfall', 'dominant stage'], result.targets.map((t) => [
    t.description, t.target, t.measured, metText(t.met), t.shortfall ?? '-', t.dominantStage ?? '-',
  ])));
  return `${parts.join('\n\n')}\n`;
}

/** Formats nuPlan's and rasterd's time for every parity scene. */
export function formatPerScene(result: BenchResult): string {
  const parts: string[] = ['## Per-scene ratios'];
  for (const set of result.nuplan.sets) {
    parts.push(`### ${set.workload} (median ${set.medianRatio.toFixed(1)}x)`);
    parts.push(table(['scene', 'nuPlan [ms]', 'rasterd in-process [ms]', 'ratio'], set.scenes.map((scene) => [
      scene.id, scene.nuplanMs.toFixed(2), scene.inProcessMs.toFixed(3), `${scene.ratio.toFixed(1)}x`,
    ])));
  }
  return `${parts.join('\n\n')}\n`;
}

/**
 * Formats the p50, p99 and rasters/s of several runs side by side, with their medians, for every
 * path that all runs measured.
 */
export function formatComparison(results: BenchResult[]): string {
  const runs = results.map((result, i) => `run ${i + 1} (${result.startedAt.slice(0, 16)}Z)`);
  const key = (path: PathResult): string => `${path.workload}|${pathLabel(path)}`;
  const rows: Array<Array<string | number>> = [];
  for (const first of results[0].paths) {
    const matches = results.map((result) => result.paths.find((path) => key(path) === key(first)));
    if (matches.some((match) => match === undefined)) continue;
    const found = matches as PathResult[];
    const p50 = found.map((path) => path.latencyMs.p50);
    const p99 = found.map((path) => path.latencyMs.p99);
    const rates = found.map((path) => path.rastersPerSecond);
    rows.push([
      first.workload, pathLabel(first), ...p50.map((v) => ms(v)), ms(median(p50)), ...p99.map((v) => ms(v)), ms(median(p99)),
      ...rates.map((v) => v.toFixed(0)), median(rates).toFixed(0),
    ]);
  }
  const header = [
    'workload', 'path',
    ...runs.map((run) => `p50 ${run}`), 'p50 median', ...runs.map((_, i) => `p99 run ${i + 1}`), 'p99 median',
    ...runs.map((_, i) => `rasters/s run ${i + 1}`), 'rasters/s median',
  ];
  return `${table(header, rows)}\n`;
}
