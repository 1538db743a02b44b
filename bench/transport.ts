import { connect as connectHttp2, type ClientHttp2Session } from 'node:http2';
import { connect as connectTcp, type Socket } from 'node:net';

import type * as grpc from '@grpc/grpc-js';

import { encodedResponseLength } from '../server/response-encoder.js';
import { startChild } from './child-process.js';
import type { RasterizeRequestMessage } from '../server/request.js';
import { CpuMeter } from './cpu-meter.js';
import { createClient, rasterizeOnce, stageTimingsOf, stageWorkUs, waitForReady, type RasterClient, type ResponseMessage } from './grpc-paths.js';
import { childScript } from './paths.js';
import type { ServerProcess } from './server-process.js';
import { mean, median, roundSignificant, summarize, type LatencySummary } from './stats.js';
import type { Workload } from './workloads.js';

/** One transport configuration and its measured round trips. */
export interface TransportVariantResult {
  name: string;
  kind: 'grpc' | 'http2' | 'tcp';
  /** Server that sent the responses: rasterd as `rasterd serve` runs it, rasterd with TCP_NODELAY on its sockets, or a bare Node.js server. */
  server: 'rasterd' | 'rasterd nodelay' | 'bare';
  /** Scenes per RasterizeBatch call; 1 for unary calls and the floors. */
  batchSize: number;
  /** Channel options (gRPC) or session settings (HTTP/2) that differ from the defaults. */
  options: Record<string, unknown>;
  /** Round trip per step [ms]. */
  latencyMs: LatencySummary;
  /** Client-observed time minus the server's raster total, per call [us]; gRPC variants only. */
  transportUs: { p50: number; mean: number } | null;
  /** Rasters (or responses of the same size) per second over the measured calls. */
  rastersPerSecond: number;
  note: string;
}

export interface TransportResult {
  workload: string;
  /** Size of one RasterizeResponse (224x224x4 float32 with timings) [bytes]. */
  responseBytes: number;
  steps: number;
  batchCalls: number;
  rounds: number;
  /** Mean CPU use of other processes on the machine during the experiments [cores]; null where /proc is unavailable. */
  otherCpuCores: number | null;
  variants: TransportVariantResult[];
}

/** Sample counts and time limit of the transport experiments. */
export interface TransportPlan {
  /** Unary steps per variant and round. */
  steps: number;
  /** RasterizeBatch calls of 64 scenes per batch variant and round. */
  batchCalls: number;
  /** Rounds; each round runs every variant once, in the same order, so that drift hits all alike. */
  rounds: number;
  warmupSteps: number;
  /** Wall-time limit of all experiments [ms]. */
  budgetMs: number;
}

const MIB = 1024 * 1024;
/** Largest HTTP/2 SETTINGS_MAX_FRAME_SIZE (RFC 9113: 2^24 - 1) [bytes]. */
const HTTP2_MAX_FRAME_SIZE = 16 * MIB - 1;

interface GrpcVariant {
  name: string;
  server: 'rasterd' | 'rasterd nodelay';
  options: grpc.ChannelOptions;
  rawResponses: boolean;
  /** 1 for unary Rasterize, else scenes per RasterizeBatch call. */
  batchSize: number;
  note: string;
}

/** Scenes per call of the RasterizeBatch variants. */
const EXPERIMENT_BATCH_SIZE = 64;
const WINDOW_16_MIB = { 'grpc-node.flow_control_window': 16 * MIB };

