// Writes what device-check.sh needs besides the node binary into a bundle folder (default .device).
//   fixtures/      every parity set as packed batches (with the map queries done here, in
//                  TypeScript), the maps' vertex arrays, and nuPlan's expected rasters
//   node_modules/  cmake-js with its dependencies, node-addon-api and node-api-headers
// The device machine has no Node.js packages and cannot read GeoPackage files (no GDAL). So the
// map queries run here, and the device replays their results.
//
// Usage: node --import ./raster/cuda/ts-register.mjs raster/cuda/prepare-device-bundle.mjs [BUNDLE_DIR]
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { readMap } from '../../maps/gpkg-reader.js';
import { LOCAL_FIXTURES, loadParitySet, sceneOf, settingsOf, SHARED_FIXTURES } from '../../test/fixtures.js';
import { packBatch } from '../cuda-rasterizer.js';
import { native } from '../native.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../..');
const bundle = resolve(process.argv[2] ?? join(repoRoot, '.device'));
const SETS = ['town-a', 'town-a-config', 'town-a-layers', 'av2-pit-7fab2350'];
const BATCH_FIELDS = ['params', 'polygonCounts', 'polygonRanges', 'polygonColors', 'baselineCounts', 'baselineRanges', 'agentCounts', 'agents'];

/** Returns the map file of `name`: the shared fixtures' copy when present, else the repository's. */
function mapPath(name) {
  for (const root of [join(SHARED_FIXTURES, 'maps'), join(LOCAL_FIXTURES, 'maps')]) {
    const path = join(root, name, '1.0.0', 'map.gpkg');
    if (existsSync(path)) return path;
  }
  throw new Error(`map '${name}' is in neither ${SHARED_FIXTURES}/maps nor ${LOCAL_FIXTURES}/maps`);
}

function writeTyped(path, array) {
  writeFileSync(path, Buffer.from(array.buffer, array.byteOffset, array.byteLength));
}

/** Exports every parity set found, then copies the Node.js packages the build needs. */
async function main() {
  const target = join(bundle, 'fixtures');
  rmSync(target, { recursive: true, force: true });
  mkdirSync(join(target, 'maps'), { recursive: true });
  const maps = new Map();
  const manifest = { sets: [], maps: {} };

  for (const name of SETS) {
    const set = loadParitySet(name);
    if (set === null) {
      console.log(`prepare-device-bundle: parity set ${name} not found; the device check will run without it`);
      continue;
    }
    if (!maps.has(set.map)) {
      const map = await readMap(mapPath(set.map), { name: set.map, version: '1.0.0' });
      maps.set(set.map, map);
      manifest.maps[set.map] = `maps/${set.map}.f64`;
      writeTyped(join(target, 'maps', `${set.map}.f64`), map.coords);
    }
    const map = maps.get(set.map);
    const settings = settingsOf(set);
    const jobs = set.scenes.map((scene) => ({ map, scene: sceneOf(scene), settings }));
    const packed = packBatch(jobs, () => 0, (params) => native.egoCenter(params));

    const setDir = join(target, name);
    mkdirSync(join(setDir, 'expected'), { recursive: true });
    for (const field of BATCH_FIELDS) writeTyped(join(setDir, `${field}.bin`), packed.batch[field]);
    for (const scene of set.scenes) copyFileSync(join(set.dir, 'expected', `${scene.id}.f32.gz`), join(setDir, 'expected', `${scene.id}.f32.gz`));
    manifest.sets.push({ name, map: set.map, rows: packed.rows, cols: packed.cols, sceneIds: set.scenes.map((scene) => scene.id) });
    console.log(`prepare-device-bundle: ${name}: ${set.scenes.length} scenes of ${packed.rows} x ${packed.cols} px on map ${set.map}`);
  }
  writeFileSync(join(target, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
  copyModules();
}

/**
 * Copies cmake-js, node-addon-api and node-api-headers with everything they require, resolving
 * each dependency as Node.js does (a nested node_modules first, then the enclosing ones).
 */
function copyModules() {
  const source = join(repoRoot, 'node_modules');
  const target = join(bundle, 'node_modules');
  rmSync(target, { recursive: true, force: true });
  const copied = new Set();

  const resolvePackage = (name, fromDir) => {
    for (let dir = fromDir; dir.startsWith(source); dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
      if (dir === dirname(dir)) break;
    }
    const top = join(source, name);
    if (existsSync(join(top, 'package.json'))) return top;
    throw new Error(`${name} is not installed under ${source}; run npm install`);
  };
  const visit = (packageDir) => {
    if (copied.has(packageDir)) return;
    copied.add(packageDir);
    const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
    for (const dependency of Object.keys(manifest.dependencies ?? {})) visit(resolvePackage(dependency, packageDir));
  };
  for (const root of ['cmake-js', 'node-addon-api', 'node-api-headers']) visit(join(source, root));

  for (const packageDir of copied) {
    cpSync(packageDir, join(target, packageDir.slice(source.length + 1)), { recursive: true, dereference: true });
  }
  console.log(`prepare-device-bundle: copied ${copied.size} packages to ${target}`);
}

await main();
