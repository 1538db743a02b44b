import { randomUUID } from 'node:crypto';

import {
  Metadata, status, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type ServiceDefinition, type UntypedServiceImplementation,
} from '@grpc/grpc-js';

import type { MapData } from '../maps/map-data.js';
import { CpuRasterizer, tilesFor } from '../raster/cpu-rasterizer.js';
import type { Rasterizer } from '../raster/rasterizer.js';
import type { RasterResult } from '../raster/scene.js';
import type { RasterSettings } from '../raster/settings.js';
import { isClientError, StatusError, toServiceError } from './errors.js';
import type { Logger } from './logger.js';
import type { MapRegistry } from './map-registry.js';
import type { ServerMetrics } from './metrics.js';
import type { MicroBatcher } from './micro-batcher.js';
import {
  InvalidRequestError, maxResponseBytes, parseRasterizeRequest, quote, responseBytesOf, UndecodableMessage,
  type ParsedRequest, type RasterizeRequestMessage, type RequestLimits,
} from './request.js';
import { allocateResponse, encodeBatchResponse, encodeResponse } from './response-encoder.js';

/** What the RasterizeResponse serializer receives: the bytes are already encoded. */
export interface EncodedMessage {
  encoded: Buffer;
}

/** Settings of the RasterService handlers. */
export interface RasterServiceOptions {
  registry: MapRegistry;
  rasterizer: Rasterizer;
  defaults: RasterSettings;
  limits: RequestLimits;
  logger: Logger;
  version: string;
  /** Calls served at once before RESOURCE_EXHAUSTED; each stream step being served counts as one. */
  maxConcurrentCalls: number;
  /** GPU name and memory for GetServerInfo; empty on the CPU. */
  gpuName?: string;
  gpuMemoryBytes?: number;
  metrics?: ServerMetrics;
  /** Gathers concurrent unary calls into batches when set (--batch-window-us). */
  batcher?: MicroBatcher;
}

/** Rasters per rasterizeBatch call within one RasterizeBatch: cancellation is checked between chunks. */
const CPU_BATCH_CHUNK = 8;
const GPU_BATCH_CHUNK = 256;
/** Requests a stream may queue before the server stops reading from it; HTTP/2 flow control then blocks the client. */
const STREAM_QUEUE_LIMIT = 8;
/** Client-supplied x-request-id values longer than this, or with other than printable ASCII, are replaced. */
const MAX_REQUEST_ID_LENGTH = 128;
/** Client errors logged per status code and window; the rest are counted and reported at the window's end. */
const CLIENT_ERROR_LOG_LIMIT = 20;
const CLIENT_ERROR_LOG_WINDOW_MS = 10_000;

function mapInfo(map: MapData) {
  return { name: map.name, version: map.version, projectedCrs: map.projectedCrs, layerCounts: map.layerCounts };
}

/** A validated request with its map, ready to render. */
interface PreparedRequest {
  request: ParsedRequest;
  map: MapData;
}

/** Per-call state for logging, metrics and cancellation. */
interface CallContext {
  method: string;
  requestId: string;
  started: number;
  call: { cancelled?: boolean; getDeadline(): Date | number };
}

function deadlineOf(call: { getDeadline(): Date | number }): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** Resolves after pending I/O callbacks ran, so that cancellations and new calls are seen between rasters. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Returns the request id of a call: the client's x-request-id when it is usable, else a new UUID. */
function requestIdOf(metadata: Metadata | undefined): string {
  const supplied = metadata?.get('x-request-id')[0];
  if (typeof supplied === 'string' && supplied.length > 0 && supplied.length <= MAX_REQUEST_ID_LENGTH && /^[\x21-\x7e]+$/.test(supplied)) return supplied;
  return randomUUID();
}

/**
 * Resolves when `stream` can take more writes, ends, fails, or reaches its deadline, whichever
 * comes first. Listeners are removed in every case.
 */
function writable(stream: ServerDuplexStream<unknown, unknown>): Promise<void> {
  return new Promise((resolve) => {
    const events = ['drain', 'cancelled', 'close', 'error', 'finish'];
    const remaining = deadlineOf(stream) - Date.now();
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      for (const event of events) stream.off(event, done);
      clearTimeout(timer);
      resolve();
    };
    for (const event of events) stream.on(event, done);
    // setTimeout takes at most 2^31 - 1 ms; longer and infinite deadlines wait for an event.
    if (remaining < 2 ** 31 - 1) timer = setTimeout(done, Math.max(0, remaining));
  });
}

