// The device check's driver (run by device-check.sh with the bundled node binary): replays the
// parity sets that prepare-device-bundle.mjs packed through the addon, compares every raster bit
// for bit with nuPlan's, and measures batch throughput. Uses Node.js built-ins only.
//
// Usage: node device-check.mjs --addon FILE --fixtures DIR --out DIR [--batches 1,8,64,256]
//          [--runs 15] [--warmup 3] [--build-info FILE] [--self-test]
// Writes DIR/gpu-report.json. Exits 1 when a raster differs or the addon cannot run.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';

const { values: options } = parseArgs({
  options: {
    addon: { type: 'string' },
    fixtures: { type: 'string' },
    out: { type: 'string' },
    batches: { type: 'string', default: '1,8,64,256' },
    runs: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '3' },
    'build-info': { type: 'string' },
    'self-test': { type: 'boolean', default: false },
  },
});
for (const name of ['addon', 'fixtures', 'out']) {
  if (!options[name]) {
    console.error(`device-check: --${name} is required`);
    process.exit(2);
  }
}

const BATCH_FIELDS = {
  params: Float64Array, polygonCounts: Uint32Array, polygonRanges: Uint32Array, polygonColors: Float32Array,
  baselineCounts: Uint32Array, baselineRanges: Uint32Array, agentCounts: Uint32Array, agents: Float64Array,
};
/** Throughput targets at batch 256 on an H200 [rasters/s]. */
const TARGETS = { deviceResident: 50_000, pinnedHost: 20_000 };

const log = (message) => console.log(`device-check: ${message}`);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

