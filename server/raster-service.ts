import { randomUUID } from 'node:crypto';

import { status, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type UntypedServiceImplementation } from '@grpc/grpc-js';

import type { MapData } from '../maps/map-data.js';
import { CpuRasterizer, tilesFor } from '../raster/cpu-rasterizer.js';
import type { Rasterizer } from '../raster/rasterizer.js';
import type { RasterResult } from '../raster/scene.js';
import type { RasterSettings } from '../raster/settings.js';
import { isClientError, StatusError, toServiceError } from './errors.js';
import type { Logger } from './logger.js';
import type { MapRegistry } from './map-registry.js';
import { parseRasterizeRequest, type ParsedRequest, type RasterizeRequestMessage, type RequestLimits } from './request.js';
import type { MicroBatcher } from './micro-batcher.js';
import { encodeBatchResponse, encodeResponse } from './response-encoder.js';

/** A RasterizeResponse already encoded to protobuf bytes, as the response serializer receives it. */
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
  /** Calls served at once before RESOURCE_EXHAUSTED. */
  maxConcurrentCalls: number;
  /** Largest RasterizeBatch accepted. */
  maxBatchSize: number;
  /** Gathers concurrent unary calls into batches when set. */
  batcher?: MicroBatcher;
  /** GPU name and memory for GetServerInfo; empty on the CPU. */
  gpuName?: string;
  gpuMemoryBytes?: number;
}

function mapInfo(map: MapData) {
  return { name: map.name, version: map.version, projectedCrs: map.projectedCrs, layerCounts: map.layerCounts };
}

/** The RasterService RPC handlers. */
export class RasterService {
  private inFlight = 0;
  private cpuForTiles: CpuRasterizer | null = null;

  constructor(private readonly options: RasterServiceOptions) {}

  /** Calls being served now. */
  get callsInFlight(): number {
    return this.inFlight;
  }

  private findMap(name: string, field = 'map_name'): MapData {
    const map = this.options.registry.get(name);
    if (!map) {
      const known = this.options.registry.names();
      throw new StatusError(status.NOT_FOUND, `${field} '${name}' is not loaded; this server has ${known.length > 0 ? known.join(', ') : 'no maps'}`);
    }
    return map;
  }

  private checkMode(request: ParsedRequest): void {
    if (request.settings.roadmapMode === 'tiles') tilesFor(this.findMap(request.mapName), request.settings);
  }

  /** The rasterizer for a request: tiles mode samples its tiles on the CPU whatever the device. */
  private rasterizerFor(request: ParsedRequest): Rasterizer {
    if (request.settings.roadmapMode === 'tiles' && this.options.rasterizer.device !== 'cpu') {
      this.cpuForTiles ??= new CpuRasterizer();
      return this.cpuForTiles;
    }
    return this.options.rasterizer;
  }

  private render(request: ParsedRequest): RasterResult {
    const map = this.findMap(request.mapName);
    return this.rasterizerFor(request).rasterize(map, request.scene, request.settings);
  }

  private parse(message: RasterizeRequestMessage): ParsedRequest {
    return parseRasterizeRequest(message, this.options.defaults, this.options.limits);
  }

  /** Runs one call under the concurrency limit and the caller's deadline; logs each server-side failure once. */
  private serve<T>(method: string, call: { getDeadline(): Date | number; cancelled?: boolean }, work: () => T | Promise<T>, callback: sendUnaryData<T>): void {
    const requestId = randomUUID();
    if (this.inFlight >= this.options.maxConcurrentCalls) {
      callback({ code: status.RESOURCE_EXHAUSTED, details: `server is busy: ${this.inFlight} calls in flight (limit ${this.options.maxConcurrentCalls}); retry with backoff` });
      return;
    }
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    if (Number.isFinite(deadlineMs) && deadlineMs <= Date.now()) {
      callback({ code: status.DEADLINE_EXCEEDED, details: `${method}: the deadline passed before the server started the call` });
      return;
    }

    this.inFlight++;
    const fail = (error: unknown): void => {
      const serviceError = toServiceError(error);
      if (!isClientError(error)) this.options.logger.error({ requestId, method, err: error }, `${method} failed`);
      else this.options.logger.debug({ requestId, method, code: serviceError.code, details: serviceError.details }, `${method} rejected`);
      callback(serviceError);
    };
    let result: T | Promise<T>;
    try {
      result = work();
    } catch (error) {
      this.inFlight--;
      fail(error);
      return;
    }
    Promise.resolve(result).then(
      (value) => {
        this.inFlight--;
        if (!call.cancelled) callback(null, value);
      },
      (error: unknown) => {
        this.inFlight--;
        fail(error);
      },
    );
  }

