import { readFileSync } from 'node:fs';

import { parse as parseYaml } from 'yaml';

import { asPolygonLayer, type PolygonLayerName } from '../maps/semantic-layers.js';

/** One roadmap layer and the value its pixels get. */
export interface MapFeature {
  layer: PolygonLayerName;
  /** Pixel value in [0, 1]. */
  color: number;
}

/** How the roadmap layer is built. */
export type RoadmapMode = 'exact' | 'tiles';

/** RasterFeatureBuilder's arguments, plus rasterd's own options. */
export interface RasterSettings {
  /** Drawing order; later layers overwrite earlier ones. */
  mapFeatures: MapFeature[];
  /** [px] nuPlan's raster has targetWidth rows. */
  targetWidth: number;
  /** [px] and targetHeight columns. */
  targetHeight: number;
  /** [m] per pixel. */
  targetPixelSize: number;
  /** [m] width of the ego rectangle. */
  egoWidth: number;
  /** [m] rear axle to front bumper. */
  egoFrontLength: number;
  /** [m] rear axle to rear bumper. */
  egoRearLength: number;
  /** [fraction] moves the ego rectangle up or down and the agents layer sideways (nuPlan's behaviour). */
  egoLongitudinalOffset: number;
  /** [px] thickness of baseline paths. */
  baselinePathThickness: number;
  /** 'exact' (nuPlan's pixels) or 'tiles' (sampled from static tiles; not bit-exact). */
  roadmapMode: RoadmapMode;
}

/** nuPlan's raster_model.yaml. */
export const NUPLAN_DEFAULT_SETTINGS: RasterSettings = Object.freeze({
  mapFeatures: [
    { layer: 'LANE', color: 1.0 },
    { layer: 'INTERSECTION', color: 1.0 },
    { layer: 'STOP_LINE', color: 0.5 },
    { layer: 'CROSSWALK', color: 0.5 },
  ],
  targetWidth: 224,
  targetHeight: 224,
  targetPixelSize: 0.5,
  egoWidth: 2.297,
  egoFrontLength: 4.049,
  egoRearLength: 1.127,
  egoLongitudinalOffset: 0.0,
  baselinePathThickness: 1,
  roadmapMode: 'exact',
}) as RasterSettings;

/** Limits that keep one request's work bounded. */
export interface SettingsLimits {
  /** [px] largest accepted targetWidth and targetHeight. */
  maxRasterSize: number;
}

export const DEFAULT_LIMITS: SettingsLimits = { maxRasterSize: 2048 };

/** A request or config value that is out of range; the message names the field and the value. */
export class InvalidSettingError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
    this.name = 'InvalidSettingError';
  }
}

/** RasterFeatureBuilder's keyword arguments, as nuPlan's YAML and our JSON fixtures spell them. */
export interface NuplanBuilderArguments {
  map_features?: Record<string, number>;
  num_input_channels?: number | string;
  target_width?: number;
  target_height?: number;
  target_pixel_size?: number;
  ego_width?: number;
  ego_front_length?: number;
  ego_rear_length?: number;
  ego_longitudinal_offset?: number;
  baseline_path_thickness?: number;
}

const ARGUMENT_FIELDS: Record<string, keyof RasterSettings> = {
  target_width: 'targetWidth',
  target_height: 'targetHeight',
  target_pixel_size: 'targetPixelSize',
  ego_width: 'egoWidth',
  ego_front_length: 'egoFrontLength',
  ego_rear_length: 'egoRearLength',
  ego_longitudinal_offset: 'egoLongitudinalOffset',
  baseline_path_thickness: 'baselinePathThickness',
};

/**
 * Applies RasterFeatureBuilder keyword arguments on top of `base`.
 * @throws InvalidSettingError for unknown layers, unknown keys or non-numeric values
 */
export function applyBuilderArguments(base: RasterSettings, args: NuplanBuilderArguments & Record<string, unknown>): RasterSettings {
  const settings: RasterSettings = { ...base, mapFeatures: [...base.mapFeatures] };

  for (const [key, value] of Object.entries(args)) {
    if (key === '_target_' || key === '_convert_' || key === 'num_input_channels') continue;
    if (key === 'map_features') {
      settings.mapFeatures = parseMapFeatures(value);
      continue;
    }
    const field = ARGUMENT_FIELDS[key];
    if (field === undefined) {
      throw new InvalidSettingError(key, `unknown RasterFeatureBuilder argument '${key}'; expected one of map_features, ${Object.keys(ARGUMENT_FIELDS).join(', ')}`);
    }
    if (typeof value !== 'number') {
      throw new InvalidSettingError(key, `${key} must be a number; got ${JSON.stringify(value)}`);
    }
    (settings as unknown as Record<string, unknown>)[field] = value;
  }
  return settings;
}

