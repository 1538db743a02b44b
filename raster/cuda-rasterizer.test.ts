import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { readMap } from '../maps/gpkg-reader.js';
import type { MapData } from '../maps/map-data.js';
import { diffRasters, expectedRaster, LOCAL_FIXTURES, loadParitySet, sceneOf, settingsOf, SHARED_FIXTURES, type ParitySet } from '../test/fixtures.js';
import { CpuRasterizer } from './cpu-rasterizer.js';
import { ADDON_PATHS, CudaRasterizer, loadCudaAddon, type CudaAddon } from './cuda-rasterizer.js';
import { findCmake, findNvcc } from './cuda/toolchain.mjs';
import { native } from './native.js';
import type { SceneJob } from './scene.js';
import { createRandom } from '../maps/seeded-random.js';

/**
 * The CUDA rasterizer: its build, the CPU emulation of its kernels against nuPlan's rasters and
 * OpenCV's primitives, and, where a device is usable, the GPU itself.
 */
const SETS = ['town-a', 'town-a-config', 'town-a-layers', 'av2-pit-7fab2350'];
const sharedMaps = join(SHARED_FIXTURES, 'maps');
const mapsRoot = existsSync(join(sharedMaps, 'nuplan-maps-v1.0.json')) ? sharedMaps : join(LOCAL_FIXTURES, 'maps');

const nvcc = findNvcc();
const cmake = findCmake();
const emulationAddon = loadCudaAddon('emulation');
const emulationMissing = emulationAddon instanceof Error ? emulationAddon.message : '';
const probe = CudaRasterizer.probe();

const maps = new Map<string, Promise<MapData>>();
function mapOf(name: string): Promise<MapData> {
  let map = maps.get(name);
  if (!map) {
    map = readMap(join(mapsRoot, name, '1.0.0', 'map.gpkg'), { name, version: '1.0.0' });
    maps.set(name, map);
  }
  return map;
}

async function jobsOf(set: ParitySet): Promise<Array<SceneJob & { map: MapData }>> {
  const map = await mapOf(set.map);
  const settings = settingsOf(set);
  return set.scenes.map((scene) => ({ mapName: set.map, map, scene: sceneOf(scene), settings }));
}

/** Compares each result with nuPlan's raster; returns one line per differing scene. */
function mismatches(set: ParitySet, results: Array<{ data: Float32Array; shape: number[] }>): string[] {
  const failures: string[] = [];
  results.forEach((result, i) => {
    const scene = set.scenes[i];
    const diff = diffRasters(expectedRaster(set, scene.id), result.data, result.shape[1]);
    if (diff.differing > 0) failures.push(`${scene.id}: ${diff.differing} values differ (per channel ${diff.perChannel}); first ${diff.first.join(', ')}`);
  });
  return failures;
}


/** Returns a fixed-point coordinate near an image side of `limit` px: inside, on pixel edges, far outside, or at the int32 limits. */
function coordinate(next: () => number, limit: number, shift: number): number {
  const one = 2 ** shift;
  const mode = next();
  if (mode < 0.55) return Math.round((next() * (limit + 8) - 4) * one);
  if (mode < 0.7) return (Math.floor(next() * (limit + 9)) - 4) * one + (next() < 0.5 ? one / 2 : 0);
  if (mode < 0.85) return Math.round((next() * 4 - 2) * limit * one);
  if (mode < 0.95) return Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round((next() * 2 - 1) * Math.min(2 ** 31, one * 3000))));
  return next() < 0.5 ? -(2 ** 31) : 2 ** 31 - 1;
}

/** Returns random vertices with repeated points, horizontal edges and far-away points mixed in. */
function randomPoints(next: () => number, count: number, rows: number, cols: number, shift: number): Int32Array {
  const points = new Int32Array(2 * count);
  for (let i = 0; i < count; i++) {
    const repeat = i > 0 && next() < 0.15;
    const horizontal = i > 0 && !repeat && next() < 0.15;
    points[2 * i] = repeat ? points[2 * i - 2] : coordinate(next, cols, shift);
    points[2 * i + 1] = horizontal ? points[2 * i - 1] : coordinate(next, rows, shift);
  }
  return points;
}

/** Returns an image with some pixels already set, so that pixels a primitive must leave alone are checked too. */
function noisyImage(next: () => number, rows: number, cols: number): Float32Array {
  const image = new Float32Array(rows * cols);
  for (let i = 0; i < image.length; i++) image[i] = next() < 0.2 ? 0.25 : 0;
  return image;
}

function differingPixels(a: Float32Array, b: Float32Array): number {
  let count = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) count++;
  return count;
}