/** Error for a call that the caller cancelled or abandoned: no reply reaches it, so none is sent. */
class CallCancelledError extends Error {
  constructor() {
    super('the caller cancelled the call');
    this.name = 'CallCancelledError';
  }
}

/** The RasterService RPC handlers, with admission control, cancellation, logging and metrics. */
export class RasterService {
  private inFlight = 0;
  private cpuForTiles: CpuRasterizer | null = null;
  private draining = false;
  /** Open streams, ended with UNAVAILABLE when the server drains. */
  private readonly streams = new Set<{ drain(): void }>();
  private readonly clientErrorLog = new Map<string, { windowStart: number; logged: number; suppressed: number }>();
  private readonly responseLimit: number;

  constructor(private readonly options: RasterServiceOptions) {
    this.responseLimit = maxResponseBytes(options.limits);
  }

  /** Calls being served now, each stream step being served counted as one. */
  get callsInFlight(): number {
    return this.inFlight;
  }

  /** Largest response this service sends [bytes]; the gRPC send limit. */
  get maxResponseBytes(): number {
    return this.responseLimit;
  }

  /**
   * Starts a graceful stop: new calls get UNAVAILABLE, calls in flight finish, and each open stream
   * ends with UNAVAILABLE after the step it is serving.
   */
  beginDrain(): void {
    this.draining = true;
    for (const stream of this.streams) stream.drain();
  }

  private findMap(name: string, field = 'map_name'): MapData {
    const map = this.options.registry.get(name);
    if (!map) {
      const known = this.options.registry.names();
      throw new StatusError(status.NOT_FOUND, `${field} ${quote(name)} is not loaded; this server has ${known.length > 0 ? known.join(', ') : 'no maps'}`);
    }
    return map;
  }

  /** Validates one request and finds its map, before any raster work. */
  private prepare(message: RasterizeRequestMessage | UndecodableMessage): PreparedRequest {
    const request = parseRasterizeRequest(message, this.options.defaults, this.options.limits);
    const map = this.findMap(request.mapName);
    // Tiles mode needs tiles for the request's map_features; tilesFor raises FAILED_PRECONDITION otherwise.
    if (request.settings.roadmapMode === 'tiles') tilesFor(map, request.settings);
    return { request, map };
  }

  /** Picks the rasterizer for a request: tiles mode samples its tiles on the CPU whatever the device. */
  private rasterizerFor(request: ParsedRequest): Rasterizer {
    if (request.settings.roadmapMode === 'tiles' && this.options.rasterizer.device !== 'cpu') {
      this.cpuForTiles ??= new CpuRasterizer();
      return this.cpuForTiles;
    }
    return this.options.rasterizer;
  }

  /** Builds one raster and records its stage timings. */
  private render(prepared: PreparedRequest, out?: Float32Array): RasterResult {
    const result = this.rasterizerFor(prepared.request).rasterize(prepared.map, prepared.request.scene, prepared.request.settings, out);
    this.options.metrics?.recordRaster(result.timings);
    return result;
  }

  /** Builds one raster straight into its encoded response and returns the response bytes. */
  private renderEncoded(prepared: PreparedRequest): Buffer {
    const { settings, includeTimings } = prepared.request;
    const response = allocateResponse([settings.targetWidth, settings.targetHeight, 4], includeTimings);
    const result = this.render(prepared, response.data);
    if (result.data !== response.data) return this.encodeOne(result, includeTimings);
    const started = performance.now();
    const encoded = response.finish(result, includeTimings);
    this.options.metrics?.recordEncode((performance.now() - started) * 1000);
    return encoded;
  }

  /**
   * Builds many rasters, batched per rasterizer (worker threads on the CPU, one launch sequence per
   * chunk on the GPU); results are in request order. `beforeChunk` runs before each chunk, so that a
   * cancelled call stops between chunks.
   */
  private async renderBatch(prepared: PreparedRequest[], beforeChunk: () => void): Promise<RasterResult[]> {
    const results: RasterResult[] = new Array(prepared.length);
    const groups = new Map<Rasterizer, number[]>();
    prepared.forEach((entry, i) => {
      const rasterizer = this.rasterizerFor(entry.request);
      const group = groups.get(rasterizer);
      if (group) group.push(i);
      else groups.set(rasterizer, [i]);
    });

    for (const [rasterizer, indices] of groups) {
      const chunkSize = rasterizer.device === 'cpu' ? CPU_BATCH_CHUNK : GPU_BATCH_CHUNK;
      for (let start = 0; start < indices.length; start += chunkSize) {
        if (start > 0) await nextTurn();
        beforeChunk();
        const chunk = indices.slice(start, start + chunkSize);
        const batch = await rasterizer.rasterizeBatch(chunk.map((i) => ({
          mapName: prepared[i].request.mapName, map: prepared[i].map, scene: prepared[i].request.scene, settings: prepared[i].request.settings,
        })));
        chunk.forEach((index, k) => {
          results[index] = batch[k];
          this.options.metrics?.recordRaster(batch[k].timings);
        });
      }
    }
    return results;
  }

