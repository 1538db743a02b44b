import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { diffRasters, expectedRaster, LOCAL_FIXTURES, loadParitySet, SHARED_FIXTURES } from './fixtures.js';
import { configOf, requestOf, startTestServer, type TestServer } from './server-harness.js';

/**
 * Every scene of every parity set through the gRPC service, compared bit for bit with the raster
 * nuPlan's RasterFeatureBuilder produced for it.
 */
const SETS = ['town-a', 'town-a-config', 'town-a-layers', 'av2-pit-7fab2350'];
const sharedMaps = join(SHARED_FIXTURES, 'maps');
const mapsRoot = existsSync(join(sharedMaps, 'nuplan-maps-v1.0.json')) ? sharedMaps : join(LOCAL_FIXTURES, 'maps');

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(['--maps-root', mapsRoot]);
}, 90_000);
afterAll(async () => {
  await server?.stop();
});

describe.each(SETS)('parity set %s', (name) => {
  const set = loadParitySet(name);
  const skipReason = set === null ? `${name} is not in test/fixtures or ../shared/fixtures (the AV2 set is read from ../shared only)` : '';

  it.skipIf(set === null)(`matches nuPlan bit for bit${skipReason ? ` (skipped: ${skipReason})` : ''}`, async () => {
    const config = configOf(set!.config);
    const failures: string[] = [];
    for (const scene of set!.scenes) {
      const response = await server.call<{ raster: { shape: number[]; data: Buffer }; channels: string[] }>('Rasterize', requestOf(set!.map, scene, config));
      expect(response.channels).toEqual(['ego', 'agents', 'roadmap', 'baseline_paths']);
      const { shape, data } = response.raster;
      const copy = new Float32Array(new Uint8Array(data).buffer);
      const expected = expectedRaster(set!, scene.id);
      expect(shape).toEqual([Math.round(Math.sqrt(expected.length / 4)), Math.round(Math.sqrt(expected.length / 4)), 4]);
      const diff = diffRasters(expected, copy, shape[1]);
      if (diff.differing > 0) failures.push(`${scene.id}: ${diff.differing} values differ (per channel ${diff.perChannel}); first ${diff.first.join(', ')}`);
    }
    console.log(`${name}: ${set!.scenes.length - failures.length}/${set!.scenes.length} scenes bit-identical to nuPlan`);
    expect(failures).toEqual([]);
  }, 120_000);
});

if (!existsSync(join(SHARED_FIXTURES, 'parity', 'av2-pit-7fab2350'))) {
  console.warn(`SKIPPED av2-pit-7fab2350 parity: ${SHARED_FIXTURES} is absent; the Argoverse 2 set (CC BY-NC-SA 4.0) is read from ../shared only`);
}
