import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { expectedRaster, LOCAL_FIXTURES, loadParitySet } from '../test/fixtures.js';
import { decodeResponse, encodeRequest, RawClient } from '../test/raw-client.js';
import { requestOf, startTestServer, type TestServer } from '../test/server-harness.js';

const townMap = join(LOCAL_FIXTURES, 'maps/town-a/1.0.0/map.gpkg');
const townA = loadParitySet('town-a')!;
const validRequest = requestOf('town-a', townA.scenes[0]);

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function rasterOf(bytes: Buffer): Float32Array {
  const response = decodeResponse<{ raster: { data: Buffer } }>('Rasterize', bytes);
  return new Float32Array(new Uint8Array(response.raster.data).buffer);
}

/** Returns the port the server logged for its metrics endpoint. */
function metricsPortOf(server: TestServer): number {
  for (const line of server.logs) {
    const match = /"metricsPort":(\d+)/.exec(line);
    if (match) return Number(match[1]);
  }
  throw new Error(`the server logged no metricsPort:\n${server.logs.join('\n')}`);
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** Returns the value of one sample line of a scrape, e.g. `rasterd_requests_total{method="Rasterize",code="OK"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('rasterd serve limits', () => {
  let server: TestServer;
  let raw: RawClient;
  beforeAll(async () => {
    server = await startTestServer([
      '--map', `town-a=${townMap}`, '--max-batch-size', '4', '--max-message-bytes', '262144', '--max-concurrent-calls', '2', '--metrics-port', '0',
    ]);
    raw = new RawClient(server.target);
  }, 60_000);
  afterAll(async () => {
    raw?.close();
    await server?.stop();
  });

  it.each([
    ['unknown object type number', { trackedObjects: [{ center: { x: 664_300, y: 3_997_600 }, length: 4, width: 2, type: 99 }] }, 'tracked_objects[0].type 99'],
    ['unknown roadmap mode number', { config: { roadmapMode: 7 } }, 'config.roadmap_mode 7'],
    ['too many map features', { config: { mapFeatures: Array.from({ length: 33 }, () => ({ layer: 'LANE', color: 1 })) } }, 'at most 32'],
    ['infinite pixel size', { config: { targetPixelSize: Infinity } }, 'target_pixel_size'],
    ['raster above the limit', { config: { targetWidth: 4096, targetHeight: 4096 } }, 'target_width must be in 1..2048'],
    ['negative raster size', { config: { targetWidth: -5, targetHeight: -5 } }, 'target_width'],
    ['thickness zero', { config: { baselinePathThickness: 0 } }, 'baseline_path_thickness'],
    ['offset above one half', { config: { egoLongitudinalOffset: 0.75 } }, 'ego_longitudinal_offset'],
    ['NaN object heading', { trackedObjects: [{ center: { x: 1, y: 2, heading: NaN }, length: 4, width: 2 }] }, 'tracked_objects[0].center.heading'],
    ['object without center', { trackedObjects: [{ length: 4, width: 2 }] }, 'tracked_objects[0].center is required'],
  ])('rejects %s', async (_, patch, mention) => {
    const reply = await raw.unary('Rasterize', encodeRequest('Rasterize', { ...validRequest, ...patch }));
    expect(reply.code, reply.details).toBe(grpc.status.INVALID_ARGUMENT);
    expect(reply.details).toContain(mention);
  });

  it('rejects undecodable bytes', async () => {
    const bytes = encodeRequest('Rasterize', validRequest);
    const reply = await raw.unary('Rasterize', bytes.subarray(0, bytes.length - 7));
    expect(reply.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(reply.details).toContain('not a valid RasterizeRequest protobuf message');
  });

  it('quotes a long map name briefly', async () => {
    const reply = await raw.unary('Rasterize', encodeRequest('Rasterize', { ...validRequest, mapName: 'x'.repeat(100_000) }));
    expect(reply.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(reply.details.length).toBeLessThan(300);
  });

  it('rejects a batch above the limit', async () => {
    const reply = await raw.unary('RasterizeBatch', encodeRequest('RasterizeBatch', { requests: Array.from({ length: 5 }, () => validRequest) }));
    expect(reply.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(reply.details).toContain('at most 4 per RasterizeBatch');
  });

  it('rejects a batch whose response is too large', async () => {
    const big = { ...validRequest, config: { targetWidth: 2048, targetHeight: 2048 } };
    const reply = await raw.unary('RasterizeBatch', encodeRequest('RasterizeBatch', { requests: [big, big, big, big] }));
    expect(reply.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(reply.details).toContain('split the batch');
  });

  it('validates every batch entry before work', async () => {
    const reply = await raw.unary('RasterizeBatch', encodeRequest('RasterizeBatch', { requests: [validRequest, { ...validRequest, mapName: 'atlantis' }] }));
    expect(reply.code).toBe(grpc.status.NOT_FOUND);
    expect(reply.details).toContain('requests[1].map_name "atlantis"');
  });

  it('rejects a message above the size limit', async () => {
    const objects = Array.from({ length: 6000 }, (_, i) => ({ center: { x: 664_300 + i, y: 3_997_600, heading: 0.1 }, length: 4, width: 2, height: 1.5, trackToken: `token-${i}` }));
    const reply = await raw.unary('Rasterize', encodeRequest('Rasterize', { ...validRequest, trackedObjects: objects }));
    expect(reply.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('answers RESOURCE_EXHAUSTED over the concurrency limit', async () => {
    const request = encodeRequest('Rasterize', { ...validRequest, config: { targetWidth: 1024, targetHeight: 1024 } });
    const replies = await Promise.all(Array.from({ length: 12 }, () => raw.unary('Rasterize', request)));
    const codes = replies.map((reply) => reply.code);
    expect(codes).toContain(grpc.status.RESOURCE_EXHAUSTED);
    expect(codes).toContain(grpc.status.OK);
    expect(codes.every((code) => code === grpc.status.OK || code === grpc.status.RESOURCE_EXHAUSTED), codes.join(',')).toBe(true);
    const busy = replies.find((reply) => reply.code === grpc.status.RESOURCE_EXHAUSTED)!;
    expect(busy.details).toContain('limit 2');
  });

  it('stops a batch at its deadline', async () => {
    const big = { ...validRequest, config: { targetWidth: 2048, targetHeight: 2048, targetPixelSize: 0.1 } };
    const started = Date.now();
    const reply = await raw.unary('RasterizeBatch', encodeRequest('RasterizeBatch', { requests: [big, big, big] }), 150);
    expect(reply.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(5_000);
    const after = await raw.unary('Rasterize', encodeRequest('Rasterize', validRequest));
    expect(after.code).toBe(grpc.status.OK);
  });

  it('echoes and logs the request id', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-request-id', 'hardening-test-7');
    const reply = await raw.unary('Rasterize', encodeRequest('Rasterize', { ...validRequest, mapName: 'atlantis' }), 10_000, metadata);
    expect(reply.code).toBe(grpc.status.NOT_FOUND);
    expect(reply.metadata?.get('x-request-id')).toEqual(['hardening-test-7']);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const logged = server.logs.filter((line) => line.includes('"requestId":"hardening-test-7"'));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain('atlantis');
  });

  it('serves exact rasters after the rejections', async () => {
    const reply = await raw.unary('Rasterize', encodeRequest('Rasterize', validRequest));
    expect(reply.code).toBe(grpc.status.OK);
    expect(sameBits(rasterOf(reply.bytes!), expectedRaster(townA, townA.scenes[0].id))).toBe(true);
    expect(server.process.exitCode).toBeNull();
  });

  it('exposes Prometheus metrics', async () => {
    await raw.unary('RasterizeBatch', encodeRequest('RasterizeBatch', { requests: [validRequest, validRequest] }));
    const text = await scrape(metricsPortOf(server));
    expect(sample(text, 'rasterd_requests_total{method="Rasterize",code="OK"}')).toBeGreaterThan(0);
    expect(sample(text, 'rasterd_requests_total{method="Rasterize",code="INVALID_ARGUMENT"}')).toBeGreaterThan(0);
    expect(sample(text, 'rasterd_requests_total{method="RasterizeBatch",code="OK"}')).toBeGreaterThan(0);
    expect(sample(text, 'rasterd_request_duration_seconds_count{method="Rasterize"}')).toBeGreaterThan(0);
    for (const stage of ['mapQuery', 'roadmap', 'agents', 'baselines', 'ego', 'serialization', 'encode']) {
      expect(sample(text, `rasterd_stage_duration_seconds_count{stage="${stage}"}`), stage).toBeGreaterThan(0);
    }
    expect(sample(text, 'rasterd_batch_size_count')).toBeGreaterThan(0);
    expect(sample(text, 'rasterd_calls_in_flight')).toBe(0);
    expect(sample(text, 'rasterd_maps_loaded')).toBe(1);
    expect(sample(text, 'rasterd_map_features{map="town-a",table="lanes_polygons"}')).toBe(124);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    // No GPU provider is set on the CPU, so the gauge has no sample.
    expect(text).toContain('# TYPE rasterd_gpu_memory_used_bytes gauge');
    expect(text).not.toMatch(/^rasterd_gpu_memory_used_bytes\{/m);
  });
});

describe('rasterd serve cancellation', () => {
  it('stops a batch when the caller cancels', async () => {
    const server = await startTestServer(['--map', `town-a=${townMap}`, '--metrics-port', '0', '--max-batch-size', '64']);
    const client = new grpc.Client(server.target, grpc.credentials.createInsecure());
    try {
      // Size the batch from one raster's time so that it runs for about 3 s on any machine.
      const big = { ...validRequest, config: { targetWidth: 512, targetHeight: 512, targetPixelSize: 0.5 } };
      let fastestMs = Infinity;
      for (let warmUp = 0; warmUp < 3; warmUp++) {
        const started = performance.now();
        await server.call('Rasterize', big);
        fastestMs = Math.min(fastestMs, performance.now() - started);
      }
      const entries = Math.min(60, Math.max(8, Math.ceil(3000 / fastestMs)));
      const bytes = encodeRequest('RasterizeBatch', { requests: Array.from({ length: entries }, () => big) });
      const outcome = new Promise<grpc.status>((resolve) => {
        const call = client.makeUnaryRequest<Buffer, Buffer>('/rasterd.v1.RasterService/RasterizeBatch', (value) => value, (value) => value, bytes, (error) => resolve(error ? error.code : grpc.status.OK));
        setTimeout(() => call.cancel(), 150);
      });
      expect(await outcome).toBe(grpc.status.CANCELLED);

      const port = metricsPortOf(server);
      let text = '';
      for (let attempt = 0; attempt < 50 && sample(text, 'rasterd_requests_total{method="RasterizeBatch",code="CANCELLED"}') === undefined; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        text = await scrape(port);
      }
      expect(sample(text, 'rasterd_requests_total{method="RasterizeBatch",code="CANCELLED"}')).toBe(1);
      // The server stopped between entries instead of building every raster (three came from the timing calls).
      expect(sample(text, 'rasterd_raster_duration_seconds_count')! - 3, `of ${entries} entries`).toBeLessThan(entries);
    } finally {
      client.close();
      await server.stop();
    }
  }, 60_000);
});

describe('rasterd serve with a bad map', () => {
  it('serves the good map and reports the bad one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rasterd-bad-map-'));
    const badPath = join(dir, 'map.gpkg');
    writeFileSync(badPath, 'not a database\n');
    const server = await startTestServer(['--map', `good=${townMap}`, '--map', `bad=${badPath}`]);
    const Health = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
    const health = new Health(server.target, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const check = (name: string) => new Promise<string>((resolve, reject) => health.check({ service: name }, (error: Error | null, reply: { status: string }) => (error ? reject(error) : resolve(reply.status))));
    try {
      expect(await check('rasterd.v1.RasterService/good')).toBe('SERVING');
      expect(await check('rasterd.v1.RasterService/bad')).toBe('NOT_SERVING');
      expect(await check('')).toBe('SERVING');
      const failure = server.logs.filter((line) => line.includes('"map":"bad"') && line.includes('"level":50'));
      expect(failure).toHaveLength(1);
      expect(failure[0]).toContain(`map ${badPath} is not a GeoPackage`);
      const reply = await server.call<{ raster: { shape: number[] } }>('Rasterize', requestOf('good', townA.scenes[0]));
      expect(reply.raster.shape).toEqual([224, 224, 4]);
    } finally {
      health.close();
      await server.stop();
    }
  }, 60_000);
});

describe('rasterd serve shutdown under load', () => {
  it('ends calls as OK, CANCELLED or UNAVAILABLE and exits 0', async () => {
    const server = await startTestServer(['--map', `town-a=${townMap}`, '--shutdown-grace-ms', '3000']);
    const raw = new RawClient(server.target);
    const unary = encodeRequest('Rasterize', validRequest);
    const batch = encodeRequest('RasterizeBatch', { requests: [validRequest, validRequest, validRequest] });
    const codes: grpc.status[] = [];
    const deadline = Date.now() + 20_000;
    let stopping = false;

    // Eight clients loop until their call fails or the test's deadline passes.
    const clients = Array.from({ length: 8 }, async (_, client) => {
      while (Date.now() < deadline) {
        let code: grpc.status;
        if (client % 4 === 3) {
          code = (await raw.stream([unary, unary, unary, unary], 15_000)).code;
        } else {
          code = (await raw.unary(client % 4 === 2 ? 'RasterizeBatch' : 'Rasterize', client % 4 === 2 ? batch : unary, 15_000)).code;
        }
        codes.push(code);
        if (code !== grpc.status.OK && stopping) return;
      }
    });

    await new Promise((resolve) => setTimeout(resolve, 1_500));
    stopping = true;
    const exitCode = server.stop('SIGTERM');
    await Promise.all(clients);
    raw.close();

    expect(await exitCode).toBe(0);
    expect(codes.filter((code) => code === grpc.status.OK).length).toBeGreaterThan(10);
    const unexpected = codes.filter((code) => ![grpc.status.OK, grpc.status.CANCELLED, grpc.status.UNAVAILABLE].includes(code));
    expect(unexpected.map((code) => grpc.status[code])).toEqual([]);
  }, 60_000);
});
