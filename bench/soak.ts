/**
 * Soak test: starts `rasterd serve` on 127.0.0.1 and runs N concurrent clients against it for M
 * minutes, a mix of Rasterize, RasterizeBatch and RasterizeStream calls around random poses. Every
 * interval it prints the calls, the errors, the Rasterize p50 and p99 latency and the server's
 * resident memory (RSS, from its metrics endpoint). A fixed probe request is repeated and its raster
 * compared with the first reply, so a raster that changes over time counts as an error.
 *
 * Usage: npm run soak -- [--clients 8] [--minutes 10] [--interval-s 30] [--out FILE.json]
 *        [--map NAME=PATH.gpkg --center X,Y [--spread M]]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import * as grpc from '@grpc/grpc-js';

import { sampleMapsRoot, writeSampleMapsRoot } from '../server/cli.js';
import { loadRasterProto } from '../server/proto.js';
import { createRandom } from '../maps/seeded-random.js';

const HELP = `npm run soak -- [options]
  --clients N        concurrent clients, one gRPC channel each (default 8)
  --minutes M        duration [min] (default 10)
  --interval-s S     report interval [s] (default 30)
  --out FILE.json    also write the report as JSON
  --map NAME=PATH    map to serve (default: the embedded sample map)
  --center X,Y       centre of the poses [m] in the map's projected CRS (required with --map)
  --spread M         poses lie within this distance of the centre [m] (default 150)
`;

/** Centre of the sample town [m] in EPSG:32611: its 3 x 3 blocks of 120 m start at (664000, 3996000) (maps/sample-map.ts). */
const SAMPLE_CENTER = { x: 664_180, y: 3_996_180 };
const CALL_DEADLINE_MS = 30_000;
/** The server's RSS is sampled this often and averaged per interval, which smooths out garbage collections. */
const RSS_SAMPLE_MS = 2_000;
/** Each client repeats the probe request every this many calls. */
const PROBE_EVERY = 50;

interface Options {
  clients: number;
  minutes: number;
  intervalS: number;
  out?: string;
  map?: string;
  center: { x: number; y: number };
  spread: number;
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new Error(`--${name} must be a positive number; got '${value}'`);
  return number;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      clients: { type: 'string' }, minutes: { type: 'string' }, 'interval-s': { type: 'string' }, out: { type: 'string' },
      map: { type: 'string' }, center: { type: 'string' }, spread: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  let center = SAMPLE_CENTER;
  if (values.map !== undefined) {
    const parts = (values.center ?? '').split(',').map(Number);
    if (parts.length !== 2 || !parts.every(Number.isFinite)) throw new Error(`--map needs --center X,Y in the map's projected CRS [m]; got '${values.center ?? ''}'`);
    center = { x: parts[0], y: parts[1] };
  }
  return {
    clients: Math.round(positive('clients', values.clients, 8)),
    minutes: positive('minutes', values.minutes, 10),
    intervalS: positive('interval-s', values['interval-s'], 30),
    out: values.out,
    map: values.map,
    center,
    spread: positive('spread', values.spread, 150),
  };
}

/** A running server and the ports it logged. */
interface ServerProcess {
  child: ChildProcess;
  port: number;
  metricsPort: number;
  exited: Promise<number | null>;
  /** Log lines at level warn (40) or above. */
  warnings: string[];
}

async function startServer(mapFlag: string): Promise<ServerProcess> {
  const bin = fileURLToPath(new URL('../../bin/rasterd.js', import.meta.url));
  const child = spawn(process.execPath, [bin, 'serve', '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0', '--map', mapFlag], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const warnings: string[] = [];
  let port = 0;
  let metricsPort = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('rasterd did not start serving within 120 s')), 120_000);
    let pending = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        let entry: { level?: number; port?: number; metricsPort?: number; msg?: string };
        try {
          entry = JSON.parse(line);
        } catch {
          warnings.push(line);
          continue;
        }
        if ((entry.level ?? 0) >= 40) warnings.push(line);
        if (typeof entry.port === 'number' && entry.msg?.includes('listening')) port = entry.port;
        if (typeof entry.metricsPort === 'number') metricsPort = entry.metricsPort;
        if (entry.msg?.startsWith('rasterd serving')) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`rasterd exited with code ${code} before serving:\n${warnings.join('\n')}`));
    });
  });
  return { child, port, metricsPort, exited, warnings };
}