  /** Encodes one response and records the time it took. */
  private encodeOne(result: RasterResult, includeTimings: boolean): Buffer {
    const started = performance.now();
    const encoded = encodeResponse(result, includeTimings);
    this.options.metrics?.recordEncode((performance.now() - started) * 1000);
    return encoded;
  }

  /**
   * Returns the error for a call that cannot start (draining, over the concurrency limit, or past
   * its deadline), or null when it may start.
   * NOTE: the limit counts calls, not bytes, so queued calls can hold up to maxConcurrentCalls
   * requests of --max-message-bytes each in memory.
   */
  private admissionError(method: string, call: { getDeadline(): Date | number }): StatusError | null {
    if (this.draining) return new StatusError(status.UNAVAILABLE, `${method}: rasterd is shutting down; retry on another server or after it restarts`);
    if (this.inFlight >= this.options.maxConcurrentCalls) {
      return new StatusError(status.RESOURCE_EXHAUSTED, `${method}: server is busy with ${this.inFlight} calls (limit ${this.options.maxConcurrentCalls}); retry with backoff`);
    }
    if (deadlineOf(call) <= Date.now()) return new StatusError(status.DEADLINE_EXCEEDED, `${method}: the deadline passed before the server started the call`);
    return null;
  }

  /**
   * Throws when the deadline passed or the caller went away; called before each raster. The deadline
   * is checked first because grpc-js marks a call cancelled when it replies DEADLINE_EXCEEDED itself.
   * NOTE: a raster being built is not interrupted; the CPU rasterizer runs it to the end on this thread.
   */
  private checkStillWanted(context: CallContext): void {
    if (deadlineOf(context.call) <= Date.now()) {
      throw new StatusError(status.DEADLINE_EXCEEDED, `${context.method}: the deadline passed after ${Math.round(performance.now() - context.started)} ms; raise the deadline or send smaller batches`);
    }
    if (context.call.cancelled) throw new CallCancelledError();
  }

  /**
   * Logs a failed call once. Server faults are logged as errors every time; client errors and
   * cancellations at most CLIENT_ERROR_LOG_LIMIT times per code and window.
   */
  private logFailure(context: CallContext, error: unknown, code: status, details: string): void {
    const fields = { requestId: context.requestId, method: context.method, code: status[code], details };
    if (error instanceof CallCancelledError) {
      this.options.logger.debug(fields, `${context.method} cancelled by the caller`);
      return;
    }
    if (!isClientError(error) && code === status.INTERNAL) {
      this.options.logger.error({ ...fields, err: error }, `${context.method} failed: ${details}`);
      return;
    }

    const now = Date.now();
    const key = status[code] ?? String(code);
    let entry = this.clientErrorLog.get(key);
    if (!entry || now - entry.windowStart >= CLIENT_ERROR_LOG_WINDOW_MS) {
      if (entry && entry.suppressed > 0) {
        this.options.logger.warn({ code: key, suppressed: entry.suppressed }, `${entry.suppressed} more ${key} replies were not logged in the last ${CLIENT_ERROR_LOG_WINDOW_MS / 1000} s`);
      }
      entry = { windowStart: now, logged: 0, suppressed: 0 };
      this.clientErrorLog.set(key, entry);
    }
    if (entry.logged >= CLIENT_ERROR_LOG_LIMIT) {
      entry.suppressed++;
      return;
    }
    entry.logged++;
    this.options.logger.warn(fields, `${context.method} rejected with ${key}: ${details}`);
  }

  private finish(context: CallContext, code: status): void {
    this.options.metrics?.recordCall(context.method, status[code] ?? String(code), (performance.now() - context.started) / 1000);
  }

