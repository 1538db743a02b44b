import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { expectedRaster, LOCAL_FIXTURES, loadParitySet, REPO_ROOT } from '../test/fixtures.js';
import { configOf, requestOf, startTestServer, type TestServer } from '../test/server-harness.js';

const townMap = join(LOCAL_FIXTURES, 'maps/town-a/1.0.0/map.gpkg');
const townA = loadParitySet('town-a')!;
const townConfig = loadParitySet('town-a-config')!;

function rasterOf(response: { raster: { data: Buffer } }): Float32Array {
  return new Float32Array(new Uint8Array(response.raster.data).buffer);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

describe('rasterd serve', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(['--maps-root', join(LOCAL_FIXTURES, 'maps'), '--map', `second=${townMap}`, '--max-tracked-objects', '400']);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });

  it('reports SERVING through grpc.health.v1', async () => {
    const Health = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
    const health = new Health(server.target, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    for (const name of ['', 'rasterd.v1.RasterService', 'rasterd.v1.RasterService/town-a']) {
      const reply = await new Promise<{ status: string }>((resolve, reject) => health.check({ service: name }, (e: Error | null, r: { status: string }) => (e ? reject(e) : resolve(r))));
      expect(reply.status, name).toBe('SERVING');
    }
    const unknown = await new Promise<grpc.ServiceError>((resolve) => health.check({ service: 'nope' }, (e: grpc.ServiceError) => resolve(e)));
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    health.close();
  });

  it('lists its services through server reflection', async () => {
    const definition = protoLoader.loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [join(REPO_ROOT, 'node_modules/@grpc/reflection/build/proto')] });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } };
    const reflection = new pkg.grpc.reflection.v1.ServerReflection(server.target, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const stream = reflection.ServerReflectionInfo();
    const reply = await new Promise<{ listServicesResponse: { service: Array<{ name: string }> } }>((resolve, reject) => {
      stream.on('data', resolve);
      stream.on('error', reject);
      stream.write({ listServices: '' });
    });
    stream.end();
    expect(reply.listServicesResponse.service.map((s) => s.name)).toContain('rasterd.v1.RasterService');
    reflection.close();
  });

  it('lists maps with layer counts', async () => {
    const reply = await server.call<{ maps: Array<{ name: string; version: string; projectedCrs: string; layerCounts: Record<string, number> }> }>('ListMaps', {});
    expect(reply.maps.map((m) => m.name)).toEqual(['second', 'town-a']);
    const town = reply.maps.find((m) => m.name === 'town-a')!;
    expect(town.version).toBe('1.0.0');
    expect(town.projectedCrs).toBe('epsg:32611');
    expect(town.layerCounts.lanes_polygons).toBe(124);
  });

  it('reports version and device in GetServerInfo', async () => {
    const info = await server.call<{ version: string; device: string; maps: unknown[] }>('GetServerInfo', {});
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.device).toBe('cpu');
    expect(info.maps).toHaveLength(2);
  });

  it('answers NOT_FOUND with the known maps', async () => {
    const error = await server.call('Rasterize', { mapName: 'atlantis', ego: { rearAxle: { x: 0, y: 0 } } }).catch((e) => e);
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(error.details).toContain('atlantis');
    expect(error.details).toContain('town-a');
  });

  it.each([
    ['NaN ego x', { ego: { rearAxle: { x: NaN, y: 1 } } }, 'ego.rear_axle.x'],
    ['missing ego', { ego: null }, 'ego'],
    ['bad pixel size', { config: { targetPixelSize: -1 } }, 'target_pixel_size'],
    ['non-square raster', { config: { targetWidth: 100, targetHeight: 120 } }, 'target_height'],
    ['unknown layer', { config: { mapFeatures: [{ layer: 'SIDEWALK', color: 1 }] } }, 'SIDEWALK'],
    ['colour above 1', { config: { mapFeatures: [{ layer: 'LANE', color: 2 }] } }, 'color'],
    ['too many objects', { trackedObjects: Array.from({ length: 401 }, () => ({ center: { x: 0, y: 0 }, length: 1, width: 1 })) }, 'at most 400'],
    ['negative box', { trackedObjects: [{ center: { x: 0, y: 0 }, length: -1, width: 1 }] }, 'tracked_objects[0]'],
  ])('rejects %s with INVALID_ARGUMENT', async (_, patch, mention) => {
    const request = { mapName: 'town-a', ego: { rearAxle: { x: 664300, y: 3997600, heading: 0 } }, ...patch };
    const error = await server.call('Rasterize', request).catch((e) => e);
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toContain(mention);
  });

  it('samples static tiles in tiles mode', async () => {
    const exact = rasterOf(await server.call('Rasterize', requestOf('town-a', townA.scenes[3])));
    const tiles = rasterOf(await server.call('Rasterize', { ...requestOf('town-a', townA.scenes[3]), config: { roadmapMode: 'ROADMAP_MODE_TILES' } }));
    let equal = 0, total = 0;
    for (let i = 2; i < exact.length; i += 4) {
      total++;
      if (exact[i] === tiles[i]) equal++;
    }
    expect(equal / total).toBeGreaterThan(0.95);
    for (const channel of [0, 1, 3]) {
      for (let i = channel; i < exact.length; i += 4) if (exact[i] !== tiles[i]) throw new Error(`channel ${channel} differs at ${i}`);
    }
    const error = await server.call('Rasterize', { ...requestOf('town-a', townA.scenes[3]), config: { roadmapMode: 'ROADMAP_MODE_TILES', mapFeatures: [{ layer: 'WALKWAYS', color: 1 }] } }).catch((e) => e);
    expect(error.code).toBe(grpc.status.FAILED_PRECONDITION);
  });

  it('returns timings when asked', async () => {
    const reply = await server.call<{ timings: Record<string, number> }>('Rasterize', { ...requestOf('town-a', townA.scenes[0]), includeTimings: true });
    expect(reply.timings.totalUs).toBeGreaterThan(0);
    expect(reply.timings.roadmapUs).toBeGreaterThan(0);
  });

  it('keeps request order in RasterizeBatch with mixed maps and configs', async () => {
    const requests = [
      requestOf('town-a', townA.scenes[0]),
      requestOf('second', townConfig.scenes[0], configOf(townConfig.config)),
      requestOf('town-a', townA.scenes[1]),
      requestOf('second', townConfig.scenes[1], configOf(townConfig.config)),
    ];
    const reply = await server.call<{ responses: Array<{ raster: { shape: number[]; data: Buffer } }> }>('RasterizeBatch', { requests });
    expect(reply.responses.map((r) => r.raster.shape[0])).toEqual([224, 160, 224, 160]);
    expect(sameBits(rasterOf(reply.responses[0]), expectedRaster(townA, townA.scenes[0].id))).toBe(true);
    expect(sameBits(rasterOf(reply.responses[1]), expectedRaster(townConfig, townConfig.scenes[0].id))).toBe(true);
    expect(sameBits(rasterOf(reply.responses[2]), expectedRaster(townA, townA.scenes[1].id))).toBe(true);
    expect(sameBits(rasterOf(reply.responses[3]), expectedRaster(townConfig, townConfig.scenes[1].id))).toBe(true);
  });

  it('names the failing entry of a batch', async () => {
    const error = await server.call('RasterizeBatch', { requests: [requestOf('town-a', townA.scenes[0]), { mapName: 'town-a', ego: { rearAxle: { x: Infinity } } }] }).catch((e) => e);
    expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error.details).toContain('requests[1]');
  });

  it('streams one response per request in order', async () => {
    const stream = server.client.RasterizeStream() as grpc.ClientDuplexStream<unknown, { raster: { data: Buffer } }>;
    const received: Float32Array[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (response) => received.push(rasterOf(response)));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const scenes = townA.scenes.slice(0, 5);
    for (const scene of scenes) stream.write(requestOf('town-a', scene));
    stream.end();
    await done;
    expect(received).toHaveLength(scenes.length);
    scenes.forEach((scene, i) => expect(sameBits(received[i], expectedRaster(townA, scene.id)), scene.id).toBe(true));
  });

  it('ends a stream with the failing step status', async () => {
    const stream = server.client.RasterizeStream() as grpc.ClientDuplexStream<unknown, unknown>;
    let responses = 0;
    const failure = new Promise<grpc.ServiceError>((resolve) => {
      stream.on('data', () => responses++);
      stream.on('error', resolve);
    });
    stream.write(requestOf('town-a', townA.scenes[0]));
    stream.write({ mapName: 'atlantis', ego: { rearAxle: { x: 1, y: 2 } } });
    stream.write(requestOf('town-a', townA.scenes[1]));
    stream.end();
    const error = await failure;
    expect(error.code).toBe(grpc.status.NOT_FOUND);
    expect(responses).toBe(1);
  });

  it('answers DEADLINE_EXCEEDED for an expired deadline', async () => {
    const error = await server.call('Rasterize', requestOf('town-a', townA.scenes[0]), -1000).catch((e) => e);
    expect(error.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });
});

