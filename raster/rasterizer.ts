import type { MapData } from '../maps/map-data.js';
import type { RasterResult, Scene, SceneJob } from './scene.js';
import type { RasterSettings } from './settings.js';

/** A device that builds nuPlan rasters; the CPU and CUDA implementations give the same bits. */
export interface Rasterizer {
  /** 'cpu' or 'cuda'. */
  readonly device: string;

  /**
   * Builds one raster.
   * @param out optional destination of targetWidth * targetHeight * 4 floats, reused to avoid allocation
   */
  rasterize(map: MapData, scene: Scene, settings: RasterSettings, out?: Float32Array): RasterResult;

  /** Builds many independent rasters; results are in job order. */
  rasterizeBatch(jobs: Array<SceneJob & { map: MapData }>): Promise<RasterResult[]>;
}