  /**
   * Serves one unary call: admission, a turn of the event loop so that cancellations are seen,
   * the work, and exactly one reply (none when the caller cancelled).
   */
  private serveUnary<T>(
    method: string, call: ServerUnaryCall<unknown, unknown>, work: (context: CallContext) => Promise<T> | T, callback: sendUnaryData<T>,
  ): void {
    const context: CallContext = { method, requestId: requestIdOf(call.metadata), started: performance.now(), call };
    const trailer = new Metadata();
    trailer.set('x-request-id', context.requestId);
    const fail = (error: unknown): void => {
      const serviceError = error instanceof CallCancelledError ? { code: status.CANCELLED, details: error.message } : toServiceError(error);
      this.logFailure(context, error, serviceError.code!, serviceError.details!);
      this.finish(context, serviceError.code!);
      // A cancelled call, or one that grpc-js already ended at its deadline, takes no reply.
      if (!call.cancelled) callback({ ...serviceError, metadata: trailer });
    };

    const rejection = this.admissionError(method, call);
    if (rejection) {
      fail(rejection);
      return;
    }

    this.inFlight++;
    const run = async (): Promise<T> => {
      await nextTurn();
      this.checkStillWanted(context);
      return work(context);
    };
    run().then(
      (result) => {
        this.inFlight--;
        if (call.cancelled) {
          fail(deadlineOf(call) <= Date.now() ? new StatusError(status.DEADLINE_EXCEEDED, `${method}: the deadline passed while the server built the reply`) : new CallCancelledError());
          return;
        }
        this.finish(context, status.OK);
        callback(null, result, trailer);
      },
      (error: unknown) => {
        this.inFlight--;
        fail(error);
      },
    );
  }

  private async rasterizeBatch(context: CallContext, messages: Array<RasterizeRequestMessage | UndecodableMessage>): Promise<EncodedMessage> {
    const { limits } = this.options;
    if (messages.length > limits.maxBatchSize) {
      throw new InvalidRequestError('requests', `requests has ${messages.length} entries; the server accepts at most ${limits.maxBatchSize} per RasterizeBatch; split the batch`);
    }
    this.options.metrics?.recordBatchSize(messages.length);

    // Every entry is validated before the first raster is built.
    let responseBytes = 0;
    const prepared = messages.map((message, i) => {
      try {
        const entry = this.prepare(message);
        responseBytes += responseBytesOf(entry.request.settings);
        return entry;
      } catch (error) {
        if (error instanceof Error) error.message = `requests[${i}].${error.message}`;
        throw error;
      }
    });
    if (responseBytes > this.responseLimit) {
      throw new InvalidRequestError('requests', `the batch's responses would take ${responseBytes} bytes, more than the ${this.responseLimit} bytes the server sends in one message; split the batch`);
    }

    const results = await this.renderBatch(prepared, () => this.checkStillWanted(context));
    this.checkStillWanted(context);
    const started = performance.now();
    const encoded = encodeBatchResponse(results, prepared.map((entry) => entry.request.includeTimings));
    const encodeUs = ((performance.now() - started) * 1000) / Math.max(1, results.length);
    for (let i = 0; i < results.length; i++) this.options.metrics?.recordEncode(encodeUs);
    return { encoded };
  }

