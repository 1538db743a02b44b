// Finds the tools that build raster/cuda's addons; shared by build.mjs and the tests.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Returns the first executable `name` on PATH, or null. */
export function findOnPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return null;
}

/**
 * Finds nvcc in $RASTERD_NVCC, $CUDACXX, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin or /usr/local/bin, in
 * that order, and returns null when there is none. RASTERD_NVCC=none hides nvcc, to try a build without CUDA.
 */
export function findNvcc() {
  if (process.env.RASTERD_NVCC === 'none') return null;
  const candidates = [
    process.env.RASTERD_NVCC,
    process.env.CUDACXX,
    findOnPath('nvcc'),
    process.env.CUDA_HOME ? join(process.env.CUDA_HOME, 'bin', 'nvcc') : undefined,
    '/usr/local/cuda/bin/nvcc',
    '/usr/local/bin/nvcc',
  ];
  return candidates.find((path) => path && executable(path)) ?? null;
}

/** Returns cmake on PATH, or null. */
export function findCmake() {
  return findOnPath('cmake');
}
