import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { DEFAULT_MAP_VERSION, listMapsRoot, parseMapFlag, type MapSource } from '../maps/maps-root.js';
import { NUPLAN_DEFAULT_SETTINGS, readSettingsFile, type RasterSettings } from '../raster/settings.js';
import { checkHealth } from './health-command.js';
import { createLogger } from './logger.js';
import { runRender } from './render-command.js';
import { DEFAULT_REQUEST_LIMITS } from './request.js';
import { installProcessGuards } from './process-guards.js';
import { packageVersion, startServer } from './server.js';

const USAGE = `rasterd ${packageVersion()}: nuPlan raster features over gRPC

Usage:
  rasterd serve [options]        serve RasterService (with no map flags: the embedded sample map)
  rasterd render [options]       write one request's raster as a PNG with the layers in colour
  rasterd sample-map --out DIR   write the embedded sample map as a nuPlan maps root
  rasterd health [--target HOST:PORT] [--service NAME]
                                 exit 0 when the server reports SERVING (container health checks)

Map options (serve, render):
  --maps-root DIR          nuPlan maps root (default $NUPLAN_MAPS_ROOT)
  --map-version NAME       maps index DIR/NAME.json (default ${DEFAULT_MAP_VERSION})
  --map NAME=PATH.gpkg     one GeoPackage under a name; repeatable
  --raster-config FILE     nuPlan YAML: a raster model config or RasterFeatureBuilder arguments

serve options:
  --host HOST              address to listen on (default 127.0.0.1)
  --port N                 port (default 50051; 0 picks a free one)
  --max-tracked-objects N  tracked objects accepted per request (default ${DEFAULT_REQUEST_LIMITS.maxTrackedObjects})
  --max-raster-size PX     largest target_width accepted [px] (default ${DEFAULT_REQUEST_LIMITS.maxRasterSize})
  --max-concurrent-calls N calls served at once before RESOURCE_EXHAUSTED (default 64)
  --max-message-bytes N    largest request accepted [bytes] (default 67108864)
  --shutdown-grace-ms MS   time calls in flight get to finish on SIGTERM or SIGINT (default 10000)
  --device auto|cpu|cuda   rasterizer: auto uses CUDA when a device is usable (default auto)
  --workers N              CPU threads that draw RasterizeBatch requests (default: the core count)
  --batch-window-us US     gather concurrent Rasterize calls for up to US microseconds into one batch (default 0: off)
  --max-batch-size N       requests accepted per RasterizeBatch, and the largest micro-batch (default ${DEFAULT_REQUEST_LIMITS.maxBatchSize})
  --cache-dir DIR          map snapshots and roadmap tiles (default $RASTERD_CACHE_DIR or ~/.cache/rasterd)
  --no-cache               read every map with GDAL at each start
  --metrics-port N         serve Prometheus metrics at http://HOST:N/metrics (default: off; 0 picks a free port)

render options:
  --map-name NAME          map to draw (default: the only one loaded)
  --x M --y M --heading RAD   ego rear-axle pose in the map frame ([m], [m], [rad]; default: on a lane near the map's centre)
  --scenes FILE --scene-id ID take the ego and tracked objects from a parity scenes.json
  --out FILE.png           output (default raster.png)
  --scale N                pixels per raster pixel in the PNG (default 3)
`;

const MAP_OPTIONS = {
  'maps-root': { type: 'string' },
  'map-version': { type: 'string', default: DEFAULT_MAP_VERSION },
  map: { type: 'string', multiple: true },
  'raster-config': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** Returns the default cache folder: $RASTERD_CACHE_DIR, else ~/.cache/rasterd. */
export function defaultCacheDir(): string {
  return process.env.RASTERD_CACHE_DIR ?? join(homedir(), '.cache', 'rasterd');
}

/** Returns the folder where the embedded sample map is generated on first use. */
export function sampleMapsRoot(): string {
  return join(defaultCacheDir(), 'sample-maps');
}

/**
 * Writes the sample town as a nuPlan maps root: DIR/nuplan-maps-v1.0.json and DIR/sample-town/1.0.0/map.gpkg.
 * @returns the map source
 */
export async function writeSampleMapsRoot(dir: string): Promise<MapSource> {
  const { writeSampleMap } = await import('../maps/sample-map.js');
  const path = join(dir, 'sample-town', '1.0.0', 'map.gpkg');
  mkdirSync(join(dir, 'sample-town', '1.0.0'), { recursive: true });
  await writeSampleMap(path);
  writeFileSync(join(dir, `${DEFAULT_MAP_VERSION}.json`), `${JSON.stringify({ 'sample-town': { version: '1.0.0' } }, null, 1)}\n`);
  return { name: 'sample-town', version: '1.0.0', path };
}

/** Resolves the map flags to sources; with none, the embedded sample map (generated once). */
async function mapSources(values: { 'maps-root'?: string; 'map-version': string; map?: string[] }, log: (message: string) => void): Promise<MapSource[]> {
  const sources: MapSource[] = [];
  const root = values['maps-root'] ?? process.env.NUPLAN_MAPS_ROOT;
  if (root) sources.push(...listMapsRoot(resolve(root), values['map-version']));
  for (const flag of values.map ?? []) sources.push(parseMapFlag(flag));
  if (sources.length > 0) return sources;

  const dir = sampleMapsRoot();
  const path = join(dir, 'sample-town', '1.0.0', 'map.gpkg');
  if (existsSync(path)) return [{ name: 'sample-town', version: '1.0.0', path }];
  log(`no --maps-root, --map or NUPLAN_MAPS_ROOT given: writing the sample map to ${dir}`);
  return [await writeSampleMapsRoot(dir)];
}

function integer(name: string, value: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < min || number > max) {
    throw new Error(`--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `in ${min}..${max}`}; got '${value}'`);
  }
  return number;
}