/** Reads process_resident_memory_bytes from the server's metrics endpoint [bytes]. */
async function serverRss(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith('process_resident_memory_bytes '));
  if (!line) throw new Error('the metrics endpoint has no process_resident_memory_bytes');
  return Number(line.split(' ')[1]);
}


type Client = grpc.Client & Record<string, Function>;

/** Counters of one report interval. */
class IntervalStats {
  calls = 0;
  errors = new Map<string, number>();
  rasterizeMs: number[] = [];
  rssSamples: number[] = [];

  addError(kind: string): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }

  errorCount(): number {
    let total = 0;
    for (const count of this.errors.values()) total += count;
    return total;
  }
}

function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

/** Runs one client until `endAt`: calls in sequence, each with a deadline. */
async function runClient(index: number, target: string, mapName: string, options: Options, endAt: number, stats: () => IntervalStats, probeHash: { value?: string }): Promise<void> {
  const { rasterd } = grpc.loadPackageDefinition(loadRasterProto()) as unknown as { rasterd: { v1: { RasterService: grpc.ServiceClientConstructor } } };
  const client = new rasterd.v1.RasterService(target, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 }) as Client;
  const random = createRandom(1000 + index);
  const request = (): object => {
    const x = options.center.x + (2 * random() - 1) * options.spread;
    const y = options.center.y + (2 * random() - 1) * options.spread;
    const agents = Array.from({ length: Math.floor(random() * 40) }, () => ({
      center: { x: x + (2 * random() - 1) * 50, y: y + (2 * random() - 1) * 50, heading: random() * 6.283 },
      length: 4.5, width: 1.9, height: 1.6, type: 'VEHICLE',
    }));
    return { mapName, ego: { rearAxle: { x, y, heading: random() * 6.283 } }, trackedObjects: agents };
  };
  const probe = { mapName, ego: { rearAxle: { x: options.center.x, y: options.center.y, heading: 0.3 } } };
  const unary = (method: string, message: object) =>
    new Promise<{ raster: { data: Buffer } }>((resolve, reject) => {
      client[method](message, { deadline: Date.now() + CALL_DEADLINE_MS }, (error: grpc.ServiceError | null, reply: { raster: { data: Buffer } }) => (error ? reject(error) : resolve(reply)));
    });
  const stream = (messages: object[]) =>
    new Promise<number>((resolve, reject) => {
      const call = client.RasterizeStream({ deadline: Date.now() + CALL_DEADLINE_MS }) as grpc.ClientDuplexStream<object, unknown>;
      let received = 0;
      call.on('data', () => received++);
      call.on('error', reject);
      call.on('end', () => resolve(received));
      for (const message of messages) call.write(message);
      call.end();
    });

  try {
    for (let call = 0; Date.now() < endAt; call++) {
      const kind = call % PROBE_EVERY === 0 ? 'probe' : random() < 0.7 ? 'Rasterize' : random() < 0.5 ? 'RasterizeBatch' : 'RasterizeStream';
      const started = performance.now();
      try {
        if (kind === 'probe') {
          const reply = await unary('Rasterize', probe);
          const hash = createHash('sha256').update(reply.raster.data).digest('hex');
          probeHash.value ??= hash;
          if (hash !== probeHash.value) stats().addError('probe raster changed');
        } else if (kind === 'Rasterize') {
          await unary('Rasterize', request());
          stats().rasterizeMs.push(performance.now() - started);
        } else if (kind === 'RasterizeBatch') {
          await unary('RasterizeBatch', { requests: [request(), request(), request(), request()] });
        } else {
          const steps = Array.from({ length: 8 }, request);
          const received = await stream(steps);
          if (received !== steps.length) stats().addError(`stream returned ${received} of ${steps.length} responses`);
        }
        stats().calls++;
      } catch (error) {
        stats().calls++;
        stats().addError(`${kind} ${grpc.status[(error as grpc.ServiceError).code] ?? (error as Error).message}`);
      }
    }
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (options === null) {
    process.stdout.write(HELP);
    return;
  }

  let mapFlag = options.map;
  if (mapFlag === undefined) {
    const path = join(sampleMapsRoot(), 'sample-town', '1.0.0', 'map.gpkg');
    if (!existsSync(path)) await writeSampleMapsRoot(sampleMapsRoot());
    mapFlag = `sample-town=${path}`;
  }
  const mapName = mapFlag.slice(0, mapFlag.indexOf('='));

  const server = await startServer(mapFlag);
  const target = `127.0.0.1:${server.port}`;
  const rssStart = await serverRss(server.metricsPort);
  process.stdout.write(`rasterd soak: ${options.clients} clients for ${options.minutes} min against ${target} (map ${mapName}); server RSS at start ${(rssStart / 2 ** 20).toFixed(1)} MiB\n`);
  process.stdout.write(`elapsed_s  calls  errors  rasterize_p50_ms  rasterize_p99_ms  rss_mib (mean of samples every ${RSS_SAMPLE_MS / 1000} s)\n`);

  const startedAt = Date.now();
  const endAt = startedAt + options.minutes * 60_000;
  let current = new IntervalStats();
  const intervals: Array<{ elapsedS: number; calls: number; errors: number; p50Ms: number; p99Ms: number; rssBytes: number }> = [];
  const errorKinds = new Map<string, number>();
  const probeHash: { value?: string } = {};

  const report = async (): Promise<void> => {
    const finished = current;
    current = new IntervalStats();
    const sorted = finished.rasterizeMs.sort((a, b) => a - b);
    if (finished.rssSamples.length === 0) finished.rssSamples.push(await serverRss(server.metricsPort));
    const row = {
      elapsedS: Math.round((Date.now() - startedAt) / 1000), calls: finished.calls, errors: finished.errorCount(),
      p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99),
      rssBytes: Math.round(finished.rssSamples.reduce((sum, value) => sum + value, 0) / finished.rssSamples.length),
    };
    intervals.push(row);
    for (const [kind, count] of finished.errors) errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + count);
    process.stdout.write(
      `${String(row.elapsedS).padStart(9)}  ${String(row.calls).padStart(5)}  ${String(row.errors).padStart(6)}  ${row.p50Ms.toFixed(2).padStart(16)}  ${row.p99Ms.toFixed(2).padStart(16)}  ${(row.rssBytes / 2 ** 20).toFixed(1).padStart(7)}\n`,
    );
  };
  // The last interval is reported after the clients stop, so that it is a whole one.
  const timer = setInterval(() => {
    if (Date.now() < endAt - 1_000) void report();
  }, options.intervalS * 1000);
  const sampler = setInterval(() => {
    const interval = current;
    serverRss(server.metricsPort).then((rss) => interval.rssSamples.push(rss), () => interval.addError('metrics scrape failed'));
  }, RSS_SAMPLE_MS);

  await Promise.all(Array.from({ length: options.clients }, (_, index) => runClient(index, target, mapName, options, endAt, () => current, probeHash)));
  clearInterval(timer);
  clearInterval(sampler);
  await report();

  const rssEnd = intervals[intervals.length - 1].rssBytes;
  const rssWarm = intervals[0].rssBytes;
  server.child.kill('SIGTERM');
  const exitCode = await server.exited;

  const totalErrors = intervals.reduce((sum, row) => sum + row.errors, 0);
  const summary = {
    clients: options.clients, minutes: options.minutes, calls: intervals.reduce((sum, row) => sum + row.calls, 0), errors: totalErrors,
    errorKinds: Object.fromEntries(errorKinds), rssStartBytes: rssStart, rssAfterFirstIntervalBytes: rssWarm, rssEndBytes: rssEnd,
    rssGrowthSinceFirstInterval: (rssEnd - rssWarm) / rssWarm, serverWarnings: server.warnings.length, serverExitCode: exitCode, intervals,
  };
  process.stdout.write(
    `calls ${summary.calls}, errors ${totalErrors}${totalErrors > 0 ? ` (${JSON.stringify(summary.errorKinds)})` : ''}; ` +
      `p50 ${intervals[0].p50Ms.toFixed(2)} -> ${intervals[intervals.length - 1].p50Ms.toFixed(2)} ms, p99 ${intervals[0].p99Ms.toFixed(2)} -> ${intervals[intervals.length - 1].p99Ms.toFixed(2)} ms (first -> last interval); ` +
      `server RSS ${(rssStart / 2 ** 20).toFixed(1)} MiB at start, ${(rssWarm / 2 ** 20).toFixed(1)} after the first interval, ${(rssEnd / 2 ** 20).toFixed(1)} at the end ` +
      `(${(100 * summary.rssGrowthSinceFirstInterval).toFixed(1)} % since the first interval); server log warnings ${server.warnings.length}; exit code ${exitCode}\n`,
  );
  if (options.out) writeFileSync(options.out, `${JSON.stringify(summary, null, 1)}\n`);
  if (totalErrors > 0 || exitCode !== 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`soak failed: ${(error as Error).message}\n`);
  process.exit(1);
});
