import { asPolygonLayer } from '../maps/semantic-layers.js';
import { PACIFICA, type Scene, type VehicleParameters } from '../raster/scene.js';
import { InvalidSettingError, validateSettings, type RasterSettings, type SettingsLimits } from '../raster/settings.js';

/** A request field that is missing or out of range; `field` is its path, e.g. tracked_objects[3].length. */
export class InvalidRequestError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/**
 * A request whose protobuf bytes could not be decoded. The service definition returns it in place
 * of the message, because grpc-js replies INTERNAL, not INVALID_ARGUMENT, when a deserializer throws.
 */
export class UndecodableMessage {
  constructor(readonly reason: string) {}
}

/** Request limits of one server. */
export interface RequestLimits extends SettingsLimits {
  /** Largest accepted tracked_objects count. */
  maxTrackedObjects: number;
  /** [m] largest accepted |x|, |y| of any pose; far beyond any UTM zone. */
  maxCoordinate: number;
  /** Largest accepted requests count of one RasterizeBatch. */
  maxBatchSize: number;
  /** Largest accepted config.map_features count; nuPlan has 9 polygon layers. */
  maxMapFeatures: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  maxRasterSize: 2048, maxTrackedObjects: 10_000, maxCoordinate: 1e8, maxBatchSize: 256, maxMapFeatures: 32,
};

/** Longest accepted map_name [characters]. */
const MAX_MAP_NAME_LENGTH = 256;

/** Upper bound of the encoded RasterizeResponse of one raster [bytes]: the float32 tensor plus 256 bytes of fields. */
export function responseBytesOf(settings: RasterSettings): number {
  return settings.targetWidth * settings.targetHeight * 4 * 4 + 256;
}

/**
 * Largest response the server sends [bytes]: 256 MiB, or one raster of the largest accepted size
 * when that is more. RasterizeBatch calls whose responses would exceed it are rejected before any work.
 */
export function maxResponseBytes(limits: SettingsLimits): number {
  return Math.max(256 * 1024 * 1024, limits.maxRasterSize * limits.maxRasterSize * 16 + 1024);
}

/** Quotes a client-supplied string for an error message, cut to 64 characters so that replies stay small. */
export function quote(value: string): string {
  return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
}

/** The decoded message shapes (proto-loader with camelCase field names, enums as strings, longs as numbers). */
interface PoseMessage { x?: number; y?: number; heading?: number }
interface VehicleMessage {
  width?: number; frontLength?: number; rearLength?: number; wheelBase?: number; cogPositionFromRearAxle?: number; height?: number;
}
interface TrackedObjectMessage { center?: PoseMessage | null; length?: number; width?: number; height?: number; type?: string | number; trackToken?: string }
interface ConfigMessage {
  mapFeatures?: Array<{ layer?: string; color?: number }>;
  targetWidth?: number; targetHeight?: number; targetPixelSize?: number;
  egoWidth?: number; egoFrontLength?: number; egoRearLength?: number; egoLongitudinalOffset?: number;
  baselinePathThickness?: number; roadmapMode?: string | number;
}
export interface RasterizeRequestMessage {
  mapName?: string;
  ego?: { rearAxle?: PoseMessage | null; vehicle?: VehicleMessage | null } | null;
  trackedObjects?: TrackedObjectMessage[];
  config?: ConfigMessage | null;
  includeTimings?: boolean;
}

const OBJECT_TYPES = new Set(['VEHICLE', 'PEDESTRIAN', 'BICYCLE', 'TRAFFIC_CONE', 'BARRIER', 'CZONE_SIGN', 'GENERIC_OBJECT', 'EGO']);

function finite(field: string, value: number | undefined, limit: number): number {
  const number = value ?? 0;
  if (typeof number !== 'number' || !Number.isFinite(number)) throw new InvalidRequestError(field, `${field} must be a finite number; got ${number}`);
  if (Math.abs(number) > limit) throw new InvalidRequestError(field, `${field} must be within ±${limit}; got ${number}`);
  return number;
}

function pose(field: string, message: PoseMessage | null | undefined, limits: RequestLimits): { x: number; y: number; heading: number } {
  if (!message) throw new InvalidRequestError(field, `${field} is required`);
  return {
    x: finite(`${field}.x`, message.x, limits.maxCoordinate),
    y: finite(`${field}.y`, message.y, limits.maxCoordinate),
    // glibc reduces any finite angle exactly; the bound only keeps the value meaningful.
    heading: finite(`${field}.heading`, message.heading, 1e6),
  };
}

function vehicle(message: VehicleMessage | null | undefined): VehicleParameters {
  if (!message) return PACIFICA;
  const values = {
    width: finite('ego.vehicle.width', message.width, 100),
    frontLength: finite('ego.vehicle.front_length', message.frontLength, 100),
    rearLength: finite('ego.vehicle.rear_length', message.rearLength, 100),
    wheelBase: finite('ego.vehicle.wheel_base', message.wheelBase, 100),
    cogPositionFromRearAxle: finite('ego.vehicle.cog_position_from_rear_axle', message.cogPositionFromRearAxle, 100),
    height: finite('ego.vehicle.height', message.height, 100),
  };
  if (Object.values(values).every((value) => value === 0)) return PACIFICA;
  if (values.frontLength < 0 || values.rearLength < 0 || values.width < 0) {
    throw new InvalidRequestError('ego.vehicle', `ego.vehicle lengths and width must not be negative; got front_length ${values.frontLength}, rear_length ${values.rearLength}, width ${values.width}`);
  }
  return values;
}

