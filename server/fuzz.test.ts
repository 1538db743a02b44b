import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { expectedRaster, LOCAL_FIXTURES, loadParitySet } from '../test/fixtures.js';
import { decodeResponse, encodeRequest, RawClient } from '../test/raw-client.js';
import { requestOf, startTestServer, type TestServer } from '../test/server-harness.js';
import { createRandom } from '../maps/seeded-random.js';

/**
 * Bounded fuzzing of the gRPC surface: random and mutated requests, and raw protobuf bytes that are
 * truncated or corrupted. After every case a valid request must still return nuPlan's exact raster.
 */
const MAX_CASES = 1500;
const TIME_LIMIT_MS = 40_000;
const SEED = 20_240_611;
/** Replies that rasterd documents for a request it cannot serve. */
const DOCUMENTED = new Set([
  grpc.status.OK, grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND, grpc.status.FAILED_PRECONDITION,
  grpc.status.UNIMPLEMENTED, grpc.status.RESOURCE_EXHAUSTED,
]);

const townMap = join(LOCAL_FIXTURES, 'maps/town-a/1.0.0/map.gpkg');
const townA = loadParitySet('town-a')!;


type Json = Record<string, unknown>;

const NASTY_NUMBERS = [NaN, Infinity, -Infinity, 0, -0, -1, 1, 0.5, -1e-300, 1e-300, 1e308, -1e308, 2 ** 31 - 1, -(2 ** 31), 2 ** 53, 4096, 100_000, 3.3e9];
const NASTY_STRINGS = ['', 'LANE', 'lane', 'SIDEWALK', 'ROADMAP_MODE_TILES', 'ROADMAP_MODE_EXACT', 'town-a', 'atlantis', 'x'.repeat(5000), '\u0000\u00ff\ud83d\ude00', 'PEDESTRIAN'];
/** Numeric and enum field paths of a RasterizeRequest, as the client object spells them. */
const NUMERIC_PATHS = [
  'ego.rearAxle.x', 'ego.rearAxle.y', 'ego.rearAxle.heading',
  'ego.vehicle.width', 'ego.vehicle.frontLength', 'ego.vehicle.rearLength', 'ego.vehicle.wheelBase', 'ego.vehicle.cogPositionFromRearAxle', 'ego.vehicle.height',
  'trackedObjects.0.center.x', 'trackedObjects.0.center.y', 'trackedObjects.0.center.heading', 'trackedObjects.0.length', 'trackedObjects.0.width', 'trackedObjects.0.height',
  'config.targetWidth', 'config.targetHeight', 'config.targetPixelSize', 'config.egoWidth', 'config.egoFrontLength', 'config.egoRearLength',
  'config.egoLongitudinalOffset', 'config.baselinePathThickness', 'config.mapFeatures.0.color',
];
const ENUM_PATHS = ['trackedObjects.0.type', 'config.roadmapMode'];
const STRING_PATHS = ['mapName', 'config.mapFeatures.0.layer', 'trackedObjects.0.trackToken'];

/** Sets `value` at a dotted path such as trackedObjects.0.center.x, creating the objects and arrays on the way. */
function setPath(target: Json, path: string, value: unknown): void {
  const keys = path.split('.');
  let node: Json = target;
  for (let i = 0; i < keys.length - 1; i++) {
    const child = node[keys[i]];
    if (child === undefined || child === null || typeof child !== 'object') node[keys[i]] = /^\d+$/.test(keys[i + 1]) ? [] : {};
    node = node[keys[i]] as Json;
  }
  node[keys[keys.length - 1]] = value;
}

/** One fuzz case: the method, the request bytes, and a label for the report. */
interface FuzzCase {
  kind: string;
  method: 'Rasterize' | 'RasterizeBatch' | 'RasterizeStream';
  bytes: Buffer[];
}