describe('rasterd serve batching', () => {
  it('draws a whole set in one RasterizeBatch on worker threads', async () => {
    const server = await startTestServer(['--map', `town-a=${townMap}`, '--workers', '2']);
    try {
      const reply = await server.call<{ responses: Array<{ raster: { data: Buffer } }> }>('RasterizeBatch', { requests: townA.scenes.map((scene) => requestOf('town-a', scene)) });
      expect(reply.responses).toHaveLength(townA.scenes.length);
      townA.scenes.forEach((scene, i) => expect(sameBits(rasterOf(reply.responses[i]), expectedRaster(townA, scene.id)), scene.id).toBe(true));
    } finally {
      await server.stop();
    }
  });

  it('gathers concurrent unary calls with the micro-batcher', async () => {
    const server = await startTestServer(['--map', `town-a=${townMap}`, '--workers', '2', '--batch-window-us', '5000']);
    try {
      const scenes = townA.scenes.slice(0, 24);
      const replies = await Promise.all(scenes.map((scene) => server.call<{ raster: { data: Buffer } }>('Rasterize', requestOf('town-a', scene))));
      scenes.forEach((scene, i) => expect(sameBits(rasterOf(replies[i]), expectedRaster(townA, scene.id)), scene.id).toBe(true));
      const error = await server.call('Rasterize', { mapName: 'town-a', ego: { rearAxle: { x: NaN } } }).catch((e) => e);
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      await server.stop();
    }
  });

  it('rejects a batch above --max-batch-size', async () => {
    const server = await startTestServer(['--map', `town-a=${townMap}`, '--max-batch-size', '4']);
    try {
      const error = await server.call('RasterizeBatch', { requests: townA.scenes.slice(0, 5).map((scene) => requestOf('town-a', scene)) }).catch((e) => e);
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error.details).toContain('at most 4');
    } finally {
      await server.stop();
    }
  });
});