/** The grpc-js client options and server changes tried; every variant has a connection of its own. */
export const GRPC_VARIANTS: GrpcVariant[] = [
  { name: 'grpc default', server: 'rasterd', options: {}, rawResponses: false, batchSize: 1, note: 'channel options as the unary path uses them' },
  { name: 'grpc window 1 MiB', server: 'rasterd', options: { 'grpc-node.flow_control_window': MIB }, rawResponses: false, batchSize: 1, note: 'initial HTTP/2 stream and connection receive window of the client' },
  { name: 'grpc window 4 MiB', server: 'rasterd', options: { 'grpc-node.flow_control_window': 4 * MIB }, rawResponses: false, batchSize: 1, note: 'as above' },
  { name: 'grpc window 16 MiB', server: 'rasterd', options: WINDOW_16_MIB, rawResponses: false, batchSize: 1, note: 'as above' },
  {
    name: 'grpc grpc.http2.* options',
    server: 'rasterd',
    options: { 'grpc.http2.max_frame_size': HTTP2_MAX_FRAME_SIZE, 'grpc.http2.lookahead_bytes': 16 * MIB, 'grpc.http2.bdp_probe': 0 },
    rawResponses: false,
    batchSize: 1,
    note: 'grpc-core options; grpc-js 1.14.7 reads none of them, so this should match the default',
  },
  { name: 'grpc window 16 MiB, raw bytes', server: 'rasterd', options: WINDOW_16_MIB, rawResponses: true, batchSize: 1, note: 'response bytes not decoded by protobufjs' },
  { name: 'grpc default, server nodelay', server: 'rasterd nodelay', options: {}, rawResponses: false, batchSize: 1, note: 'server sockets with TCP_NODELAY (not configurable in grpc-js 1.14.7)' },
  { name: 'grpc window 16 MiB, server nodelay', server: 'rasterd nodelay', options: WINDOW_16_MIB, rawResponses: false, batchSize: 1, note: 'both changes' },
  { name: 'grpc batch-64 default', server: 'rasterd', options: {}, rawResponses: false, batchSize: EXPERIMENT_BATCH_SIZE, note: 'one call = 64 rasters' },
  { name: 'grpc batch-64 window 16 MiB', server: 'rasterd', options: WINDOW_16_MIB, rawResponses: false, batchSize: EXPERIMENT_BATCH_SIZE, note: 'as above' },
  { name: 'grpc batch-64 window 16 MiB, server nodelay', server: 'rasterd nodelay', options: WINDOW_16_MIB, rawResponses: false, batchSize: EXPERIMENT_BATCH_SIZE, note: 'as above' },
];

/**
 * Reads StageTimings.total_us (field 7 of RasterizeResponse.timings, field 3) from an encoded
 * RasterizeResponse without decoding the raster.
 * @returns the server's total [us], or NaN when the response has no timings
 */
export function totalUsFromResponseBytes(bytes: Buffer): number {
  const readVarint = (position: number): [number, number] => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = bytes[position++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return [value, position];
      scale *= 128;
    }
  };
  let position = 0;
  while (position < bytes.length) {
    const [key, afterKey] = readVarint(position);
    position = afterKey;
    const field = Math.floor(key / 8);
    const wireType = key & 7;
    if (wireType === 0) position = readVarint(position)[1];
    else if (wireType === 1) position += 8;
    else if (wireType === 5) position += 4;
    else if (wireType === 2) {
      const [length, start] = readVarint(position);
      if (field === 3) {
        let inner = start;
        while (inner < start + length) {
          const [innerKey, afterInnerKey] = readVarint(inner);
          if ((innerKey & 7) !== 1) return NaN;
          if (Math.floor(innerKey / 8) === 7) return bytes.readDoubleLE(afterInnerKey);
          inner = afterInnerKey + 8;
        }
      }
      position = start + length;
    } else {
      return NaN;
    }
  }
  return NaN;
}

/** Measures one round trip over a plain TCP connection: a 4-byte request and a `size`-byte response [ms]. */
function tcpRoundTrip(socket: Socket, size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let received = 0;
    const started = performance.now();
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received >= size) {
        socket.off('data', onData);
        socket.off('error', reject);
        resolve(performance.now() - started);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    const request = Buffer.alloc(4);
    request.writeUInt32BE(size);
    socket.write(request);
  });
}

function http2RoundTrip(session: ClientHttp2Session, size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let received = 0;
    const stream = session.request({ ':path': `/bytes/${size}` });
    stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    stream.on('end', () => {
      if (received === size) resolve(performance.now() - started);
      else reject(new Error(`HTTP/2 floor server sent ${received} bytes; expected ${size}`));
    });
    stream.on('error', reject);
    stream.end();
  });
}

function openHttp2(port: number, windowBytes: number | null, maxFrameSize: number | null): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const settings: Record<string, number> = {};
    if (windowBytes !== null) settings.initialWindowSize = windowBytes;
    if (maxFrameSize !== null) settings.maxFrameSize = maxFrameSize;
    const session = connectHttp2(`http://127.0.0.1:${port}`, { settings });
    session.once('error', reject);
    session.once('connect', (connected: ClientHttp2Session, socket: Socket) => {
      socket.setNoDelay(true);
      if (windowBytes !== null) session.setLocalWindowSize(windowBytes);
      resolve(session);
    });
  });
}

