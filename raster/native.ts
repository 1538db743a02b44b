import { createRequire } from 'node:module';

/** Exports of the C++ addon in raster/native (built by `npm ci` through node-gyp). */
export interface NativeAddon {
  /**
   * Fills one polygon like OpenCV 4.6.0 `cv2.fillPoly(img, [pts], color, lineType=LINE_AA, shift)` on a
   * single-channel float32 image (LINE_AA falls back to LINE_8 there).
   * @param image row-major float32 image, rows * cols values, drawn in place
   * @param rows image height [px]
   * @param cols image width [px]
   * @param points fixed-point vertices as (x, y) int32 pairs with `shift` fractional bits
   * @param color value written to covered pixels
   * @param shift number of fractional bits of the vertices, 0..16
   */
  fillPoly(image: Float32Array, rows: number, cols: number, points: Int32Array, color: number, shift: number): void;

  /**
   * Draws an open or closed polyline like OpenCV 4.6.0 `cv2.polylines(img, [pts], isClosed, color, thickness,
   * lineType=LINE_AA, shift)` on a single-channel float32 image.
   * @param thickness line thickness [px], 1..32767
   */
  polylines(
    image: Float32Array, rows: number, cols: number, points: Int32Array, closed: boolean,
    color: number, thickness: number, shift: number,
  ): void;

  /** The ego box centre [x, y] [m] for the 13 scene parameters (see raster/native/addon.cc). */
  egoCenter(params: Float64Array): Float64Array;

  /** numpy.linalg.inv of a row-major 3x3 matrix as reference LAPACK computes it, or null when singular. */
  invert3(matrix: Float64Array): Float64Array | null;

  /** glibc's sin, cos or atan2(y, x), for tests that compare with numpy. */
  libm(name: 'sin' | 'cos' | 'atan2', a: number, b?: number): number;

  /**
   * Draws one scene into `out` (float32 [targetWidth, targetHeight, 4]). Returns false when the ego
   * pose cannot be inverted. `timings` receives roadmap, agents, baselines, ego and output-clearing times [us].
   */
  rasterize(
    params: Float64Array, coords: Float64Array, polygonRanges: Uint32Array, polygonColors: Float32Array,
    baselineRanges: Uint32Array, agents: Float64Array, out: Float32Array, timings?: Float64Array,
  ): boolean;
}

const require = createRequire(import.meta.url);

/**
 * Loads the compiled addon. Its path is relative to this file, which is the same in raster/ and dist/raster/.
 * @returns the addon's exports
 */
function loadNative(): NativeAddon {
  const candidates = ['./native/build/Release/rasterd_native.node', '../../raster/native/build/Release/rasterd_native.node'];
  const errors: string[] = [];
  for (const candidate of candidates) {
    try {
      return require(candidate) as NativeAddon;
    } catch (error) {
      errors.push(`${candidate}: ${(error as Error).message}`);
    }
  }
  throw new Error(`the rasterd C++ addon is not built; run \`npm ci\` (or \`npx node-gyp rebuild --directory=raster/native\`). Tried ${errors.join('; ')}`);
}

export const native: NativeAddon = loadNative();
