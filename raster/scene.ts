import type { RasterSettings } from './settings.js';

/** nuPlan's VehicleParameters [m]; only the front and rear lengths place the ego centre. */
export interface VehicleParameters {
  width: number;
  frontLength: number;
  rearLength: number;
  wheelBase: number;
  cogPositionFromRearAxle: number;
  height: number;
}

/** nuPlan's get_pacifica_parameters(). */
export const PACIFICA: VehicleParameters = Object.freeze({
  width: 1.1485 * 2.0,
  frontLength: 4.049,
  rearLength: 1.127,
  wheelBase: 3.089,
  cogPositionFromRearAxle: 1.67,
  height: 1.777,
});

/** A pose in the map frame: [m], [m], [rad]. */
export interface Pose {
  x: number;
  y: number;
  heading: number;
}

/** One simulation step to rasterize. */
export interface Scene {
  /** Ego rear-axle pose in the map frame. */
  rearAxle: Pose;
  vehicle: VehicleParameters;
  /**
   * Tracked objects as rows of (x [m], y [m], heading [rad], length [m], width [m]): box centres in
   * the map frame. Every type is drawn alike, as nuPlan does.
   */
  objects: Float64Array;
}

/** Server-side time per stage of one raster [us]. */
export interface StageTimings {
  mapQuery: number;
  roadmap: number;
  agents: number;
  baselines: number;
  ego: number;
  serialization: number;
  total: number;
}

/** A finished raster: float32 [targetWidth, targetHeight, 4], channels ego, agents, roadmap, baseline paths. */
export interface RasterResult {
  data: Float32Array;
  shape: [number, number, number];
  timings: StageTimings;
}

export const CHANNELS = ['ego', 'agents', 'roadmap', 'baseline_paths'] as const;

/** One request of a batch. */
export interface SceneJob {
  mapName: string;
  scene: Scene;
  settings: RasterSettings;
}