function readTyped(path, Type) {
  const bytes = readFileSync(path);
  // Copy into a fresh, aligned buffer: a Buffer may sit at any offset of a shared pool.
  return new Type(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Loads one parity set: its packed batch, per-scene offsets into it, and nuPlan's rasters. */
function loadSet(dir, entry, mapId) {
  const batch = {};
  for (const [field, Type] of Object.entries(BATCH_FIELDS)) batch[field] = readTyped(join(dir, `${field}.bin`), Type);
  const scenes = entry.sceneIds.length;
  batch.mapIds = new Int32Array(scenes).fill(mapId);
  const offsets = { polygon: [0], baseline: [0], agent: [0] };
  for (let s = 0; s < scenes; s++) {
    offsets.polygon.push(offsets.polygon[s] + batch.polygonCounts[s]);
    offsets.baseline.push(offsets.baseline[s] + batch.baselineCounts[s]);
    offsets.agent.push(offsets.agent[s] + batch.agentCounts[s]);
  }
  const expected = entry.sceneIds.map((id) => {
    const bytes = gunzipSync(readFileSync(join(dir, 'expected', `${id}.f32.gz`)));
    return new Uint32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  });
  return { ...entry, batch, offsets, expected, mapId };
}

/** Builds a batch of the given scenes, each named by its set and index, concatenated in order. */
function sliceBatch(picks) {
  const parts = { params: [], mapIds: [], polygonCounts: [], polygonRanges: [], polygonColors: [], baselineCounts: [], baselineRanges: [], agentCounts: [], agents: [] };
  for (const { set, index } of picks) {
    const { batch, offsets } = set;
    const p0 = offsets.polygon[index], p1 = offsets.polygon[index + 1];
    const b0 = offsets.baseline[index], b1 = offsets.baseline[index + 1];
    const a0 = offsets.agent[index], a1 = offsets.agent[index + 1];
    parts.params.push(batch.params.subarray(13 * index, 13 * index + 13));
    parts.mapIds.push(Int32Array.of(set.mapId));
    parts.polygonCounts.push(Uint32Array.of(p1 - p0));
    parts.polygonRanges.push(batch.polygonRanges.subarray(2 * p0, 2 * p1));
    parts.polygonColors.push(batch.polygonColors.subarray(p0, p1));
    parts.baselineCounts.push(Uint32Array.of(b1 - b0));
    parts.baselineRanges.push(batch.baselineRanges.subarray(2 * b0, 2 * b1));
    parts.agentCounts.push(Uint32Array.of(a1 - a0));
    parts.agents.push(batch.agents.subarray(5 * a0, 5 * a1));
  }
  const types = { ...BATCH_FIELDS, mapIds: Int32Array };
  const batch = {};
  for (const [field, list] of Object.entries(parts)) {
    const length = list.reduce((sum, part) => sum + part.length, 0);
    const joined = new types[field](length);
    let offset = 0;
    for (const part of list) {
      joined.set(part, offset);
      offset += part.length;
    }
    batch[field] = joined;
  }
  return batch;
}

/** Compares scene k of `out` with nuPlan's raster. Returns null when they are identical, else a description. */
function compareScene(set, sceneIndex, out, k) {
  const size = set.rows * set.cols * 4;
  const actual = new Uint32Array(out.buffer, out.byteOffset + 4 * k * size, size);
  const expected = set.expected[sceneIndex];
  const perChannel = [0, 0, 0, 0];
  let differing = 0;
  for (let i = 0; i < size; i++) {
    if (actual[i] !== expected[i]) {
      differing++;
      perChannel[i % 4]++;
    }
  }
  return differing === 0 ? null : `${set.sceneIds[sceneIndex]}: ${differing} values differ (per channel ${perChannel.join(', ')})`;
}

function checkParity(addon, set) {
  const scenes = set.sceneIds.length;
  const size = set.rows * set.cols * 4;
  const result = { set: set.name, scenes, rows: set.rows, cols: set.cols };
  const mismatches = [];
  const all = [...Array(scenes).keys()].map((index) => ({ set, index }));

  // The whole set as one batch, with the default band height and with 7-row bands.
  for (const [label, bandRows] of [['wholeBatch', undefined], ['bandRows7', 7]]) {
    const out = new Float32Array(scenes * size);
    const timings = addon.rasterizeBatch(sliceBatch(all), out, bandRows === undefined ? undefined : { bandRows });
    let exact = 0;
    for (let s = 0; s < scenes; s++) {
      const problem = compareScene(set, s, out, s);
      if (problem === null) exact++;
      else mismatches.push(`${label} ${problem}`);
    }
    result[label] = { exact, bandRows: timings.bandRows, kernelMs: timings.kernelMs };
  }

  // Single-scene batches for the first ten scenes.
  let exactSingles = 0;
  const singles = Math.min(10, scenes);
  for (let s = 0; s < singles; s++) {
    const out = new Float32Array(size);
    addon.rasterizeBatch(sliceBatch([{ set, index: s }]), out);
    const problem = compareScene(set, s, out, 0);
    if (problem === null) exactSingles++;
    else mismatches.push(`single ${problem}`);
  }
  result.singles = { exact: exactSingles, of: singles };
  result.mismatches = mismatches.slice(0, 12);
  result.ok = mismatches.length === 0;
  log(`parity ${set.name}: ${result.wholeBatch.exact}/${scenes} exact in one batch, ${result.bandRows7.exact}/${scenes} with 7-row bands, ` +
    `${exactSingles}/${singles} as single scenes`);
  for (const line of result.mismatches) log(`  ${line}`);
  return result;
}

/** Measures median timings of `runs` calls after `warmup` calls. A null `out` leaves the rasters on the device. */
function measure(addon, batch, scenes, out, runs, warmup) {
  for (let i = 0; i < warmup; i++) addon.rasterizeBatch(batch, out);
  const wall = [], kernel = [], gpu = [], download = [], prepare = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    const timings = addon.rasterizeBatch(batch, out);
    wall.push(performance.now() - started);
    kernel.push(timings.kernelMs);
    gpu.push(timings.uploadMs + timings.kernelMs + timings.downloadMs);
    download.push(timings.downloadMs);
    prepare.push(timings.prepareMs);
  }
  const wallMs = median(wall);
  return {
    medianWallMs: wallMs,
    medianPrepareMs: median(prepare),
    medianKernelMs: median(kernel),
    medianDownloadMs: median(download),
    medianGpuMs: median(gpu),
    rastersPerSecond: scenes / (wallMs / 1000),
    gpuRastersPerSecond: scenes / (median(gpu) / 1000),
    runs,
  };
}

function benchmark(addon, sets, batches, runs, warmup) {
  const pool = [];
  for (const set of sets) {
    if (set.rows !== 224 || set.cols !== 224) continue;
    for (let index = 0; index < set.sceneIds.length; index++) pool.push({ set, index });
  }
  if (pool.length === 0) return [];
  const results = [];
  for (const scenes of batches) {
    const picks = Array.from({ length: scenes }, (_, i) => pool[i % pool.length]);
    const batch = sliceBatch(picks);
    const size = 224 * 224 * 4;
    const pinned = addon.allocateHostBuffer(scenes * size);
    const pageable = new Float32Array(scenes * size);
    const entry = {
      scenes,
      deviceResident: measure(addon, batch, scenes, null, runs, warmup),
      pinnedHost: measure(addon, batch, scenes, pinned, runs, warmup),
      pageableHost: measure(addon, batch, scenes, pageable, runs, warmup),
    };
    // The benchmark's own rasters must be right too.
    let exact = 0;
    picks.forEach((pick, k) => {
      if (compareScene(pick.set, pick.index, pinned, k) === null) exact++;
    });
    entry.pinnedHostExact = exact;
    results.push(entry);
    const rate = (m) => `${Math.round(m.rastersPerSecond)}/s (median ${m.medianWallMs.toFixed(3)} ms, kernels ${m.medianKernelMs.toFixed(3)} ms)`;
    log(`batch ${scenes}: on device ${rate(entry.deviceResident)}; to pinned host ${rate(entry.pinnedHost)}; ` +
      `to pageable host ${rate(entry.pageableHost)}; ${exact}/${scenes} exact`);
  }
  return results;
}

function main() {
  const report = {
    startedAt: new Date().toISOString(),
    mode: options['self-test'] ? 'self-test (CPU emulation)' : 'cuda',
    node: process.version,
    addonPath: resolve(options.addon),
    build: null,
    benchmarkScope: 'replays batches packed by prepare-device-bundle.mjs: the TypeScript map query is not timed; ' +
      'wall time covers host preparation (poses, agent corners, ring lists), upload, kernels and the copy back',
    ok: false,
  };
  mkdirSync(options.out, { recursive: true });
  const reportPath = join(options.out, 'gpu-report.json');
  const save = () => writeFileSync(reportPath, `${JSON.stringify(report, (_, value) => (typeof value === 'bigint' ? value.toString() : value), 1)}\n`);

  try {
    if (options['build-info'] && existsSync(options['build-info'])) report.build = JSON.parse(readFileSync(options['build-info'], 'utf8'));
    const addon = createRequire(import.meta.url)(resolve(options.addon));
    report.backend = addon.backend;
    report.probe = addon.probe();
    log(`addon ${report.addonPath} (${addon.backend}); probe: ${JSON.stringify(report.probe)}`);
    if (addon.backend === 'cuda' && !report.probe.available) throw new Error(`no usable CUDA device: ${report.probe.reason}`);

    const manifest = JSON.parse(readFileSync(join(options.fixtures, 'manifest.json'), 'utf8'));
    const mapIds = {};
    for (const [name, file] of Object.entries(manifest.maps)) mapIds[name] = addon.registerMap(readTyped(join(options.fixtures, file), Float64Array));
    const sets = manifest.sets.map((entry) => loadSet(join(options.fixtures, entry.name), entry, mapIds[entry.map]));

    report.parity = sets.map((set) => checkParity(addon, set));
    const batches = options.batches.split(',').map(Number);
    report.bench = benchmark(addon, sets, batches, Number(options.runs), Number(options.warmup));

    const at256 = report.bench.find((entry) => entry.scenes === 256);
    if (at256) {
      report.targets = {
        deviceResident: { target: TARGETS.deviceResident, measured: at256.deviceResident.rastersPerSecond, met: at256.deviceResident.rastersPerSecond >= TARGETS.deviceResident },
        pinnedHost: { target: TARGETS.pinnedHost, measured: at256.pinnedHost.rastersPerSecond, met: at256.pinnedHost.rastersPerSecond >= TARGETS.pinnedHost },
      };
    }
    const benchExact = report.bench.every((entry) => entry.pinnedHostExact === entry.scenes);
    report.ok = report.parity.every((entry) => entry.ok) && benchExact;
    const exact = report.parity.map((entry) => `${entry.set} ${entry.wholeBatch.exact}/${entry.scenes}`).join(', ');
    log(`${report.ok ? 'PASS' : 'FAIL'}: ${exact}`);
  } catch (error) {
    report.error = error instanceof Error ? (error.stack ?? error.message) : String(error);
    log(`FAIL: ${report.error}`);
  }
  report.finishedAt = new Date().toISOString();
  save();
  log(`wrote ${reportPath}`);
  process.exit(report.ok ? 0 : 1);
}

main();
