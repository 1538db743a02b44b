/**
 * Prometheus metrics of one server, served as text on an HTTP port of their own (`--metrics-port`).
 * Names follow Prometheus conventions: base units (seconds, bytes), `_total` on counters.
 */
import { createServer, type Server } from 'node:http';

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { StageTimings } from '../raster/scene.js';
import type { Logger } from './logger.js';
import type { MapRegistry } from './map-registry.js';

/** Returns the GPU memory in use [bytes], or null when there is no GPU. May throw; the error is logged. */
export type GpuMemoryProvider = () => number | null;

let gpuMemoryProvider: GpuMemoryProvider | null = null;

/**
 * Sets the function that the `rasterd_gpu_memory_used_bytes` gauge calls at each scrape; null
 * removes it, and the gauge then reports no sample. Meant for the CUDA rasterizer.
 */
export function setGpuMemoryProvider(provider: GpuMemoryProvider | null): void {
  gpuMemoryProvider = provider;
}

/** Stages of one raster as RasterResult.timings names them. */
const STAGES = ['mapQuery', 'roadmap', 'agents', 'baselines', 'ego', 'serialization'] as const satisfies ReadonlyArray<keyof StageTimings>;

/** Sources the gauges read at scrape time. */
export interface MetricSources {
  callsInFlight(): number;
  maps: MapRegistry;
}

/** The metrics of one server in their own registry, so that tests can run several servers in one process. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'code'>;
  private readonly requestDuration: Histogram<'method'>;
  private readonly rasterDuration: Histogram;
  private readonly stageDuration: Histogram<'stage'>;
  private readonly batchSize: Histogram;
  private gpuErrorLogged = false;

  constructor(sources: MetricSources, private readonly logger: Logger) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });

    this.requests = new Counter({
      name: 'rasterd_requests_total', help: 'Finished RPCs by method and gRPC status code name.', labelNames: ['method', 'code'], registers,
    });
    this.requestDuration = new Histogram({
      name: 'rasterd_request_duration_seconds', help: 'RPC duration from arrival to reply (a whole stream for RasterizeStream) [s].',
      labelNames: ['method'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120], registers,
    });
    this.rasterDuration = new Histogram({
      name: 'rasterd_raster_duration_seconds', help: 'Time to build one raster, map query to serialization [s].',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers,
    });
    this.stageDuration = new Histogram({
      name: 'rasterd_stage_duration_seconds',
      help: 'Time per raster stage [s]: mapQuery, roadmap, agents, baselines, ego, serialization (the rasterizer\'s split) and encode (protobuf).',
      labelNames: ['stage'], buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1], registers,
    });
    this.batchSize = new Histogram({
      name: 'rasterd_batch_size', help: 'Requests per RasterizeBatch call.', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers,
    });

    new Gauge({
      name: 'rasterd_calls_in_flight', help: 'Calls admitted and not finished, counting each stream step being served as one.', registers,
      collect() {
        this.set(sources.callsInFlight());
      },
    });
    new Gauge({
      name: 'rasterd_maps_loaded', help: 'Maps being served.', registers,
      collect() {
        this.set(sources.maps.maps.size);
      },
    });
    new Gauge({
      name: 'rasterd_maps_failed', help: 'Maps that were given but failed to load.', registers,
      collect() {
        this.set(sources.maps.failures.length);
      },
    });
    new Gauge({
      name: 'rasterd_map_features', help: 'Features per table of each loaded map.', labelNames: ['map', 'table'], registers,
      collect() {
        this.reset();
        for (const [name, map] of sources.maps.maps) {
          for (const [table, count] of Object.entries(map.layerCounts)) this.set({ map: name, table }, count);
        }
      },
    });
    new Gauge({
      name: 'rasterd_map_load_warnings', help: 'Warnings logged while loading each map (docs/maps.md lists the cases).', labelNames: ['map'], registers,
      collect() {
        this.reset();
        for (const [name, count] of sources.maps.warningCounts) this.set({ map: name }, count);
      },
    });

    const metrics = this;
    new Gauge({
      name: 'rasterd_gpu_memory_used_bytes', help: 'GPU memory in use [bytes]; no sample without a GPU.', labelNames: ['gpu'], registers,
      collect() {
        this.reset();
        const value = metrics.readGpuMemory();
        if (value !== null) this.set({ gpu: '0' }, value);
      },
    });
  }

  private readGpuMemory(): number | null {
    if (gpuMemoryProvider === null) return null;
    try {
      const value = gpuMemoryProvider();
      return typeof value === 'number' && Number.isFinite(value) ? value : null;
    } catch (error) {
      // Logged once: a broken provider would otherwise log at every scrape.
      if (!this.gpuErrorLogged) this.logger.error({ err: error }, 'the GPU memory provider failed; rasterd_gpu_memory_used_bytes reports no sample while it fails');
      this.gpuErrorLogged = true;
      return null;
    }
  }

  /** Counts one finished RPC. */
  recordCall(method: string, code: string, seconds: number): void {
    this.requests.inc({ method, code });
    this.requestDuration.observe({ method }, seconds);
  }

  /** Records the stage split of one raster [us]. */
  recordRaster(timings: StageTimings): void {
    this.rasterDuration.observe(timings.total / 1e6);
    for (const stage of STAGES) this.stageDuration.observe({ stage }, timings[stage] / 1e6);
  }

  /** Records the time to encode one raster's response [us] as the stage `encode`. */
  recordEncode(encodeUs: number): void {
    this.stageDuration.observe({ stage: 'encode' }, encodeUs / 1e6);
  }

  recordBatchSize(size: number): void {
    this.batchSize.observe(size);
  }
}

/** A started metrics endpoint. */
export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` in the Prometheus text format on host:port (0 picks a free port).
 * @throws Error naming the address when it cannot be bound
 */
export async function startMetricsServer(host: string, port: number, metrics: ServerMetrics, logger: Logger): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at GET /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (error: unknown) => {
        logger.error({ err: error }, 'collecting metrics failed');
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`collecting metrics failed: ${(error as Error).message}\n`);
      },
    );
  });
  // Scrapes are short; an idle keep-alive connection must not hold up shutdown.
  server.keepAliveTimeout = 5_000;

  const boundPort = await new Promise<number>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`cannot serve metrics on ${host}:${port}: ${error.message}; choose another --metrics-port`)));
    server.listen(port, host, () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
  logger.info({ host, metricsPort: boundPort }, `metrics served at http://${host.includes(':') ? `[${host}]` : host}:${boundPort}/metrics`);

  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
