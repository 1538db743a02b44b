import { CHANNELS, type RasterResult, type StageTimings } from '../raster/scene.js';

/**
 * Hand-written protobuf encoding of RasterizeResponse, so that the raster's bytes are copied once
 * into the wire buffer instead of going through protobufjs. Field numbers follow
 * proto/rasterd/v1/raster_service.proto.
 */

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    length++;
  }
  return length;
}

function writeVarint(buffer: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    buffer[offset++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  buffer[offset++] = value;
  return offset;
}

const CHANNEL_BYTES = CHANNELS.map((channel) => Buffer.from(channel, 'utf8'));
const TIMING_FIELDS: Array<keyof StageTimings> = ['mapQuery', 'roadmap', 'agents', 'baselines', 'ego', 'serialization', 'total'];
/** StageTimings fields 1..7: map_query_us, roadmap_us, agents_us, baselines_us, ego_us, serialization_us, total_us. */
const TIMINGS_LENGTH = TIMING_FIELDS.length * 9;

/** Size of the encoded RasterizeResponse of `result` [bytes]. */
export function encodedResponseLength(result: RasterResult, includeTimings: boolean): number {
  const dataBytes = result.data.byteLength;
  let shapeBytes = 0;
  for (const dim of result.shape) shapeBytes += varintLength(dim);
  const tensorLength = 1 + varintLength(shapeBytes) + shapeBytes + 1 + varintLength(dataBytes) + dataBytes;

  let length = 1 + varintLength(tensorLength) + tensorLength;
  for (const channel of CHANNEL_BYTES) length += 1 + varintLength(channel.length) + channel.length;
  if (includeTimings) length += 1 + varintLength(TIMINGS_LENGTH) + TIMINGS_LENGTH;
  return length;
}

/**
 * Writes RasterizeResponse{raster: Tensor{shape, dtype FLOAT32, data}, channels, timings?} into
 * `buffer` at `offset`; returns the offset after it.
 */
export function writeResponse(buffer: Buffer, offset: number, result: RasterResult, includeTimings: boolean): number {
  const dataBytes = result.data.byteLength;
  let shapeBytes = 0;
  for (const dim of result.shape) shapeBytes += varintLength(dim);
  const tensorLength = 1 + varintLength(shapeBytes) + shapeBytes + 1 + varintLength(dataBytes) + dataBytes;

  buffer[offset++] = 0x0a; // raster = 1
  offset = writeVarint(buffer, offset, tensorLength);
  buffer[offset++] = 0x0a; // shape = 1, packed
  offset = writeVarint(buffer, offset, shapeBytes);
  for (const dim of result.shape) offset = writeVarint(buffer, offset, dim);
  buffer[offset++] = 0x1a; // data = 3 (dtype FLOAT32 = 0 is the default and is left out)
  offset = writeVarint(buffer, offset, dataBytes);
  offset += Buffer.from(result.data.buffer, result.data.byteOffset, dataBytes).copy(buffer, offset);

  for (const channel of CHANNEL_BYTES) {
    buffer[offset++] = 0x12; // channels = 2
    offset = writeVarint(buffer, offset, channel.length);
    offset += channel.copy(buffer, offset);
  }

  if (includeTimings) {
    buffer[offset++] = 0x1a; // timings = 3
    offset = writeVarint(buffer, offset, TIMINGS_LENGTH);
    TIMING_FIELDS.forEach((field, i) => {
      buffer[offset++] = ((i + 1) << 3) | 1;
      offset = buffer.writeDoubleLE(result.timings[field], offset);
    });
  }
  return offset;
}

/** Encodes one RasterizeResponse. */
export function encodeResponse(result: RasterResult, includeTimings: boolean): Buffer {
  const buffer = Buffer.allocUnsafe(encodedResponseLength(result, includeTimings));
  writeResponse(buffer, 0, result, includeTimings);
  return buffer;
}

/** Encodes RasterizeBatchResponse{responses: [...]}: each response as field 1. */
export function encodeBatchResponse(results: RasterResult[], includeTimings: boolean[]): Buffer {
  const lengths = results.map((result, i) => encodedResponseLength(result, includeTimings[i]));
  const total = lengths.reduce((sum, length) => sum + 1 + varintLength(length) + length, 0);
  const buffer = Buffer.allocUnsafe(total);
  let offset = 0;
  results.forEach((result, i) => {
    buffer[offset++] = 0x0a;
    offset = writeVarint(buffer, offset, lengths[i]);
    offset = writeResponse(buffer, offset, result, includeTimings[i]);
  });
  return buffer;
}

/** A RasterizeResponse whose raster is drawn in place: `data` is a view of the wire buffer. */
export interface ResponseInPlace {
  /** Float32 view of the raster's bytes inside `buffer`; draw into it, then call finish. */
  data: Float32Array;
  /** Writes the fields after the raster (channels, timings) and returns the encoded message. */
  finish(result: RasterResult, includeTimings: boolean): Buffer;
}

/**
 * Allocates an encoded RasterizeResponse for a raster of `shape` and returns a float32 view of its
 * data field, so that the rasterizer draws straight into the bytes that go on the wire (no second
 * copy of the 0.8 MB raster). The buffer is offset inside its ArrayBuffer so that the view is
 * 4-byte aligned.
 */
export function allocateResponse(shape: [number, number, number], includeTimings: boolean): ResponseInPlace {
  const values = shape[0] * shape[1] * shape[2];
  const placeholder: RasterResult = {
    data: new Float32Array(0), shape,
    timings: { mapQuery: 0, roadmap: 0, agents: 0, baselines: 0, ego: 0, serialization: 0, total: 0 },
  };
  const dataBytes = values * 4;
  let shapeBytes = 0;
  for (const dim of shape) shapeBytes += varintLength(dim);
  const tensorLength = 1 + varintLength(shapeBytes) + shapeBytes + 1 + varintLength(dataBytes) + dataBytes;
  const headerBytes = 1 + varintLength(tensorLength) + 1 + varintLength(shapeBytes) + shapeBytes + 1 + varintLength(dataBytes);
  const total = encodedResponseLength({ ...placeholder, data: { byteLength: dataBytes } as Float32Array }, includeTimings);

  const pad = (4 - (headerBytes % 4)) % 4;
  const memory = new ArrayBuffer(pad + total);
  const buffer = Buffer.from(memory, pad, total);
  let offset = 0;
  buffer[offset++] = 0x0a;
  offset = writeVarint(buffer, offset, tensorLength);
  buffer[offset++] = 0x0a;
  offset = writeVarint(buffer, offset, shapeBytes);
  for (const dim of shape) offset = writeVarint(buffer, offset, dim);
  buffer[offset++] = 0x1a;
  offset = writeVarint(buffer, offset, dataBytes);
  const data = new Float32Array(memory, pad + offset, values);
  const trailerStart = offset + dataBytes;

  return {
    data,
    finish(result: RasterResult, withTimings: boolean): Buffer {
      let end = trailerStart;
      for (const channel of CHANNEL_BYTES) {
        buffer[end++] = 0x12;
        end = writeVarint(buffer, end, channel.length);
        end += channel.copy(buffer, end);
      }
      if (withTimings) {
        buffer[end++] = 0x1a;
        end = writeVarint(buffer, end, TIMINGS_LENGTH);
        TIMING_FIELDS.forEach((field, i) => {
          buffer[end++] = ((i + 1) << 3) | 1;
          end = buffer.writeDoubleLE(result.timings[field], end);
        });
      }
      return buffer.subarray(0, end);
    },
  };
}