function parseMapFeatures(value: unknown): MapFeature[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidSettingError('map_features', `map_features must map layer names to colours, e.g. {LANE: 1.0}; got ${JSON.stringify(value)}`);
  }
  return Object.entries(value as Record<string, unknown>).map(([name, color]) => {
    const layer = asPolygonLayer(name);
    if (layer === null) throw new InvalidSettingError('map_features', `map_features layer '${name}' is not a nuPlan polygon layer`);
    if (typeof color !== 'number') throw new InvalidSettingError('map_features', `map_features.${name} must be a number; got ${JSON.stringify(color)}`);
    return { layer, color };
  });
}

/**
 * Reads RasterFeatureBuilder settings from nuPlan's YAML: a raster model config (its
 * `feature_builders` entry whose `_target_` ends in RasterFeatureBuilder) or the builder's
 * arguments alone.
 * @param path YAML file
 */
export function readSettingsFile(path: string, base: RasterSettings = NUPLAN_DEFAULT_SETTINGS): RasterSettings {
  const document = parseYaml(readFileSync(path, 'utf8')) as Record<string, unknown> | null;
  if (document === null || typeof document !== 'object') {
    throw new InvalidSettingError('raster-config', `${path} is not a YAML mapping of RasterFeatureBuilder arguments`);
  }

  let args: Record<string, unknown> = document;
  if (Array.isArray(document.feature_builders)) {
    const builder = (document.feature_builders as Array<Record<string, unknown>>).find(
      (entry) => typeof entry?._target_ === 'string' && (entry._target_ as string).endsWith('RasterFeatureBuilder'),
    );
    if (!builder) throw new InvalidSettingError('raster-config', `${path} has feature_builders but none whose _target_ is a RasterFeatureBuilder`);
    args = builder;
  }
  return validateSettings(applyBuilderArguments(base, args));
}

/** nuPlan's (snake_case) name of each numeric setting, used in error messages and field paths. */
const SETTING_NAMES = {
  targetWidth: 'target_width',
  targetHeight: 'target_height',
  targetPixelSize: 'target_pixel_size',
  egoWidth: 'ego_width',
  egoFrontLength: 'ego_front_length',
  egoRearLength: 'ego_rear_length',
  egoLongitudinalOffset: 'ego_longitudinal_offset',
  baselinePathThickness: 'baseline_path_thickness',
} as const;

function requireFinite(field: keyof typeof SETTING_NAMES, value: number): void {
  const name = SETTING_NAMES[field];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidSettingError(name, `${name} must be a finite number; got ${value}`);
}

/**
 * Checks that the settings describe a raster nuPlan can build: square, finite, positive sizes.
 * @returns the same settings
 * @throws InvalidSettingError naming the field and the value
 */
export function validateSettings(settings: RasterSettings, limits: SettingsLimits = DEFAULT_LIMITS): RasterSettings {
  for (const field of ['targetWidth', 'targetHeight', 'baselinePathThickness'] as const) {
    const name = SETTING_NAMES[field];
    if (!Number.isInteger(settings[field])) throw new InvalidSettingError(name, `${name} must be an integer; got ${settings[field]}`);
  }
  for (const field of ['targetPixelSize', 'egoWidth', 'egoFrontLength', 'egoRearLength', 'egoLongitudinalOffset'] as const) {
    requireFinite(field, settings[field]);
  }

  const { targetWidth, targetHeight, targetPixelSize } = settings;
  if (targetWidth < 1 || targetWidth > limits.maxRasterSize) {
    throw new InvalidSettingError('target_width', `target_width must be in 1..${limits.maxRasterSize} px; got ${targetWidth}`);
  }
  if (targetHeight !== targetWidth) {
    throw new InvalidSettingError('target_height', `target_height must equal target_width (nuPlan builds square rasters only); got ${targetHeight} and ${targetWidth}`);
  }
  if (!(targetPixelSize > 0) || targetPixelSize > 100) {
    throw new InvalidSettingError('target_pixel_size', `target_pixel_size must be in (0, 100] m; got ${targetPixelSize}`);
  }
  for (const [field, value] of [['ego_width', settings.egoWidth], ['ego_front_length', settings.egoFrontLength], ['ego_rear_length', settings.egoRearLength]] as const) {
    if (value < 0 || value > 100) throw new InvalidSettingError(field, `${field} must be in [0, 100] m; got ${value}`);
  }
  if (Math.abs(settings.egoLongitudinalOffset) > 0.5) {
    throw new InvalidSettingError('ego_longitudinal_offset', `ego_longitudinal_offset must be in [-0.5, 0.5]; got ${settings.egoLongitudinalOffset}`);
  }
  if (settings.baselinePathThickness < 1 || settings.baselinePathThickness > 64) {
    throw new InvalidSettingError('baseline_path_thickness', `baseline_path_thickness must be in 1..64 px; got ${settings.baselinePathThickness}`);
  }
  settings.mapFeatures.forEach((feature, i) => {
    if (!Number.isFinite(feature.color) || feature.color < 0 || feature.color > 1) {
      throw new InvalidSettingError(`map_features[${i}].color`, `map_features[${i}].color (${feature.layer}) must be in [0, 1]; got ${feature.color}`);
    }
  });
  return settings;
}