describe('rasterd serve configuration', () => {
  it('takes defaults from a nuPlan raster model YAML', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rasterd-config-'));
    const yamlPath = join(dir, 'raster_model.yaml');
    const builder = Object.entries(townConfig.config).map(([key, value]) =>
      key === 'map_features'
        ? `    map_features:\n${Object.entries(value as Record<string, number>).map(([layer, color]) => `      ${layer}: ${color}`).join('\n')}`
        : `    ${key}: ${value}`).join('\n');
    writeFileSync(yamlPath, `_target_: nuplan.planning.training.modeling.models.raster_model.RasterModel\nnum_input_channels: 4\nfeature_builders:\n  - _target_: nuplan.planning.training.preprocessing.feature_builders.raster_feature_builder.RasterFeatureBuilder\n    _convert_: 'all'\n    num_input_channels: \${model.num_input_channels}\n${builder}\n`);
    const server = await startTestServer(['--map', `town-a=${townMap}`, '--raster-config', yamlPath]);
    try {
      const reply = await server.call<{ raster: { shape: number[]; data: Buffer } }>('Rasterize', requestOf('town-a', townConfig.scenes[2]));
      expect(reply.raster.shape).toEqual([160, 160, 4]);
      expect(sameBits(rasterOf(reply), expectedRaster(townConfig, townConfig.scenes[2].id))).toBe(true);
    } finally {
      await server.stop();
    }
  }, 60_000);

  it('exits non-zero with the reason when no map loads', () => {
    const result = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/rasterd.js'), 'serve', '--port', '0', '--map', 'broken=/nonexistent/map.gpkg'], { encoding: 'utf8', timeout: 30_000 });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('no map loaded');
    expect(result.stderr).toContain('/nonexistent/map.gpkg');
  });

  it('exits 0 on SIGTERM', async () => {
    const server = await startTestServer(['--map', `town-a=${townMap}`]);
    expect(await server.stop('SIGTERM')).toBe(0);
  }, 60_000);
});
