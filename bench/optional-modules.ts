import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import type { Rasterizer } from '../raster/rasterizer.js';

/**
 * Finds a module that other work may not have added yet, next to this file's tree: the built
 * `.js` (dist/) or the `.ts` source (when vitest runs the sources).
 * @param relative path from this folder without extension, e.g. '../raster/cuda-rasterizer'
 */
function findModule(relative: string): URL | null {
  for (const extension of ['.js', '.ts']) {
    const url = new URL(`${relative}${extension}`, import.meta.url);
    if (existsSync(fileURLToPath(url))) return url;
  }
  return null;
}

/**
 * Loads the CUDA rasterizer when its module is in this checkout and CudaRasterizer.probe()
 * reports a usable GPU.
 * @returns the rasterizer, or the reason it is unavailable
 */
export async function loadCudaRasterizer(): Promise<{ rasterizer: Rasterizer } | { reason: string }> {
  const url = findModule('../raster/cuda-rasterizer');
  if (url === null) return { reason: 'raster/cuda-rasterizer.ts is not in this checkout' };

  let module: Record<string, unknown>;
  try {
    module = (await import(url.href)) as Record<string, unknown>;
  } catch (error) {
    return { reason: `raster/cuda-rasterizer failed to load: ${(error as Error).message}` };
  }
  const CudaRasterizer = module.CudaRasterizer as (new () => Rasterizer) & { probe?: () => unknown } | undefined;
  if (typeof CudaRasterizer !== 'function') return { reason: 'raster/cuda-rasterizer does not export a CudaRasterizer class' };

  if (typeof CudaRasterizer.probe === 'function') {
    const probe = (await CudaRasterizer.probe()) as { available?: boolean; reason?: string };
    if (!probe?.available) return { reason: `CudaRasterizer.probe() reports no usable GPU: ${probe?.reason ?? 'no reason given'}` };
  }
  try {
    return { rasterizer: new CudaRasterizer() };
  } catch (error) {
    return { reason: `new CudaRasterizer() failed: ${(error as Error).message}` };
  }
}
