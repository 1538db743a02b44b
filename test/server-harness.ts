import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { REPO_ROOT } from './fixtures.js';

/** A `rasterd serve` process on a free 127.0.0.1 port, and a client for it. */
export interface TestServer {
  port: number;
  target: string;
  process: ChildProcess;
  /** Every stderr line the server wrote so far. */
  logs: string[];
  client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  /** Promise form of a unary RPC. */
  call<T = Record<string, unknown>>(method: string, request: unknown, deadlineMs?: number): Promise<T>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export const clientPackage = (() => {
  const definition = protoLoader.loadSync('rasterd/v1/raster_service.proto', {
    includeDirs: [join(REPO_ROOT, 'proto')], keepCase: false, longs: Number, enums: String, defaults: false, oneofs: true,
  });
  return grpc.loadPackageDefinition(definition) as unknown as { rasterd: { v1: { RasterService: grpc.ServiceClientConstructor } } };
})();

/**
 * Starts the built CLI (`node bin/rasterd.js serve --port 0 ...args`) and waits until it logs that it serves.
 * @throws Error with the server's log when it exits or does not serve within `timeoutMs`
 */
export async function startTestServer(args: string[], timeoutMs = 60_000): Promise<TestServer> {
  // Each server gets its own cache folder (map snapshots, roadmap tiles) unless the test passes one.
  const cacheArgs = args.includes('--cache-dir') || args.includes('--no-cache') ? [] : ['--cache-dir', mkdtempSync(join(tmpdir(), 'rasterd-test-cache-'))];
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/rasterd.js'), 'serve', '--host', '127.0.0.1', '--port', '0', ...cacheArgs, ...args], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RASTERD_LOG_LEVEL: process.env.RASTERD_LOG_LEVEL ?? 'info' },
  });
  const logs: string[] = [];
  let port = 0;

  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not serve within ${timeoutMs} ms:\n${logs.join('\n')}`)), timeoutMs);
    let pending = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        logs.push(line);
        try {
          const entry = JSON.parse(line);
          if (typeof entry.port === 'number' && entry.msg?.includes('listening')) port = entry.port;
          if (entry.msg?.startsWith('rasterd serving')) {
            clearTimeout(timer);
            resolve();
          }
        } catch {
          // Not a JSON log line (a progress bar or a crash message): kept in logs.
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with code ${code} before serving:\n${logs.join('\n')}${pending}`));
    });
  });

  const target = `127.0.0.1:${port}`;
  const client = new clientPackage.rasterd.v1.RasterService(target, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
  }) as TestServer['client'];
  return {
    port,
    target,
    process: child,
    logs,
    client,
    call: (method, request, deadlineMs = 30_000) =>
      new Promise((resolve, reject) => {
        client[method](request, { deadline: Date.now() + deadlineMs }, (error: grpc.ServiceError | null, response: unknown) => {
          if (error) reject(error);
          else resolve(response as never);
        });
      }),
    stop: async (signal = 'SIGTERM') => {
      client.close();
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Converts a parity-fixture scene into a RasterizeRequest message. */
export function requestOf(mapName: string, scene: { ego: { x: number; y: number; heading: number }; agents: Array<Record<string, unknown>> }, config?: unknown) {
  return {
    mapName,
    ego: { rearAxle: scene.ego },
    trackedObjects: scene.agents.map((agent) => ({
      center: { x: agent.x, y: agent.y, heading: agent.heading },
      length: agent.length, width: agent.width, height: agent.height ?? 1.5,
      type: String(agent.type ?? 'vehicle').toUpperCase(),
      trackToken: agent.track_token ?? '',
    })),
    config,
  };
}

/** RasterConfig message for a fixture set's RasterFeatureBuilder overrides. */
export function configOf(overrides: Record<string, unknown>) {
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(overrides)) {
    if (key === 'map_features') {
      config.mapFeatures = Object.entries(value as Record<string, number>).map(([layer, color]) => ({ layer, color }));
    } else {
      config[key.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase())] = value;
    }
  }
  return config;
}
