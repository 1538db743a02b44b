import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { listMapsRoot, type MapSource } from '../maps/maps-root.js';
import { buildSampleTown, writeSampleMap, type SampleMapOptions } from '../maps/sample-map.js';
import { PACIFICA, type Pose, type Scene } from '../raster/scene.js';
import { applyBuilderArguments, NUPLAN_DEFAULT_SETTINGS, type RasterSettings } from '../raster/settings.js';
import type { RasterizeRequestMessage } from '../server/request.js';
import { LOCAL_FIXTURES, REPO_ROOT, SHARED_FIXTURES } from './paths.js';
import { buildTownDrive } from './town-drive.js';

/** A tracked object as the parity fixtures spell it: box centre in the map frame [m], [rad]. */
export interface BenchAgent {
  type: string;
  x: number;
  y: number;
  heading: number;
  length: number;
  width: number;
  height?: number;
  track_token?: string;
}

/** One simulation step: the ego rear axle and the tracked objects. */
export interface BenchScene {
  id: string;
  ego: Pose;
  agents: BenchAgent[];
}

/** A sequence of steps on one map, replayed in order by every benchmark path. */
export interface Workload {
  name: string;
  description: string;
  map: MapSource;
  /** RasterFeatureBuilder arguments that differ from nuPlan's raster_model.yaml. */
  builderArguments: Record<string, unknown>;
  settings: RasterSettings;
  scenes: BenchScene[];
  /** The same steps as the rasterizer takes them. */
  rasterScenes: Scene[];
  /** The same steps as RasterizeRequest messages, with include_timings set. */
  requests: RasterizeRequestMessage[];
  /** nuPlan's RasterFeatureBuilder time per scene id [s], from the parity set's reference.json; null when none was measured. */
  nuplanSeconds: Record<string, number> | null;
}

/** A workload that could not be built, and why. */
export interface SkippedWorkload {
  name: string;
  reason: string;
}

/** The synthetic sets in test/fixtures and the Argoverse 2 drive, which is read from the shared fixtures only. */
export const PARITY_SETS = ['av2-pit-7fab2350', 'town-a', 'town-a-config', 'town-a-layers'] as const;

/** Name of the Las-Vegas-scale workload and of its map. */
export const TOWN_DRIVE = 'las-vegas-scale';
/** Grid of the Las-Vegas-scale map: about 7,200 lanes, 11,600 lane connectors and 625 intersections. */
export const TOWN_MAP_OPTIONS: SampleMapOptions = { blocksX: 24, blocksY: 24 };

/** Converts RasterFeatureBuilder arguments (snake_case, map_features as an ordered object) to a RasterConfig message. */
export function configMessageOf(builderArguments: Record<string, unknown>): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(builderArguments)) {
    if (key === 'map_features') {
      config.mapFeatures = Object.entries(value as Record<string, number>).map(([layer, color]) => ({ layer, color }));
    } else {
      const camel = key.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());
      config[camel] = value;
    }
  }
  return config;
}

/** Builds the RasterizeRequest of one step, with the server's stage timers requested. */
export function requestOf(mapName: string, scene: BenchScene, config: Record<string, unknown>, roadmapMode?: 'ROADMAP_MODE_TILES'): RasterizeRequestMessage {
  return {
    mapName,
    ego: { rearAxle: { ...scene.ego } },
    trackedObjects: scene.agents.map((agent) => ({
      center: { x: agent.x, y: agent.y, heading: agent.heading },
      length: agent.length,
      width: agent.width,
      height: agent.height ?? 1.5,
      type: agent.type.toUpperCase(),
      trackToken: agent.track_token ?? '',
    })),
    config: roadmapMode ? { ...config, roadmapMode } : config,
    includeTimings: true,
  };
}

function rasterSceneOf(scene: BenchScene): Scene {
  const objects = new Float64Array(5 * scene.agents.length);
  scene.agents.forEach((agent, i) => objects.set([agent.x, agent.y, agent.heading, agent.length, agent.width], 5 * i));
  return { rearAxle: { ...scene.ego }, vehicle: PACIFICA, objects };
}

function makeWorkload(
  name: string, description: string, map: MapSource, builderArguments: Record<string, unknown>, scenes: BenchScene[],
  nuplanSeconds: Record<string, number> | null,
): Workload {
  const config = configMessageOf(builderArguments);
  return {
    name, description, map, builderArguments, scenes, nuplanSeconds,
    settings: applyBuilderArguments(NUPLAN_DEFAULT_SETTINGS, builderArguments),
    rasterScenes: scenes.map(rasterSceneOf),
    requests: scenes.map((scene) => requestOf(map.name, scene, config)),
  };
}

/** The maps root that holds `mapName`: the repository's fixtures first, then the shared ones. */
function findMapSource(mapName: string): MapSource | null {
  for (const root of [join(LOCAL_FIXTURES, 'maps'), join(SHARED_FIXTURES, 'maps')]) {
    if (!existsSync(join(root, 'nuplan-maps-v1.0.json'))) continue;
    const source = listMapsRoot(root).find((candidate) => candidate.name === mapName);
    if (source && existsSync(source.path)) return source;
  }
  return null;
}

