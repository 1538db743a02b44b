import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import type { MapSource } from '../maps/maps-root.js';
import { stopperOf } from './child-process.js';
import { childScript, REPO_ROOT } from './paths.js';

/** Lines of the server's stderr kept for error messages. */
const KEPT_LOG_LINES = 200;

/** Settings of one `rasterd serve` process of the benchmark. */
export interface ServerProcessOptions {
  maps: MapSource[];
  device: 'cpu' | 'cuda';
  /** Map snapshots and roadmap tiles (the server's --cache-dir). */
  cacheDir: string;
  /** CPU threads that draw RasterizeBatch requests (the server's --workers). */
  workers: number;
  /** Turns off Nagle's algorithm on the server's sockets (see nodelay-preload.ts); an experiment, not a server option. */
  tcpNoDelay?: boolean;
  timeoutMs: number;
}

/** A running `rasterd serve` child process. */
export interface ServerProcess {
  port: number;
  pid: number;
  /** Map load time per map as the server logged it [ms], and whether it came from a snapshot. */
  mapLoads: Record<string, { ms: number; fromCache: boolean }>;
  /** The last stderr lines (JSON log lines). */
  logs: string[];
  /** Sends SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `node bin/rasterd.js serve` on a free 127.0.0.1 port, as a user runs it, and waits until it
 * logs that it serves.
 * @throws Error with the server's log when it exits first or does not serve within `timeoutMs`
 */
export function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const preload = options.tcpNoDelay ? ['--import', pathToFileURL(childScript('nodelay-preload')).href] : [];
  const args = [
    ...preload, join(REPO_ROOT, 'bin', 'rasterd.js'), 'serve', '--host', '127.0.0.1', '--port', '0',
    '--device', options.device, '--cache-dir', options.cacheDir, '--workers', String(options.workers),
    ...options.maps.flatMap((map) => ['--map', `${map.name}=${map.path}`]),
  ];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RASTERD_LOG_LEVEL: 'info' },
  });
  const logs: string[] = [];
  const mapLoads: ServerProcess['mapLoads'] = {};
  const stop = stopperOf(child);

  return new Promise((resolve, reject) => {
    let port = 0;
    let pending = '';
    let settled = false;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void stop(1_000).then(() => reject(new Error(`${message}\n${[...logs, pending].join('\n')}`)));
    };
    const timer = setTimeout(() => fail(`rasterd serve did not serve within ${options.timeoutMs} ms`), options.timeoutMs);

    child.stderr!.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        logs.push(line);
        if (logs.length > KEPT_LOG_LINES) logs.shift();
        let entry: { msg?: string; port?: number; map?: string; loadMs?: number; fromCache?: boolean };
        try {
          entry = JSON.parse(line);
        } catch {
          continue; // Not a log line (a crash message): kept in logs.
        }
        if (typeof entry.port === 'number' && entry.msg?.includes('listening')) port = entry.port;
        if (typeof entry.map === 'string' && typeof entry.loadMs === 'number') mapLoads[entry.map] = { ms: entry.loadMs, fromCache: entry.fromCache === true };
        if (entry.msg?.startsWith('rasterd serving') && !settled) {
          settled = true;
          clearTimeout(timer);
          if (port === 0) {
            void stop(1_000).then(() => reject(new Error(`rasterd serve logged no port:\n${logs.join('\n')}`)));
            return;
          }
          resolve({ port, pid: child.pid!, mapLoads, logs, stop });
        }
      }
    });
    child.once('exit', () => fail(`rasterd serve exited with code ${child.exitCode} before serving`));
  });
}
