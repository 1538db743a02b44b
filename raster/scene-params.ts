import type { Scene } from './scene.js';
import type { RasterSettings } from './settings.js';

/** Packs settings and the ego into the 13 parameters the addon reads (SceneParams in raster/native/scene_raster.hpp, same order). */
export function sceneParams(scene: Scene, settings: RasterSettings): Float64Array {
  return Float64Array.of(
    settings.targetWidth, settings.targetHeight, settings.targetPixelSize,
    settings.egoWidth, settings.egoFrontLength, settings.egoRearLength,
    settings.egoLongitudinalOffset, settings.baselinePathThickness,
    scene.rearAxle.x, scene.rearAxle.y, scene.rearAxle.heading,
    scene.vehicle.frontLength, scene.vehicle.rearLength,
  );
}
