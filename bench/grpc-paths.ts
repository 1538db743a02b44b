import * as grpc from '@grpc/grpc-js';

import type { StageTimings } from '../raster/scene.js';
import type { RasterizeRequestMessage } from '../server/request.js';
import { loadRasterProto, SERVICE_NAME } from '../server/proto.js';
import { emptyRun, recordStep, type PathRun, type RunPlan } from './path-run.js';
import type { Workload } from './workloads.js';

/** Deadline of every benchmark call [ms]; a call that takes longer fails the run instead of hanging it. */
const CALL_DEADLINE_MS = 120_000;

/** RasterizeResponse as the client decodes it (proto-loader: camelCase fields, unset fields absent). */
export interface ResponseMessage {
  raster?: { shape?: number[]; data?: Buffer };
  channels?: string[];
  timings?: {
    mapQueryUs?: number; roadmapUs?: number; agentsUs?: number; baselinesUs?: number; egoUs?: number; serializationUs?: number; totalUs?: number;
  };
}

type UnaryMethod<Request, Response> = (request: Request, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: Response) => void) => grpc.ClientUnaryCall;

/** A RasterService client; `Rasterize` returns the raw response bytes when the client was created with rawResponses. */
export type RasterClient = grpc.Client & {
  Rasterize: UnaryMethod<RasterizeRequestMessage, ResponseMessage | Buffer>;
  RasterizeBatch: UnaryMethod<{ requests: RasterizeRequestMessage[] }, { responses?: ResponseMessage[] }>;
  RasterizeStream: (options?: grpc.CallOptions) => grpc.ClientDuplexStream<RasterizeRequestMessage, ResponseMessage>;
};

/**
 * Creates a RasterService client for `target`, with no limit on the received message size.
 * @param rawResponses skip the protobuf decoding of Rasterize responses and return their bytes, to
 *   separate the decoding cost from the wire
 */
export function createClient(target: string, options: grpc.ChannelOptions = {}, rawResponses = false): RasterClient {
  const definition = loadRasterProto()[SERVICE_NAME] as grpc.ServiceDefinition;
  const service = rawResponses
    ? { ...definition, Rasterize: { ...definition.Rasterize, responseDeserialize: (bytes: Buffer) => bytes } }
    : definition;
  const Client = grpc.makeGenericClientConstructor(service as grpc.ServiceDefinition, 'RasterService');
  return new Client(target, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1, ...options }) as unknown as RasterClient;
}

/** Waits until the client's channel is connected. */
export function waitForReady(client: grpc.Client, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(new Error(`cannot connect to the benchmark server within ${timeoutMs} ms: ${error.message}`)) : resolve()));
  });
}

function deadline(): grpc.CallOptions {
  return { deadline: Date.now() + CALL_DEADLINE_MS };
}

/** Converts the response's timings to StageTimings [us]; proto3 leaves zero fields out. */
export function stageTimingsOf(response: ResponseMessage): StageTimings {
  const t = response.timings ?? {};
  return {
    mapQuery: t.mapQueryUs ?? 0, roadmap: t.roadmapUs ?? 0, agents: t.agentsUs ?? 0, baselines: t.baselinesUs ?? 0,
    ego: t.egoUs ?? 0, serialization: t.serializationUs ?? 0, total: t.totalUs ?? 0,
  };
}

/**
 * Checks that a response carries a raster of the workload's size.
 * @throws Error naming the workload and the sizes when it does not
 */
function checkRaster(workload: Workload, response: ResponseMessage): void {
  const expected = workload.settings.targetWidth * workload.settings.targetHeight * 4 * 4;
  const actual = response.raster?.data?.length ?? 0;
  if (actual !== expected) throw new Error(`${workload.name}: the server returned ${actual} raster bytes; expected ${expected}`);
}

/** Calls Rasterize once and returns the response and the client-observed latency [ms]. */
export function rasterizeOnce<T = ResponseMessage>(client: RasterClient, request: RasterizeRequestMessage): Promise<{ response: T; latencyMs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    client.Rasterize(request, deadline(), (error, response) => {
      const latencyMs = performance.now() - started;
      if (error) reject(error);
      else resolve({ response: response as T, latencyMs });
    });
  });
}

/** Replays the workload with one unary Rasterize call per step, each awaited before the next. */
export async function runUnary(client: RasterClient, workload: Workload, requests: RasterizeRequestMessage[], plan: RunPlan): Promise<PathRun> {
  for (let i = 0; i < plan.warmupSteps; i++) await rasterizeOnce(client, requests[i % requests.length]);

  const run = emptyRun();
  const started = performance.now();
  const end = started + plan.budgetMs;
  passes: for (let pass = 0; pass < plan.passes; pass++) {
    for (let step = 0; step < requests.length; step++) {
      if (performance.now() > end) {
        run.truncated = true;
        break passes;
      }
      const { response, latencyMs } = await rasterizeOnce(client, requests[step]);
      checkRaster(workload, response);
      recordStep(run, workload.scenes[step].id, latencyMs, stageTimingsOf(response));
    }
  }
  run.elapsedMs = performance.now() - started;
  return run;
}

