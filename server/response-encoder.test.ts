import { describe, expect, it } from 'vitest';

import type { RasterResult } from '../raster/scene.js';
import { loadRasterProto } from './proto.js';
import { allocateResponse, encodeResponse } from './response-encoder.js';

const timings = { mapQuery: 1.5, roadmap: 2.5, agents: 3.5, baselines: 4.5, ego: 5.5, serialization: 6.5, total: 7.5 };

function sampleResult(rows: number, cols: number): RasterResult {
  const data = new Float32Array(rows * cols * 4);
  for (let i = 0; i < data.length; i++) data[i] = (i % 7) / 7;
  return { data, shape: [rows, cols, 4], timings };
}

describe('response encoding', () => {
  it.each([[224, 224], [160, 160], [1, 1], [37, 37]])('in-place encoding equals the copying one at %i px', (rows, cols) => {
    for (const includeTimings of [false, true]) {
      const expected = sampleResult(rows, cols);
      const response = allocateResponse([rows, cols, 4], includeTimings);
      expect(response.data.byteOffset % 4).toBe(0);
      response.data.set(expected.data);
      const encoded = response.finish({ ...expected, data: response.data }, includeTimings);
      expect(Buffer.compare(encoded, encodeResponse(expected, includeTimings))).toBe(0);
    }
  });

  it('decodes with the proto definition', () => {
    const result = sampleResult(8, 8);
    const encoded = encodeResponse(result, true);
    const type = (loadRasterProto()['rasterd.v1.RasterizeResponse'] as { type: unknown }).type;
    expect(type).toBeDefined();
    const deserialize = (loadRasterProto()['rasterd.v1.RasterService'] as Record<string, { responseDeserialize(bytes: Buffer): any }>).Rasterize.responseDeserialize;
    const message = deserialize(encoded);
    expect(message.raster.shape).toEqual([8, 8, 4]);
    expect(message.channels).toEqual(['ego', 'agents', 'roadmap', 'baseline_paths']);
    expect(message.timings.totalUs).toBe(7.5);
    const data = new Float32Array(new Uint8Array(message.raster.data).buffer);
    expect(Buffer.compare(Buffer.from(data.buffer), Buffer.from(result.data.buffer))).toBe(0);
  });
});
