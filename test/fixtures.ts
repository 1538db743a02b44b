import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

import { PACIFICA, type Scene } from '../raster/scene.js';
import { applyBuilderArguments, NUPLAN_DEFAULT_SETTINGS, type RasterSettings } from '../raster/settings.js';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '..');
/** The shared fixtures beside the checkout, when present. */
export const SHARED_FIXTURES = resolve(REPO_ROOT, '../shared/fixtures');
/** The town-* sets and the town-a map, copied into the repository. */
export const LOCAL_FIXTURES = join(here, 'fixtures');

/** nuPlan TrackedObjectType names as the fixtures spell them, in enum order. */
export const OBJECT_TYPES = ['vehicle', 'pedestrian', 'bicycle', 'traffic_cone', 'barrier', 'czone_sign', 'generic_object', 'ego'];

export interface FixtureAgent {
  type: string; x: number; y: number; heading: number; length: number; width: number; height?: number; track_token?: string;
}
export interface FixtureScene {
  id: string;
  ego: { x: number; y: number; heading: number };
  agents: FixtureAgent[];
}
export interface ParitySet {
  name: string;
  dir: string;
  map: string;
  config: Record<string, unknown>;
  scenes: FixtureScene[];
}

/** Finds a parity set: the repository copy for town-* sets, else the shared fixtures; null when absent. */
export function paritySetDir(name: string): string | null {
  const local = join(LOCAL_FIXTURES, 'parity', name);
  if (existsSync(join(local, 'scenes.json'))) return local;
  const shared = join(SHARED_FIXTURES, 'parity', name);
  return existsSync(join(shared, 'scenes.json')) ? shared : null;
}

export function loadParitySet(name: string): ParitySet | null {
  const dir = paritySetDir(name);
  if (dir === null) return null;
  const spec = JSON.parse(readFileSync(join(dir, 'scenes.json'), 'utf8'));
  return { name, dir, map: spec.map, config: spec.config ?? {}, scenes: spec.scenes };
}

export function expectedRaster(set: ParitySet, id: string): Float32Array {
  const bytes = gunzipSync(readFileSync(join(set.dir, 'expected', `${id}.f32.gz`)));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

export function settingsOf(set: ParitySet): RasterSettings {
  return applyBuilderArguments(NUPLAN_DEFAULT_SETTINGS, set.config as Record<string, unknown>);
}

export function sceneOf(scene: FixtureScene): Scene {
  const objects = new Float64Array(5 * scene.agents.length);
  scene.agents.forEach((agent, i) => objects.set([agent.x, agent.y, agent.heading, agent.length, agent.width], 5 * i));
  return { rearAxle: { ...scene.ego }, vehicle: PACIFICA, objects };
}

export interface RasterDiff {
  differing: number;
  perChannel: number[];
  first: string[];
}

/** Compares two [W, H, 4] rasters bit for bit. */
export function diffRasters(expected: Float32Array, actual: Float32Array, cols: number): RasterDiff {
  const a = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const b = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const perChannel = [0, 0, 0, 0];
  const first: string[] = [];
  let differing = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    differing++;
    const channel = i % 4;
    perChannel[channel]++;
    if (first.length < 6) {
      const pixel = (i - channel) / 4;
      first.push(`(row ${Math.floor(pixel / cols)}, col ${pixel % cols}, ch ${channel}: expected ${expected[i]}, got ${actual[i]})`);
    }
  }
  return { differing, perChannel, first };
}