function objects(messages: TrackedObjectMessage[] | undefined, limits: RequestLimits): Float64Array {
  const list = messages ?? [];
  if (list.length > limits.maxTrackedObjects) {
    throw new InvalidRequestError('tracked_objects', `tracked_objects contains ${list.length} objects; the server accepts at most ${limits.maxTrackedObjects}`);
  }
  const rows = new Float64Array(5 * list.length);
  list.forEach((object, i) => {
    const field = `tracked_objects[${i}]`;
    const center = pose(`${field}.center`, object.center, limits);
    const length = finite(`${field}.length`, object.length, 1000);
    const width = finite(`${field}.width`, object.width, 1000);
    finite(`${field}.height`, object.height, 1000);
    if (length < 0 || width < 0) throw new InvalidRequestError(field, `${field} length and width must not be negative; got ${length} x ${width}`);
    const type = object.type ?? 'VEHICLE';
    // proto-loader turns known enum numbers into names and leaves unknown ones as numbers.
    if (typeof type !== 'string' || !OBJECT_TYPES.has(type)) {
      throw new InvalidRequestError(`${field}.type`, `${field}.type ${typeof type === 'string' ? quote(type) : type} is not a TrackedObjectType (0..7)`);
    }
    rows.set([center.x, center.y, center.heading, length, width], 5 * i);
  });
  return rows;
}

/**
 * Applies a request's RasterConfig on top of the server's defaults and validates the result.
 * @throws InvalidRequestError naming the config field and the value
 */
export function mergeConfig(defaults: RasterSettings, config: ConfigMessage | null | undefined, limits: RequestLimits): RasterSettings {
  const settings: RasterSettings = { ...defaults, mapFeatures: [...defaults.mapFeatures] };
  if (config) {
    if (config.mapFeatures && config.mapFeatures.length > limits.maxMapFeatures) {
      throw new InvalidRequestError('config.map_features', `config.map_features has ${config.mapFeatures.length} entries; the server accepts at most ${limits.maxMapFeatures}`);
    }
    if (config.mapFeatures && config.mapFeatures.length > 0) {
      settings.mapFeatures = config.mapFeatures.map((feature, i) => {
        const layer = asPolygonLayer(feature.layer ?? '');
        if (layer === null) {
          throw new InvalidRequestError(`config.map_features[${i}].layer`, `config.map_features[${i}].layer ${quote(feature.layer ?? '')} is not one of LANE, LANE_CONNECTOR, ROADBLOCK, ROADBLOCK_CONNECTOR, INTERSECTION, STOP_LINE, CROSSWALK, WALKWAYS, CARPARK_AREA`);
        }
        return { layer, color: feature.color ?? 0 };
      });
    }
    const assign = <K extends keyof RasterSettings>(key: K, value: RasterSettings[K] | undefined): void => {
      if (value !== undefined && value !== null) settings[key] = value;
    };
    assign('targetWidth', config.targetWidth);
    assign('targetHeight', config.targetHeight);
    assign('targetPixelSize', config.targetPixelSize);
    assign('egoWidth', config.egoWidth);
    assign('egoFrontLength', config.egoFrontLength);
    assign('egoRearLength', config.egoRearLength);
    assign('egoLongitudinalOffset', config.egoLongitudinalOffset);
    assign('baselinePathThickness', config.baselinePathThickness);
    const mode = config.roadmapMode;
    if (mode === 'ROADMAP_MODE_EXACT') settings.roadmapMode = 'exact';
    else if (mode === 'ROADMAP_MODE_TILES') settings.roadmapMode = 'tiles';
    else if (mode !== undefined && mode !== 'ROADMAP_MODE_UNSPECIFIED') {
      throw new InvalidRequestError('config.roadmap_mode', `config.roadmap_mode ${typeof mode === 'string' ? quote(mode) : mode} is not a RoadmapMode (0..2)`);
    }
  }

  try {
    return validateSettings(settings, limits);
  } catch (error) {
    if (error instanceof InvalidSettingError) throw new InvalidRequestError(`config.${error.field}`, `config: ${error.message}`);
    throw error;
  }
}

/** A validated request: what to rasterize, and how. */
export interface ParsedRequest {
  mapName: string;
  scene: Scene;
  settings: RasterSettings;
  includeTimings: boolean;
}

/**
 * Validates a RasterizeRequest before any work.
 * @throws InvalidRequestError naming the field path and the bad value
 */
export function parseRasterizeRequest(message: RasterizeRequestMessage | UndecodableMessage, defaults: RasterSettings, limits: RequestLimits): ParsedRequest {
  if (message instanceof UndecodableMessage) {
    throw new InvalidRequestError('request', `the request is not a valid RasterizeRequest protobuf message (${message.reason}); check the client's proto/rasterd/v1/raster_service.proto`);
  }
  const mapName = message.mapName ?? '';
  if (mapName.length === 0) throw new InvalidRequestError('map_name', 'map_name is required; ListMaps returns the names this server has loaded');
  if (mapName.length > MAX_MAP_NAME_LENGTH) {
    throw new InvalidRequestError('map_name', `map_name ${quote(mapName)} has ${mapName.length} characters; map names have at most ${MAX_MAP_NAME_LENGTH}`);
  }
  if (!message.ego) throw new InvalidRequestError('ego', 'ego is required: the ego rear-axle pose in the map frame');

  const scene: Scene = {
    rearAxle: pose('ego.rear_axle', message.ego.rearAxle, limits),
    vehicle: vehicle(message.ego.vehicle),
    objects: objects(message.trackedObjects, limits),
  };
  return { mapName, scene, settings: mergeConfig(defaults, message.config, limits), includeTimings: message.includeTimings === true };
}