interface Sampler {
  name: string;
  kind: TransportVariantResult['kind'];
  server: TransportVariantResult['server'];
  batchSize: number;
  /** Calls per round. */
  calls: number;
  options: Record<string, unknown>;
  note: string;
  /** Runs one step; returns the round trip [ms] and, for gRPC, the server's total [us]. */
  step(index: number): Promise<{ latencyMs: number; serverUs: number | null }>;
  close(): void;
  latencies: number[];
  transportUs: number[];
}

function batchCall(client: RasterClient, requests: RasterizeRequestMessage[]): Promise<{ latencyMs: number; serverUs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    client.RasterizeBatch({ requests }, { deadline: Date.now() + 120_000 }, (error, response) => {
      const latencyMs = performance.now() - started;
      if (error) return reject(error);
      const responses = response.responses ?? [];
      if (responses.length !== requests.length) return reject(new Error(`RasterizeBatch returned ${responses.length} responses for ${requests.length} requests`));
      resolve({ latencyMs, serverUs: responses.reduce((sum, item) => sum + stageWorkUs(stageTimingsOf(item)), 0) });
    });
  });
}

/** @param workers the server's batch threads; a batch's server time is estimated as in runBatch */
function grpcSampler(variant: GrpcVariant, client: RasterClient, workload: Workload, plan: TransportPlan, workers: number): Sampler {
  const requests = workload.requests;
  const parallelism = variant.batchSize < 2 ? 1 : Math.min(workers, variant.batchSize);
  const step = async (index: number): Promise<{ latencyMs: number; serverUs: number | null }> => {
    if (variant.batchSize > 1) {
      const batch = Array.from({ length: variant.batchSize }, (_, i) => requests[(index * variant.batchSize + i) % requests.length]);
      const { latencyMs, serverUs } = await batchCall(client, batch);
      return { latencyMs, serverUs: serverUs / parallelism };
    }
    const { response, latencyMs } = await rasterizeOnce<ResponseMessage | Buffer>(client, requests[index % requests.length]);
    const serverUs = Buffer.isBuffer(response) ? totalUsFromResponseBytes(response) : stageTimingsOf(response).total;
    return { latencyMs, serverUs };
  };
  return {
    name: variant.name, kind: 'grpc', server: variant.server, batchSize: variant.batchSize, options: variant.options, note: variant.note,
    calls: variant.batchSize > 1 ? plan.batchCalls : plan.steps, latencies: [], transportUs: [], step, close: () => client.close(),
  };
}

/**
 * Measures unary Rasterize and RasterizeBatch with several grpc-js channel options, against the
 * running server and against a second one with TCP_NODELAY on its sockets, and the floors under
 * them: the same response size over plain HTTP/2 (Node's http2 module) and TCP.
 * @param target the running rasterd server, host:port
 * @param startNoDelayServer starts the second server, with TCP_NODELAY on its sockets
 * @param ownPids this process and the running server, left out of the other-CPU count
 * @param workers the servers' batch threads
 */
