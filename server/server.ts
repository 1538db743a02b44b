import { readFileSync } from 'node:fs';

import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';

import type { MapSource } from '../maps/maps-root.js';
import type { Rasterizer } from '../raster/rasterizer.js';
import { selectDevice, type DeviceChoice, type SelectedDevice } from '../raster/select-device.js';
import type { RasterSettings } from '../raster/settings.js';
import type { Logger } from './logger.js';
import { MapRegistry } from './map-registry.js';
import { MicroBatcher } from './micro-batcher.js';
import { ServerMetrics, startMetricsServer, type MetricsServer } from './metrics.js';
import { loadRasterProto, SERVICE_NAME } from './proto.js';
import { RasterService, withUndecodableRequests, type EncodedMessage } from './raster-service.js';
import type { RequestLimits } from './request.js';

/** Everything `rasterd serve` configures. */
export interface ServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  sources: MapSource[];
  defaults: RasterSettings;
  limits: RequestLimits;
  logger: Logger;
  showProgress: boolean;
  maxConcurrentCalls: number;
  /** Largest request accepted [bytes]. */
  maxReceiveMessageBytes: number;
  /** Port of the Prometheus endpoint on `host` (0 picks a free one); undefined serves no metrics. */
  metricsPort?: number;
  rasterizer?: Rasterizer;
  /** 'auto' (CUDA when a device is usable), 'cpu' or 'cuda'; ignored when `rasterizer` is given. */
  device?: DeviceChoice;
  /** CPU threads that draw batches (0: the gRPC thread draws them). */
  workerThreads?: number;
  /** Gather concurrent unary calls for up to this long [us] into one batch; 0 turns it off. */
  batchWindowUs?: number;
  /** Folder for map snapshots and roadmap tiles; undefined disables caching. */
  cacheDir?: string;
}

/** A started server. */
export interface RunningServer {
  port: number;
  /** Port of the metrics endpoint, when one is served. */
  metricsPort?: number;
  registry: MapRegistry;
  service: RasterService;
  /** Stops accepting calls, lets calls in flight finish for up to `graceMs`, then cancels the rest. */
  close(graceMs?: number): Promise<void>;
}

/** The package version, for GetServerInfo and the startup log. */
export function packageVersion(): string {
  for (const relative of ['../package.json', '../../package.json']) {
    try {
      const parsed = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8'));
      if (parsed.name === 'rasterd') return parsed.version as string;
    } catch {
      // Try the next location.
    }
  }
  return 'unknown';
}

/** Returns the service definition with RasterizeResponse serializers that pass pre-encoded bytes through. */
function serverDefinition(): grpc.ServiceDefinition {
  const definition = loadRasterProto()[SERVICE_NAME] as grpc.ServiceDefinition;
  const passThrough = (value: EncodedMessage): Buffer => value.encoded;
  return withUndecodableRequests({
    ...definition,
    Rasterize: { ...definition.Rasterize, responseSerialize: passThrough },
    RasterizeBatch: { ...definition.RasterizeBatch, responseSerialize: passThrough },
    RasterizeStream: { ...definition.RasterizeStream, responseSerialize: passThrough },
  } as grpc.ServiceDefinition);
}

/**
 * Starts the gRPC server: binds, reports NOT_SERVING while the maps load, then SERVING.
 * @throws Error when the port cannot be bound or no map loads
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { logger } = options;
  const version = packageVersion();
  const registry = new MapRegistry(logger, options.cacheDir, options.defaults);
  const selected: SelectedDevice = options.rasterizer
    ? { rasterizer: options.rasterizer, gpuName: '', gpuMemoryBytes: 0 }
    : await selectDevice(options.device ?? 'auto', options.workerThreads ?? 0);
  const { rasterizer } = selected;
  if (selected.cpuReason) logger.info({ reason: selected.cpuReason }, `rasterizing on the CPU: ${selected.cpuReason}`);
  else if (selected.gpuName) logger.info({ gpuName: selected.gpuName, gpuMemoryBytes: selected.gpuMemoryBytes }, `rasterizing on CUDA device ${selected.gpuName}`);
  const batcher = options.batchWindowUs && options.batchWindowUs > 0 ? new MicroBatcher(rasterizer, options.batchWindowUs, options.limits.maxBatchSize) : undefined;
  const metrics = options.metricsPort === undefined ? undefined : new ServerMetrics({ callsInFlight: (): number => service.callsInFlight, maps: registry }, logger);
  const service: RasterService = new RasterService({
    registry, rasterizer, defaults: options.defaults, limits: options.limits, logger, version, maxConcurrentCalls: options.maxConcurrentCalls, metrics,
    batcher, gpuName: selected.gpuName, gpuMemoryBytes: selected.gpuMemoryBytes,
  });

  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes,
    'grpc.max_send_message_length': service.maxResponseBytes,
  });
  server.addService(serverDefinition(), service.handlers());
  const health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);
  new ReflectionService(loadRasterProto()).addToServer(server);

  const address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => {
      if (error) reject(new Error(`cannot listen on ${address}: ${error.message}; choose another --port or --host`));
      else resolve(boundPort);
    });
  });
  logger.info({ host: options.host, port, version, device: rasterizer.device, maps: options.sources.length }, `rasterd ${version} listening on ${options.host}:${port} (${rasterizer.device}); loading ${options.sources.length} maps`);

  let metricsServer: MetricsServer | undefined;
  if (metrics && options.metricsPort !== undefined) {
    try {
      metricsServer = await startMetricsServer(options.host, options.metricsPort, metrics, logger);
    } catch (error) {
      server.forceShutdown();
      throw error;
    }
  }

  await registry.loadAll(options.sources, options.showProgress);
  if (registry.maps.size === 0) {
    server.forceShutdown();
    await metricsServer?.close();
    const reasons = registry.failures.map((failure) => `${failure.source.name} (${failure.source.path}): ${failure.reason}`).join('; ');
    throw new Error(`no map loaded, so there is nothing to serve: ${reasons || 'no maps were given'}`);
  }

  for (const name of registry.names()) health.setStatus(`${SERVICE_NAME}/${name}`, 'SERVING');
  for (const failure of registry.failures) {
    // A duplicate name failed, but the map loaded first under it serves.
    if (!registry.maps.has(failure.source.name)) health.setStatus(`${SERVICE_NAME}/${failure.source.name}`, 'NOT_SERVING');
  }
  health.setStatus('', 'SERVING');
  health.setStatus(SERVICE_NAME, 'SERVING');
  logger.info({ maps: registry.names(), failed: registry.failures.map((failure) => failure.source.name) }, `rasterd serving ${registry.maps.size} maps`);

  return {
    port,
    metricsPort: metricsServer?.port,
    registry,
    service,
    close: (graceMs = 10_000) =>
      new Promise<void>((resolve) => {
        health.setStatus('', 'NOT_SERVING');
        health.setStatus(SERVICE_NAME, 'NOT_SERVING');
        service.beginDrain();
        const timer = setTimeout(() => {
          logger.warn({ inFlight: service.callsInFlight }, `calls still in flight after ${graceMs} ms; cancelling them`);
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          void (rasterizer as { close?: () => Promise<void> }).close?.();
          resolve();
        });
      }).then(() => metricsServer?.close()),
  };
}