function settingsFrom(path: string | undefined): RasterSettings {
  return path ? readSettingsFile(path) : NUPLAN_DEFAULT_SETTINGS;
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...MAP_OPTIONS,
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '50051' },
      'max-tracked-objects': { type: 'string' },
      'max-raster-size': { type: 'string' },
      'max-concurrent-calls': { type: 'string' },
      'max-message-bytes': { type: 'string' },
      'shutdown-grace-ms': { type: 'string' },
      'cache-dir': { type: 'string' },
      'no-cache': { type: 'boolean' },
      device: { type: 'string', default: 'auto' },
      workers: { type: 'string' },
      'batch-window-us': { type: 'string' },
      'max-batch-size': { type: 'string' },
      'metrics-port': { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }

  const device = values.device;
  if (device !== 'auto' && device !== 'cpu' && device !== 'cuda') throw new Error(`--device must be auto, cpu or cuda; got '${device}'`);
  const logger = createLogger();
  const sources = await mapSources(values, (message) => logger.info(message));
  const limits = {
    ...DEFAULT_REQUEST_LIMITS,
    maxTrackedObjects: integer('max-tracked-objects', values['max-tracked-objects'], DEFAULT_REQUEST_LIMITS.maxTrackedObjects, 0),
    // One float32 raster of 8192 x 8192 x 4 is 1 GiB; protobuf messages must stay under 2 GiB.
    maxRasterSize: integer('max-raster-size', values['max-raster-size'], DEFAULT_REQUEST_LIMITS.maxRasterSize, 1, 8192),
    maxBatchSize: integer('max-batch-size', values['max-batch-size'], DEFAULT_REQUEST_LIMITS.maxBatchSize, 1),
  };
  const graceMs = integer('shutdown-grace-ms', values['shutdown-grace-ms'], 10_000, 0);
  const running = await startServer({
    host: values.host,
    port: integer('port', values.port, 50051, 0),
    sources,
    defaults: settingsFrom(values['raster-config']),
    limits,
    logger,
    showProgress: process.stderr.isTTY === true,
    maxConcurrentCalls: integer('max-concurrent-calls', values['max-concurrent-calls'], 64, 1),
    maxReceiveMessageBytes: integer('max-message-bytes', values['max-message-bytes'], 64 * 1024 * 1024, 1024),
    cacheDir: values['no-cache'] ? undefined : resolve(values['cache-dir'] ?? defaultCacheDir()),
    device,
    workerThreads: integer('workers', values.workers, availableParallelism(), 0),
    batchWindowUs: integer('batch-window-us', values['batch-window-us'], 0, 0),
    metricsPort: values['metrics-port'] === undefined ? undefined : integer('metrics-port', values['metrics-port'], 0, 0, 65535),
  });

  let stopping = false;
  const stop = (signal: string, exitCode = 0): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, inFlight: running.service.callsInFlight }, `${signal} received: draining calls for up to ${graceMs} ms`);
    void running.close(graceMs).then(() => {
      logger.info({ exitCode }, 'rasterd stopped');
      logger.flush();
      process.exit(exitCode);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  installProcessGuards(logger, stop);
}

async function render(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...MAP_OPTIONS,
      'map-name': { type: 'string' },
      x: { type: 'string' },
      y: { type: 'string' },
      heading: { type: 'string' },
      scenes: { type: 'string' },
      'scene-id': { type: 'string' },
      out: { type: 'string', default: 'raster.png' },
      scale: { type: 'string', default: '3' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const sources = await mapSources(values, (message) => process.stderr.write(`${message}\n`));
  await runRender({
    sources,
    settings: settingsFrom(values['raster-config']),
    mapName: values['map-name'],
    x: values.x === undefined ? undefined : Number(values.x),
    y: values.y === undefined ? undefined : Number(values.y),
    heading: values.heading === undefined ? undefined : Number(values.heading),
    scenesFile: values.scenes,
    sceneId: values['scene-id'],
    out: values.out,
    scale: integer('scale', values.scale, 3, 1),
  });
}

async function sampleMap(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || !values.out) {
    process.stdout.write(USAGE);
    if (!values.out && !values.help) throw new Error('sample-map needs --out DIR');
    return;
  }
  const source = await writeSampleMapsRoot(resolve(values.out));
  process.stdout.write(`wrote ${source.path}; serve it with: rasterd serve --maps-root ${resolve(values.out)}\n`);
}

async function health(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { target: { type: 'string', default: '127.0.0.1:50051' }, service: { type: 'string', default: '' }, 'timeout-ms': { type: 'string' } } });
  const status = await checkHealth(values.target, values.service, integer('timeout-ms', values['timeout-ms'], 3000, 1));
  process.stdout.write(`${status}\n`);
  if (status !== 'SERVING') process.exitCode = 1;
}

/** Runs the rasterd command line. */
export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'render':
      return render(rest);
    case 'sample-map':
      return sampleMap(rest);
    case 'health':
      return health(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return;
    case '--version':
      process.stdout.write(`${packageVersion()}\n`);
      return;
    default:
      throw new Error(`unknown command '${command}'; run \`rasterd --help\``);
  }
}