export async function runTransportExperiments(
  target: string, startNoDelayServer: () => Promise<ServerProcess>, ownPids: number[], workload: Workload, plan: TransportPlan, workers: number,
): Promise<TransportResult> {
  const responseBytes = encodedResponseLength(
    { data: new Float32Array(224 * 224 * 4), shape: [224, 224, 4], timings: { mapQuery: 0, roadmap: 0, agents: 0, baselines: 0, ego: 0, serialization: 0, total: 0 } },
    true,
  );
  const floors = await startChild<{ tcpPort: number; http2Port: number; http2NoDelayPort: number }>(childScript('transport-child'), [], 30_000);
  const noDelayServer = await startNoDelayServer();
  const meter = new CpuMeter([...ownPids, floors.child.pid ?? 0, noDelayServer.pid]);
  const samplers: Sampler[] = [];
  try {
    for (const variant of GRPC_VARIANTS) {
      const address = variant.server === 'rasterd' ? target : `127.0.0.1:${noDelayServer.port}`;
      const client = createClient(address, { ...variant.options, 'grpc.use_local_subchannel_pool': 1 }, variant.rawResponses);
      await waitForReady(client);
      samplers.push(grpcSampler(variant, client, workload, plan, workers));
    }

    const http2Variants: Array<{ name: string; port: number; window: number | null; frame: number | null; note: string }> = [
      { name: 'http2 default', port: floors.ready.http2Port, window: null, frame: null, note: 'Node http2, default settings (64 KiB window, 16 KiB frames)' },
      { name: 'http2 window 16 MiB', port: floors.ready.http2Port, window: 16 * MIB, frame: null, note: 'what grpc-node.flow_control_window sets' },
      { name: 'http2 window 16 MiB, 16 MiB frames', port: floors.ready.http2Port, window: 16 * MIB, frame: HTTP2_MAX_FRAME_SIZE, note: 'client SETTINGS_MAX_FRAME_SIZE; grpc-js 1.14.7 has no option for it' },
      { name: 'http2 window 16 MiB, server nodelay', port: floors.ready.http2NoDelayPort, window: 16 * MIB, frame: null, note: 'server sockets with TCP_NODELAY' },
    ];
    for (const variant of http2Variants) {
      const session = await openHttp2(variant.port, variant.window, variant.frame);
      samplers.push({
        name: variant.name, kind: 'http2', server: 'bare', batchSize: 1, calls: plan.steps, note: variant.note, latencies: [], transportUs: [],
        options: { ...(variant.window ? { initialWindowSize: variant.window } : {}), ...(variant.frame ? { maxFrameSize: variant.frame } : {}) },
        step: async () => ({ latencyMs: await http2RoundTrip(session, responseBytes), serverUs: null }),
        close: () => session.close(),
      });
    }

    const socket = await new Promise<Socket>((resolve, reject) => {
      const connection = connectTcp(floors.ready.tcpPort, '127.0.0.1', () => resolve(connection));
      connection.once('error', reject);
    });
    socket.setNoDelay(true);
    samplers.push({
      name: 'tcp', kind: 'tcp', server: 'bare', batchSize: 1, calls: plan.steps, options: {}, note: 'plain socket, same byte count', latencies: [], transportUs: [],
      step: async () => ({ latencyMs: await tcpRoundTrip(socket, responseBytes), serverUs: null }),
      close: () => socket.destroy(),
    });

    for (const sampler of samplers) {
      const warmup = sampler.batchSize > 1 ? 1 : plan.warmupSteps;
      for (let i = 0; i < warmup; i++) await sampler.step(i);
    }
    const end = performance.now() + plan.budgetMs;
    rounds: for (let round = 0; round < plan.rounds; round++) {
      for (const sampler of samplers) {
        for (let call = 0; call < sampler.calls; call++) {
          if (performance.now() > end) break rounds;
          const { latencyMs, serverUs } = await sampler.step(round * sampler.calls + call);
          sampler.latencies.push(latencyMs);
          if (serverUs !== null && Number.isFinite(serverUs)) sampler.transportUs.push(latencyMs * 1000 - serverUs);
        }
      }
    }
  } finally {
    for (const sampler of samplers) sampler.close();
    await floors.stop();
    await noDelayServer.stop();
  }

  const otherCpuCores = meter.otherCores();
  return {
    workload: workload.name,
    responseBytes,
    steps: plan.steps,
    batchCalls: plan.batchCalls,
    rounds: plan.rounds,
    otherCpuCores: otherCpuCores === null ? null : roundSignificant(otherCpuCores, 2),
    variants: samplers.map((sampler) => {
      const total = sampler.latencies.reduce((sum, value) => sum + value, 0);
      return {
        name: sampler.name,
        kind: sampler.kind,
        server: sampler.server,
        batchSize: sampler.batchSize,
        options: sampler.options,
        latencyMs: summarize(sampler.latencies),
        transportUs: sampler.transportUs.length > 0 ? { p50: roundSignificant(median(sampler.transportUs)), mean: roundSignificant(mean(sampler.transportUs)) } : null,
        rastersPerSecond: roundSignificant(total > 0 ? (sampler.latencies.length * sampler.batchSize * 1000) / total : NaN),
        note: sampler.note,
      };
    }),
  };
}