function caseGenerator(random: () => number, valid: Json, validBytes: Buffer) {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const copy = (): Json => structuredClone(valid);

  const mutateFields = (): Json => {
    const request = copy();
    const mutations = 1 + Math.floor(random() * 3);
    for (let i = 0; i < mutations; i++) {
      const choice = random();
      if (choice < 0.6) setPath(request, pick(NUMERIC_PATHS), pick(NASTY_NUMBERS));
      else if (choice < 0.75) setPath(request, pick(ENUM_PATHS), pick([8, 99, -1, 2 ** 31 - 1, 3, 'VEHICLE', 'ROADMAP_MODE_TILES']));
      else if (choice < 0.9) setPath(request, pick(STRING_PATHS), pick(NASTY_STRINGS));
      else setPath(request, pick(['ego', 'ego.rearAxle', 'config', 'trackedObjects.0.center']), null);
    }
    return request;
  };

  const objectList = (count: number): Json[] =>
    Array.from({ length: count }, (_, i) => ({
      center: { x: 664_300 + (i % 200) - 100, y: 3_997_600 + Math.floor(i / 200) - 25, heading: i * 0.1 }, length: 4.5, width: 1.9, type: pick([0, 1, 2, 'BARRIER']),
    }));

  const mutateBytes = (bytes: Buffer): Buffer => {
    const choice = random();
    if (choice < 0.4) return bytes.subarray(0, Math.floor(random() * bytes.length));
    const copyBytes = Buffer.from(bytes);
    if (choice < 0.8) {
      const flips = 1 + Math.floor(random() * 8);
      for (let i = 0; i < flips; i++) copyBytes[Math.floor(random() * copyBytes.length)] = Math.floor(random() * 256);
      return copyBytes;
    }
    if (choice < 0.9) return Buffer.from(Array.from({ length: Math.floor(random() * 512) }, () => Math.floor(random() * 256)));
    const at = Math.floor(random() * bytes.length);
    return Buffer.concat([bytes.subarray(0, at), Buffer.from(Array.from({ length: 1 + Math.floor(random() * 16) }, () => Math.floor(random() * 256))), bytes.subarray(at)]);
  };

  /** Encodes a request object, or returns null when protobufjs cannot encode it (then the case uses raw bytes). */
  const encode = (method: string, request: unknown): Buffer | null => {
    try {
      return encodeRequest(method, request);
    } catch {
      return null;
    }
  };

  return (): FuzzCase => {
    const choice = random();
    if (choice < 0.45) {
      const bytes = encode('Rasterize', mutateFields());
      return bytes ? { kind: 'mutated fields', method: 'Rasterize', bytes: [bytes] } : { kind: 'raw bytes', method: 'Rasterize', bytes: [mutateBytes(validBytes)] };
    }
    if (choice < 0.7) return { kind: 'raw bytes', method: 'Rasterize', bytes: [mutateBytes(validBytes)] };
    if (choice < 0.78) {
      const count = pick([0, 1, 10_000, 10_001, 20_000]);
      const bytes = encode('Rasterize', { ...copy(), trackedObjects: objectList(count) })!;
      return { kind: `${count} tracked objects`, method: 'Rasterize', bytes: [bytes] };
    }
    if (choice < 0.86) {
      const entries = Array.from({ length: pick([0, 1, 3, 300]) }, () => (random() < 0.7 ? copy() : mutateFields()));
      const bytes = encode('RasterizeBatch', { requests: entries });
      return bytes ? { kind: 'batch', method: 'RasterizeBatch', bytes: [bytes] } : { kind: 'raw batch bytes', method: 'RasterizeBatch', bytes: [mutateBytes(encode('RasterizeBatch', { requests: [valid] })!)] };
    }
    if (choice < 0.9) return { kind: 'raw batch bytes', method: 'RasterizeBatch', bytes: [mutateBytes(encode('RasterizeBatch', { requests: [valid, valid] })!)] };
    const steps = Array.from({ length: 1 + Math.floor(random() * 4) }, () => {
      if (random() < 0.5) return validBytes;
      return random() < 0.5 ? encode('Rasterize', mutateFields()) ?? mutateBytes(validBytes) : mutateBytes(validBytes);
    });
    return { kind: 'stream', method: 'RasterizeStream', bytes: steps };
  };
}

describe('request fuzzing', () => {
  let server: TestServer;
  let raw: RawClient;
  beforeAll(async () => {
    server = await startTestServer(['--map', `town-a=${townMap}`, '--max-raster-size', '512'], 60_000);
    raw = new RawClient(server.target);
  }, 60_000);
  afterAll(async () => {
    raw?.close();
    await server?.stop();
  });

  it('never crashes, hangs or returns a wrong raster', async () => {
    const scene = townA.scenes[0];
    const valid = requestOf('town-a', scene) as unknown as Json;
    const validBytes = encodeRequest('Rasterize', valid);
    const expected = expectedRaster(townA, scene.id);
    const expectedBytes = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
    const nextCase = caseGenerator(createRandom(SEED), valid, validBytes);

    const codes = new Map<string, number>();
    const undocumented: string[] = [];
    const started = Date.now();
    let cases = 0;
    while (cases < MAX_CASES && Date.now() - started < TIME_LIMIT_MS) {
      const fuzz = nextCase();
      cases++;
      let code: grpc.status;
      let details: string;
      if (fuzz.method === 'RasterizeStream') {
        ({ code, details } = await raw.stream(fuzz.bytes, 20_000));
      } else {
        ({ code, details } = await raw.unary(fuzz.method, fuzz.bytes[0], 20_000));
      }
      const name = grpc.status[code];
      codes.set(name, (codes.get(name) ?? 0) + 1);
      if (!DOCUMENTED.has(code)) undocumented.push(`case ${cases} (${fuzz.kind}, ${fuzz.method}): ${name} ${details}`);

      const check = await raw.unary('Rasterize', validBytes, 20_000);
      expect(check.code, `valid request after case ${cases} (${fuzz.kind}): ${check.details}`).toBe(grpc.status.OK);
      const response = decodeResponse<{ raster: { data: Buffer } }>('Rasterize', check.bytes!);
      expect(Buffer.compare(response.raster.data, expectedBytes), `raster after case ${cases} (${fuzz.kind})`).toBe(0);
    }

    const summary = [...codes].map(([name, count]) => `${name} ${count}`).join(', ');
    console.log(`fuzzed ${cases} cases in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${SEED}): ${summary}`);
    expect(undocumented).toEqual([]);
    expect(server.process.exitCode).toBeNull();
    const serverErrors = server.logs.filter((line) => /"level":(50|60)/.test(line));
    expect(serverErrors).toEqual([]);
  }, TIME_LIMIT_MS + 30_000);
});