/**
 * Sends steps over one RasterizeStream, one at a time: each step is written after the previous
 * response arrived, as a simulation does. `onStep` receives each response and its latency [ms].
 * @returns false when `shouldStop` ended the stream early
 */
async function streamSteps(
  client: RasterClient, requests: RasterizeRequestMessage[], count: number,
  onStep: (step: number, response: ResponseMessage, latencyMs: number) => void, shouldStop: () => boolean,
): Promise<boolean> {
  const call = client.RasterizeStream(deadline());
  let pending: { resolve: (response: ResponseMessage) => void; reject: (error: Error) => void } | null = null;
  let failure: Error | null = null;
  call.on('data', (response: ResponseMessage) => {
    const waiter = pending;
    pending = null;
    waiter?.resolve(response);
  });
  call.on('error', (error: Error) => {
    failure = error;
    pending?.reject(error);
  });
  const finished = new Promise<void>((resolve) => call.on('status', () => resolve()));

  let completed = true;
  try {
    for (let step = 0; step < count; step++) {
      if (shouldStop()) {
        completed = false;
        break;
      }
      if (failure) throw failure;
      const response = new Promise<ResponseMessage>((resolve, reject) => {
        pending = { resolve, reject };
      });
      const started = performance.now();
      call.write(requests[step % requests.length]);
      const message = await response;
      onStep(step, message, performance.now() - started);
    }
  } finally {
    call.end();
  }
  await finished;
  if (failure) throw failure;
  return completed;
}

/** Replays the workload over RasterizeStream: one stream per pass, one response per request, in order. */
export async function runStream(client: RasterClient, workload: Workload, requests: RasterizeRequestMessage[], plan: RunPlan): Promise<PathRun> {
  await streamSteps(client, requests, plan.warmupSteps, () => undefined, () => false);

  const run = emptyRun();
  const started = performance.now();
  const end = started + plan.budgetMs;
  for (let pass = 0; pass < plan.passes; pass++) {
    const completed = await streamSteps(client, requests, requests.length, (step, response, latencyMs) => {
      checkRaster(workload, response);
      recordStep(run, workload.scenes[step].id, latencyMs, stageTimingsOf(response));
    }, () => performance.now() > end);
    if (!completed || performance.now() > end) {
      run.truncated = !completed || pass + 1 < plan.passes;
      break;
    }
  }
  run.elapsedMs = performance.now() - started;
  return run;
}

function batchOnce(client: RasterClient, requests: RasterizeRequestMessage[]): Promise<{ responses: ResponseMessage[]; latencyMs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    client.RasterizeBatch({ requests }, deadline(), (error, response) => {
      const latencyMs = performance.now() - started;
      if (error) reject(error);
      else resolve({ responses: response.responses ?? [], latencyMs });
    });
  });
}

/** Sum of the stage timers of one raster [us]: its work, without the time it waited in a queue. */
export function stageWorkUs(timings: StageTimings): number {
  return timings.mapQuery + timings.roadmap + timings.agents + timings.baselines + timings.ego + timings.serialization;
}

/**
 * Sends `calls` RasterizeBatch calls of `batchSize` consecutive steps each (wrapping around the
 * workload), one call at a time.
 *
 * The server's total of a raster drawn by its worker pool also counts the time the raster waited
 * for a thread, so each raster's total is replaced by the sum of its stage timers. The server's
 * raster time of a call is estimated as the sum of those divided by `parallelism`, the threads that
 * draw one batch, and the rest of the call counts as transport.
 */
export async function runBatch(
  client: RasterClient, workload: Workload, requests: RasterizeRequestMessage[], batchSize: number, calls: number, warmupCalls: number, budgetMs: number,
  parallelism: number,
): Promise<PathRun> {
  let cursor = 0;
  const nextBatch = (): RasterizeRequestMessage[] => {
    const batch: RasterizeRequestMessage[] = [];
    for (let i = 0; i < batchSize; i++) batch.push(requests[(cursor + i) % requests.length]);
    cursor = (cursor + batchSize) % requests.length;
    return batch;
  };
  for (let i = 0; i < warmupCalls; i++) await batchOnce(client, nextBatch());

  const run = emptyRun();
  const started = performance.now();
  const end = started + budgetMs;
  for (let call = 0; call < calls; call++) {
    if (performance.now() > end) {
      run.truncated = true;
      break;
    }
    const { responses, latencyMs } = await batchOnce(client, nextBatch());
    if (responses.length !== batchSize) throw new Error(`${workload.name}: RasterizeBatch returned ${responses.length} responses for ${batchSize} requests`);
    let serverTotal = 0;
    for (const response of responses) {
      checkRaster(workload, response);
      const timings = stageTimingsOf(response);
      const work = stageWorkUs(timings);
      run.stages.push({ ...timings, total: work });
      serverTotal += work;
    }
    const transportShare = (latencyMs * 1000 - serverTotal / parallelism) / batchSize;
    for (let i = 0; i < batchSize; i++) run.transportUs.push(transportShare);
    run.samplesMs.push(latencyMs);
    run.rasters += batchSize;
  }
  run.elapsedMs = performance.now() - started;
  return run;
}