  /** Handlers keyed by RPC name, for grpc-js addService. */
  handlers(): UntypedServiceImplementation {
    return {
      Rasterize: (call: ServerUnaryCall<RasterizeRequestMessage, EncodedMessage>, callback: sendUnaryData<EncodedMessage>) => {
        this.serve('Rasterize', call, () => {
          const request = this.parse(call.request);
          if (this.options.batcher && this.rasterizerFor(request) === this.options.rasterizer) {
            const map = this.findMap(request.mapName);
            this.checkMode(request);
            return this.options.batcher.submit({ mapName: request.mapName, map, scene: request.scene, settings: request.settings })
              .then((result) => ({ encoded: encodeResponse(result, request.includeTimings) }));
          }
          return { encoded: encodeResponse(this.render(request), request.includeTimings) };
        }, callback);
      },

      RasterizeBatch: (call: ServerUnaryCall<{ requests?: RasterizeRequestMessage[] }, EncodedMessage>, callback: sendUnaryData<EncodedMessage>) => {
        this.serve('RasterizeBatch', call, async () => {
          const messages = call.request.requests ?? [];
          if (messages.length > this.options.maxBatchSize) {
            throw new StatusError(status.INVALID_ARGUMENT, `requests contains ${messages.length} entries; the server accepts at most ${this.options.maxBatchSize} per batch`);
          }
          const requests = messages.map((message, i) => {
            try {
              const request = this.parse(message);
              this.checkMode(request);
              return { request, map: this.findMap(request.mapName, `requests[${i}].map_name`) };
            } catch (error) {
              if (error instanceof Error && !error.message.startsWith('requests[')) error.message = `requests[${i}].${error.message}`;
              throw error;
            }
          });
          const results = await this.options.rasterizer.rasterizeBatch(
            requests.map(({ request, map }) => ({ mapName: request.mapName, map, scene: request.scene, settings: request.settings })),
          );
          return { encoded: encodeBatchResponse(results, requests.map(({ request }) => request.includeTimings)) };
        }, callback);
      },

      RasterizeStream: (call: ServerDuplexStream<RasterizeRequestMessage, EncodedMessage>) => {
        const requestId = randomUUID();
        let closed = false;
        call.on('data', (message: RasterizeRequestMessage) => {
          if (closed || call.cancelled) return;
          try {
            const request = this.parse(message);
            call.write({ encoded: encodeResponse(this.render(request), request.includeTimings) });
          } catch (error) {
            // The first failing step ends the stream with its status; later steps are ignored.
            closed = true;
            const serviceError = toServiceError(error);
            if (!isClientError(error)) this.options.logger.error({ requestId, method: 'RasterizeStream', err: error }, 'RasterizeStream failed');
            call.emit('error', serviceError);
          }
        });
        call.on('end', () => {
          if (closed) return;
          closed = true;
          call.end();
        });
        call.on('error', () => {
          closed = true;
        });
      },

      ListMaps: (call: ServerUnaryCall<object, unknown>, callback: sendUnaryData<unknown>) => {
        this.serve('ListMaps', call, () => ({ maps: this.options.registry.names().map((name) => mapInfo(this.findMap(name))) }), callback);
      },

      GetServerInfo: (call: ServerUnaryCall<object, unknown>, callback: sendUnaryData<unknown>) => {
        this.serve('GetServerInfo', call, () => ({
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