  /**
   * Serves a stream: steps in order, one at a time, each admitted like a call. The first failing
   * step ends the stream with its status and later steps are dropped.
   */
  private serveStream(call: ServerDuplexStream<RasterizeRequestMessage | UndecodableMessage, EncodedMessage>): void {
    const method = 'RasterizeStream';
    const context: CallContext = { method, requestId: requestIdOf(call.metadata), started: performance.now(), call };
    const queue: Array<RasterizeRequestMessage | UndecodableMessage> = [];
    let halfClosed = false;
    let closed = false;
    let busy = false;
    let paused = false;
    let steps = 0;

    const initial = new Metadata();
    initial.set('x-request-id', context.requestId);
    call.sendMetadata(initial);

    const close = (code: status, error?: unknown, details?: string): void => {
      if (closed) return;
      closed = true;
      queue.length = 0;
      this.streams.delete(handle);
      this.finish(context, code);
      if (code === status.OK) {
        this.options.logger.debug({ requestId: context.requestId, method, steps }, `${method} ended after ${steps} steps`);
        call.end();
        return;
      }
      this.logFailure(context, error, code, details ?? '');
      if (code !== status.CANCELLED) call.emit('error', { code, details, metadata: initial });
    };
    const fail = (error: unknown): void => {
      if (error instanceof CallCancelledError) {
        close(status.CANCELLED, error, error.message);
        return;
      }
      const serviceError = toServiceError(error);
      close(serviceError.code!, error, `step ${steps}: ${serviceError.details}`);
    };
    const handle = {
      drain: (): void => {
        if (!busy) fail(new StatusError(status.UNAVAILABLE, `${method}: rasterd is shutting down; reconnect and resend the steps that got no response`));
      },
    };
    this.streams.add(handle);

    const serveQueue = async (): Promise<void> => {
      busy = true;
      while (!closed && queue.length > 0) {
        const message = queue.shift()!;
        if (paused && queue.length < STREAM_QUEUE_LIMIT / 2) {
          paused = false;
          call.resume();
        }
        const rejection = this.admissionError(method, call);
        if (rejection) throw rejection;

        this.inFlight++;
        try {
          await nextTurn();
          this.checkStillWanted(context);
          const prepared = this.prepare(message);
          const encoded = this.renderEncoded(prepared);
          steps++;
          if (!call.write({ encoded }) && !closed && !call.cancelled) {
            // The client reads slower than the server writes: wait rather than buffer rasters.
            await writable(call);
          }
        } finally {
          this.inFlight--;
        }
      }
      busy = false;
      if (closed) return;
      if (halfClosed) close(status.OK);
      else if (this.draining) handle.drain();
    };
    const kick = (): void => {
      if (busy || closed) return;
      serveQueue().catch((error: unknown) => {
        busy = false;
        fail(error);
      });
    };

    call.on('data', (message: RasterizeRequestMessage | UndecodableMessage) => {
      if (closed) return;
      queue.push(message);
      if (queue.length >= STREAM_QUEUE_LIMIT && !paused) {
        paused = true;
        call.pause();
      }
      kick();
    });
    call.on('end', () => {
      halfClosed = true;
      kick();
    });
    call.on('cancelled', () => fail(new CallCancelledError()));
    call.on('error', (error) => fail(error));
  }

  /** Handlers keyed by RPC name, for grpc-js addService. */
  handlers(): UntypedServiceImplementation {
    return {
      Rasterize: (call: ServerUnaryCall<RasterizeRequestMessage | UndecodableMessage, EncodedMessage>, callback: sendUnaryData<EncodedMessage>) => {
        this.serveUnary('Rasterize', call, async () => {
          const prepared = this.prepare(call.request);
          const { batcher } = this.options;
          if (batcher && this.rasterizerFor(prepared.request) === this.options.rasterizer) {
            // Concurrent calls are gathered into one batch; each still gets its own reply.
            const { request, map } = prepared;
            const result = await batcher.submit({ mapName: request.mapName, map, scene: request.scene, settings: request.settings });
            this.options.metrics?.recordRaster(result.timings);
            return { encoded: this.encodeOne(result, request.includeTimings) };
          }
          return { encoded: this.renderEncoded(prepared) };
        }, callback);
      },

      RasterizeBatch: (call: ServerUnaryCall<{ requests?: RasterizeRequestMessage[] } | UndecodableMessage, EncodedMessage>, callback: sendUnaryData<EncodedMessage>) => {
        this.serveUnary('RasterizeBatch', call, (context) => {
          const message = call.request;
          if (message instanceof UndecodableMessage) {
            throw new InvalidRequestError('requests', `the request is not a valid RasterizeBatchRequest protobuf message (${message.reason})`);
          }
          return this.rasterizeBatch(context, message.requests ?? []);
        }, callback);
      },

      RasterizeStream: (call: ServerDuplexStream<RasterizeRequestMessage | UndecodableMessage, EncodedMessage>) => this.serveStream(call),

      ListMaps: (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        this.serveUnary('ListMaps', call, () => ({ maps: this.options.registry.names().map((name) => mapInfo(this.findMap(name))) }), callback);
      },

      GetServerInfo: (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        this.serveUnary('GetServerInfo', call, () => ({
          version: this.options.version,
          device: this.options.rasterizer.device,
          gpuName: this.options.gpuName ?? '',
          gpuMemoryBytes: this.options.gpuMemoryBytes ?? 0,
          maps: this.options.registry.names().map((name) => mapInfo(this.findMap(name))),
        }), callback);
      },
    };
  }
}

/**
 * Wraps each request deserializer of `definition` so that undecodable bytes reach the handler as an
 * UndecodableMessage, which the handler rejects with INVALID_ARGUMENT.
 */
export function withUndecodableRequests(definition: ServiceDefinition): ServiceDefinition {
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          return new UndecodableMessage((error as Error)?.message ?? String(error));
        }
      },
    };
  }
  return wrapped as ServiceDefinition;
}