describe('CUDA addon build', () => {
  const nvccReason = nvcc === null ? ' (skipped: nvcc is not in PATH, /usr/local/cuda/bin or /usr/local/bin)' : '';
  it.skipIf(nvcc === null)(`builds rasterd_cuda.node where nvcc is present${nvccReason}`, () => {
    expect(existsSync(ADDON_PATHS.cuda), `${ADDON_PATHS.cuda} is missing although ${nvcc} exists; run node raster/cuda/build.mjs`).toBe(true);
    const addon = loadCudaAddon('cuda');
    expect(addon instanceof Error ? addon.message : addon.backend).toBe('cuda');
  });

  const cmakeReason = cmake === null && emulationMissing ? ' (skipped: cmake is not on PATH, so build.mjs cannot build it)' : '';
  it.skipIf(cmakeReason !== '')(`builds the CPU emulation addon${cmakeReason}`, () => {
    expect(emulationMissing).toBe('');
    expect((emulationAddon as CudaAddon).backend).toBe('emulation');
  });

  it('skips the CUDA addon without nvcc', () => {
    const out = mkdtempSync(join(tmpdir(), 'rasterd-cuda-build-'));
    try {
      const run = spawnSync(process.execPath, [join(dirname(fileURLToPath(import.meta.url)), 'cuda', 'build.mjs'), '--only', 'cuda', '--out', out], {
        encoding: 'utf8', env: { ...process.env, RASTERD_NVCC: 'none' },
      });
      expect(run.status).toBe(0);
      expect(run.stdout).toContain('not building the cuda addon: nvcc is not in');
      expect(existsSync(join(out, 'cuda'))).toBe(false);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it.skipIf(nvcc === null)(`runs the CUDA build's host code like raster/native${nvccReason}`, () => {
    const addon = loadCudaAddon('cuda') as CudaAddon;
    const points = Int32Array.of(3 << 12, 1 << 12, 40 << 12, 9 << 12, 21 << 12, 30 << 12, -5 << 12, 12 << 12);
    const expected = new Float32Array(32 * 48);
    const actual = new Float32Array(32 * 48);
    native.fillPoly(expected, 32, 48, points, 0.5, 12);
    addon.fillPolyBands(actual, 32, 48, points, 0.5, 12, 7);
    expect(expected.includes(0.5)).toBe(true);
    expect(differingPixels(expected, actual)).toBe(0);
  });

  it('probe returns a reason instead of throwing', () => {
    expect(typeof probe.available).toBe('boolean');
    expect(probe.reason.length).toBeGreaterThan(0);
    if (!probe.available) {
      expect(probe.gpuName).toBe('');
      expect(probe.memoryBytes).toBe(0);
    }
  });
});

describe.skipIf(emulationMissing !== '')(`CPU emulation of the CUDA kernels${emulationMissing ? ` (skipped: ${emulationMissing})` : ''}`, () => {
  const addon = emulationAddon as CudaAddon;

  describe.each(SETS)('parity set %s', (name) => {
    const set = loadParitySet(name);
    const skipReason = set === null ? ` (skipped: ${name} is not in test/fixtures or ../shared/fixtures)` : '';

    it.skipIf(set === null)(`matches nuPlan in one batch${skipReason}`, async () => {
      const results = await new CudaRasterizer({ backend: 'emulation' }).rasterizeBatch(await jobsOf(set!));
      const failures = mismatches(set!, results);
      console.log(`${name}: ${set!.scenes.length - failures.length}/${set!.scenes.length} scenes bit-identical to nuPlan (emulated GPU, one batch)`);
      expect(failures).toEqual([]);
    }, 120_000);

    it.skipIf(set === null)(`matches nuPlan scene by scene with 5-row bands${skipReason}`, async () => {
      const rasterizer = new CudaRasterizer({ backend: 'emulation', bandRows: 5 });
      const results = (await jobsOf(set!)).map((job) => rasterizer.rasterize(job.map, job.scene, job.settings));
      expect(mismatches(set!, results)).toEqual([]);
    }, 120_000);
  });

  it('keeps job order across maps and sizes', async () => {
    const sets = SETS.map((name) => loadParitySet(name)).filter((set): set is ParitySet => set !== null);
    const picks: Array<{ set: ParitySet; index: number }> = [];
    for (let index = 0; index < 6; index++) for (const set of sets) if (index < set.scenes.length) picks.push({ set, index });
    const jobsBySet = new Map<ParitySet, Array<SceneJob & { map: MapData }>>();
    for (const set of sets) jobsBySet.set(set, await jobsOf(set));

    const results = await new CudaRasterizer({ backend: 'emulation' }).rasterizeBatch(picks.map(({ set, index }) => jobsBySet.get(set)![index]));
    const failures = picks.flatMap(({ set, index }, k) => {
      const scene = set.scenes[index];
      const diff = diffRasters(expectedRaster(set, scene.id), results[k].data, results[k].shape[1]);
      return diff.differing > 0 ? [`job ${k} (${scene.id}): ${diff.differing} values differ`] : [];
    });
    expect(new Set(picks.map(({ set }) => set.config.target_width ?? 224)).size).toBeGreaterThan(1);
    expect(failures).toEqual([]);
  }, 120_000);

  it('fills random polygons like cv2.fillPoly', () => {
    const next = createRandom(20240611);
    const failures: string[] = [];
    let drawn = 0;
    for (let trial = 0; trial < 4000; trial++) {
      const rows = 1 + Math.floor(next() * 48);
      const cols = 1 + Math.floor(next() * 48);
      const shift = [0, 9, 12, 13, 16][Math.floor(next() * 5)];
      const points = randomPoints(next, 1 + Math.floor(next() * 12), rows, cols, shift);
      const bandRows = 1 + Math.floor(next() * 32);
      // With shift 0, far-away rows would make OpenCV's own row loop run for minutes.
      if (shift === 0 && points.some((value) => Math.abs(value) > 1e6)) continue;
      const expected = noisyImage(next, rows, cols);
      const actual = expected.slice();
      native.fillPoly(expected, rows, cols, points, 0.75, shift);
      addon.fillPolyBands(actual, rows, cols, points, 0.75, shift, bandRows);
      if (expected.includes(0.75)) drawn++;
      const differing = differingPixels(expected, actual);
      if (differing > 0) failures.push(`trial ${trial}: ${rows} x ${cols}, shift ${shift}, bands of ${bandRows}: ${differing} pixels differ for [${points.join(', ')}]`);
    }
    expect(drawn).toBeGreaterThan(1500);
    expect(failures.slice(0, 5)).toEqual([]);
  });

  it('fills rows with more than 16 crossings', () => {
    const next = createRandom(7);
    const failures: string[] = [];
    for (let trial = 0; trial < 300; trial++) {
      const shift = [0, 12, 16][trial % 3];
      const one = 2 ** shift;
      const teeth = 18 + Math.floor(next() * 60);
      const points = new Int32Array(2 * teeth);
      for (let k = 0; k < teeth; k++) {
        points[2 * k] = Math.round(next() * 40 * one);
        points[2 * k + 1] = Math.round((k % 2 ? 38 : 2) * one + next() * one);
      }
      const expected = new Float32Array(40 * 40);
      const actual = new Float32Array(40 * 40);
      native.fillPoly(expected, 40, 40, points, 1, shift);
      addon.fillPolyBands(actual, 40, 40, points, 1, shift, 1 + (trial % 32));
      const differing = differingPixels(expected, actual);
      if (differing > 0) failures.push(`trial ${trial}: shift ${shift}, ${teeth} vertices: ${differing} pixels differ`);
    }
    expect(failures).toEqual([]);
  });

  it('draws random open polylines like cv2.polylines', () => {
    const next = createRandom(99);
    const failures: string[] = [];
    for (let trial = 0; trial < 3000; trial++) {
      const rows = 1 + Math.floor(next() * 48);
      const cols = 1 + Math.floor(next() * 48);
      const shift = [0, 13, 13, 16][Math.floor(next() * 4)];
      const thickness = [1, 1, 2, 2, 3, 4, 7][Math.floor(next() * 7)];
      const points = randomPoints(next, 1 + Math.floor(next() * 8), rows, cols, shift);
      const bandRows = 1 + Math.floor(next() * 32);
      if (shift === 0 && points.some((value) => Math.abs(value) > 1e6)) continue;
      const expected = noisyImage(next, rows, cols);
      const actual = expected.slice();
      native.polylines(expected, rows, cols, points, false, 0.75, thickness, shift);
      addon.polylineBands(actual, rows, cols, points, 0.75, thickness, shift, bandRows);
      const differing = differingPixels(expected, actual);
      if (differing > 0) {
        failures.push(`trial ${trial}: ${rows} x ${cols}, thickness ${thickness}, shift ${shift}, bands of ${bandRows}: ${differing} pixels differ for [${points.join(', ')}]`);
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
  });

  it('transforms vertices like raster/native', () => {
    const next = createRandom(3);
    for (let trial = 0; trial < 50; trial++) {
      const heading = (next() * 2 - 1) * Math.PI;
      const tiny = 2.220446049250313e-16;
      const x = 3e5 + next() * 4e5;
      const y = 4e6 + next() * 1e6;
      // The shape of roadmapTransform: a float32-built 90 degree rotation times an inverse pose.
      const c = Math.cos(heading);
      const s = Math.sin(heading);
      const transform = Float64Array.of(tiny * c - s, tiny * s + c, -x, c + tiny * -s, s + tiny * c, -y, 0, 0, 1);
      const coords = new Float64Array(2000);
      for (let k = 0; k < coords.length; k += 2) {
        coords[k] = x + (next() - 0.5) * 300;
        coords[k + 1] = y + (next() - 0.5) * 300;
      }
      for (const shift of [12, 13]) expect(addon.countVertexMismatches(coords, transform, 56, 0.5, shift)).toBe(0);
    }
  });

  it('gives the CPU bits for non-finite headings', async () => {
    const set = loadParitySet('town-a')!;
    const [job] = await jobsOf(set);
    for (const heading of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const scene = { ...job.scene, rearAxle: { ...job.scene.rearAxle, heading } };
      const cpu = new CpuRasterizer().rasterize(job.map, scene, job.settings);
      const emulated = new CudaRasterizer({ backend: 'emulation' }).rasterize(job.map, scene, job.settings);
      expect(differingPixels(cpu.data, emulated.data)).toBe(0);
    }
  });

  it('rejects device batches of mixed raster sizes', async () => {
    const town = await jobsOf(loadParitySet('town-a')!);
    const config = await jobsOf(loadParitySet('town-a-config')!);
    const rasterizer = new CudaRasterizer({ backend: 'emulation' });
    expect(() => rasterizer.rasterizeBatchOnDevice([town[0], config[0]])).toThrow(/job 1 is 160 x 160 px but job 0 is 224 x 224 px/);
  });

  it('rejects ranges outside the map with the scene index', () => {
    const id = addon.registerMap(new Float64Array(8));
    const params = Float64Array.of(224, 224, 0.5, 2.297, 4.049, 1.127, 0, 1, 0, 0, 0, 4.049, 1.127);
    const batch = {
      params, mapIds: Int32Array.of(id), polygonCounts: Uint32Array.of(1), polygonRanges: Uint32Array.of(0, 9), polygonColors: Float32Array.of(1),
      baselineCounts: Uint32Array.of(0), baselineRanges: new Uint32Array(0), agentCounts: Uint32Array.of(0), agents: new Float64Array(0),
    };
    expect(() => addon.rasterizeBatch(batch, null)).toThrow(/scene 0: polygon range 0\.\.9 is outside its map's 4 vertices/);
    addon.releaseMap(id);
  });
});

const deviceReason = probe.available ? '' : ` (skipped: ${probe.reason})`;
describe.skipIf(!probe.available)(`CUDA device${deviceReason}`, () => {
  describe.each(SETS)('parity set %s', (name) => {
    const set = loadParitySet(name);
    const skipReason = set === null ? ` (skipped: ${name} is not in test/fixtures or ../shared/fixtures)` : '';

    it.skipIf(set === null)(`matches nuPlan in one batch on ${probe.gpuName || 'the device'}${skipReason}`, async () => {
      const results = await new CudaRasterizer().rasterizeBatch(await jobsOf(set!));
      const failures = mismatches(set!, results);
      console.log(`${name}: ${set!.scenes.length - failures.length}/${set!.scenes.length} scenes bit-identical to nuPlan on ${probe.gpuName}`);
      expect(failures).toEqual([]);
    }, 120_000);

    it.skipIf(set === null)(`matches nuPlan scene by scene with 7-row bands${skipReason}`, async () => {
      const rasterizer = new CudaRasterizer({ bandRows: 7 });
      const results = (await jobsOf(set!)).map((job) => rasterizer.rasterize(job.map, job.scene, job.settings));
      expect(mismatches(set!, results)).toEqual([]);
    }, 120_000);
  });

  it('leaves batches on the device and copies them into pinned memory', async () => {
    const set = loadParitySet('town-a')!;
    const jobs = await jobsOf(set);
    const rasterizer = new CudaRasterizer();
    const onDevice = rasterizer.rasterizeBatchOnDevice(jobs);
    expect(onDevice.kernelMs).toBeGreaterThan(0);
    expect(onDevice.downloadMs).toBe(0);
    expect(onDevice.outputAddress).not.toBe(0n);

    const size = 224 * 224 * 4;
    const pinned = rasterizer.allocateHostBuffer(jobs.length * size);
    const copied = rasterizer.rasterizeBatchInto(jobs, pinned);
    expect(copied.downloadMs).toBeGreaterThan(0);
    const results = jobs.map((_, k) => ({ data: pinned.subarray(k * size, (k + 1) * size), shape: [224, 224, 4] }));
    expect(mismatches(set, results)).toEqual([]);
  }, 120_000);
});