/**
 * Loads a parity set as a workload: its scenes in file order, its map and nuPlan's time per scene.
 * @param limit keep only the first `limit` scenes
 * @returns the workload, or the reason it is skipped when the set or its map is absent
 */
export function loadParityWorkload(name: string, limit = Infinity): Workload | SkippedWorkload {
  const local = join(LOCAL_FIXTURES, 'parity', name);
  const shared = join(SHARED_FIXTURES, 'parity', name);
  const dir = existsSync(join(local, 'scenes.json')) ? local : existsSync(join(shared, 'scenes.json')) ? shared : null;
  if (dir === null) return { name, reason: `parity set ${name} is in neither ${local} nor ${shared}` };

  const spec = JSON.parse(readFileSync(join(dir, 'scenes.json'), 'utf8')) as { map: string; config?: Record<string, unknown>; scenes: BenchScene[] };
  const map = findMapSource(spec.map);
  if (map === null) return { name, reason: `map ${spec.map} of parity set ${name} is in no maps root (test/fixtures/maps or ${join(SHARED_FIXTURES, 'maps')})` };

  const referencePath = join(dir, 'reference.json');
  const reference = existsSync(referencePath) ? (JSON.parse(readFileSync(referencePath, 'utf8')) as { seconds?: Record<string, number> }) : {};
  const scenes = spec.scenes.slice(0, limit);
  const count = spec.scenes.length;
  const meanAgents = spec.scenes.reduce((sum, scene) => sum + scene.agents.length, 0) / Math.max(1, count);
  const description = `parity set ${name}: ${count} scenes, ${meanAgents.toFixed(0)} objects per scene on average, map ${spec.map}`;
  return makeWorkload(name, description, map, spec.config ?? {}, scenes, reference.seconds ?? null);
}

/** Hash of the map generator's source, so that a cached map is rebuilt when the generator changes. */
function generatorHash(options: SampleMapOptions): string {
  const source = readFileSync(join(REPO_ROOT, 'maps', 'sample-map.ts'));
  return createHash('sha256').update(source).update(JSON.stringify(options)).digest('hex').slice(0, 16);
}

/**
 * Writes the Las-Vegas-scale map into `cacheDir` unless an up-to-date copy is there.
 * @returns the map source and the generation time [ms] (0 when the cached copy was used)
 */
export async function ensureTownMap(cacheDir: string, options: SampleMapOptions = TOWN_MAP_OPTIONS): Promise<{ source: MapSource; generatedMs: number }> {
  const key = generatorHash(options);
  const dir = join(cacheDir, `${TOWN_DRIVE}-${options.blocksX}x${options.blocksY}`);
  const path = join(dir, 'map.gpkg');
  const stampPath = join(dir, 'generator.txt');
  const source: MapSource = { name: TOWN_DRIVE, version: key, path };
  if (existsSync(path) && existsSync(stampPath) && readFileSync(stampPath, 'utf8').trim() === key) return { source, generatedMs: 0 };

  mkdirSync(dir, { recursive: true });
  const started = performance.now();
  await writeSampleMap(path, options);
  writeFileSync(stampPath, `${key}\n`);
  return { source, generatedMs: performance.now() - started };
}

/**
 * Builds the Las-Vegas-scale workload: the generated town and a drive of `steps` steps through
 * its busiest intersection (see buildTownDrive).
 */
export async function townDriveWorkload(cacheDir: string, steps = 149, options: SampleMapOptions = TOWN_MAP_OPTIONS): Promise<{ workload: Workload; generatedMs: number }> {
  const { source, generatedMs } = await ensureTownMap(cacheDir, options);
  const town = buildSampleTown(options);
  const scenes = buildTownDrive(town, { steps });
  const meanAgents = scenes.reduce((sum, scene) => sum + scene.agents.length, 0) / Math.max(1, scenes.length);
  const counts = town.layers;
  const description =
    `generated ${options.blocksX}x${options.blocksY}-block town (${counts.lanes_polygons.length} lanes, ${counts.lane_connectors.length} lane connectors, ` +
    `${counts.intersections.length} intersections): ${scenes.length} steps at 10 m/s and 10 Hz through its busiest intersection, ${meanAgents.toFixed(0)} objects per step on average`;
  return { workload: makeWorkload(TOWN_DRIVE, description, source, {}, scenes, null), generatedMs };
}

/** Returns `workload` cut to its first `steps` steps. */
export function truncateWorkload(workload: Workload, steps: number): Workload {
  if (workload.scenes.length <= steps) return workload;
  return {
    ...workload,
    scenes: workload.scenes.slice(0, steps),
    rasterScenes: workload.rasterScenes.slice(0, steps),
    requests: workload.requests.slice(0, steps),
  };
}

export function isSkipped(value: Workload | SkippedWorkload): value is SkippedWorkload {
  return 'reason' in value && !('scenes' in value);
}
