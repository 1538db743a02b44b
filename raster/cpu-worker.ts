import { parentPort } from 'node:worker_threads';

import { native } from './native.js';

/**
 * A worker thread of the CPU pool: draws scenes whose map objects the main thread has already
 * selected. Maps arrive once as shared coordinate arrays; outputs are written into a shared buffer.
 */

/** Registers a map's coordinates (a view of a SharedArrayBuffer). */
export interface MapMessage { kind: 'map'; mapId: number; coords: Float64Array }

/** Draws one scene into `out` at `outOffset` floats. */
export interface JobMessage {
  kind: 'job';
  jobId: number;
  mapId: number;
  params: Float64Array;
  polygonRanges: Uint32Array;
  polygonColors: Float32Array;
  baselineRanges: Uint32Array;
  agents: Float64Array;
  out: SharedArrayBuffer;
  outOffset: number;
  outLength: number;
}

/** The worker's reply: false `ok` when the ego pose could not be inverted. */
export interface JobDone { jobId: number; ok: boolean; timings: Float64Array; error?: string }

const maps = new Map<number, Float64Array>();

parentPort?.on('message', (message: MapMessage | JobMessage) => {
  if (message.kind === 'map') {
    maps.set(message.mapId, message.coords);
    return;
  }

  const timings = new Float64Array(5);
  try {
    const coords = maps.get(message.mapId);
    if (!coords) throw new Error(`map ${message.mapId} was not registered with this worker`);
    const out = new Float32Array(message.out, message.outOffset * 4, message.outLength);
    const ok = native.rasterize(message.params, coords, message.polygonRanges, message.polygonColors, message.baselineRanges, message.agents, out, timings);
    parentPort!.postMessage({ jobId: message.jobId, ok, timings } satisfies JobDone);
  } catch (error) {
    parentPort!.postMessage({ jobId: message.jobId, ok: false, timings, error: (error as Error).message } satisfies JobDone);
  }
});
