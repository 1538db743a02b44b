import { CpuRasterizer } from './cpu-rasterizer.js';
import type { Rasterizer } from './rasterizer.js';

/** The rasterizer choice of `--device`. */
export type DeviceChoice = 'auto' | 'cpu' | 'cuda';

/** The chosen rasterizer and what to report about it. */
export interface SelectedDevice {
  rasterizer: Rasterizer;
  gpuName: string;
  gpuMemoryBytes: number;
  /** The reason CUDA was not used, when it was not. */
  cpuReason?: string;
}

/** The exports of raster/cuda-rasterizer.ts, loaded lazily so that the CPU path never needs them. */
interface CudaModule {
  CudaRasterizer: {
    new (): Rasterizer;
    probe(): { available: boolean; reason: string; gpuName: string; memoryBytes: number };
  };
}

async function loadCudaModule(): Promise<CudaModule | string> {
  const modulePath = './cuda-rasterizer.js';
  try {
    return (await import(modulePath)) as CudaModule;
  } catch (error) {
    return `the CUDA rasterizer module is missing: ${(error as Error).message}`;
  }
}

/**
 * Picks the rasterizer: 'cuda' requires a CUDA device and fails without one, 'auto' uses CUDA when
 * a device is usable and the CPU otherwise, 'cpu' never touches CUDA.
 * @param workerThreads CPU threads that draw batches
 * @throws Error with the reason when 'cuda' is requested and no device is usable
 */
export async function selectDevice(choice: DeviceChoice, workerThreads: number): Promise<SelectedDevice> {
  if (choice === 'cpu') return { rasterizer: new CpuRasterizer(workerThreads), gpuName: '', gpuMemoryBytes: 0, cpuReason: '--device cpu' };

  const cuda = await loadCudaModule();
  const probe = typeof cuda === 'string'
    ? { available: false, reason: cuda, gpuName: '', memoryBytes: 0 }
    : cuda.CudaRasterizer.probe();
  if (probe.available && typeof cuda !== 'string') {
    return { rasterizer: new cuda.CudaRasterizer(), gpuName: probe.gpuName, gpuMemoryBytes: probe.memoryBytes };
  }
  if (choice === 'cuda') throw new Error(`--device cuda: no CUDA device is usable (${probe.reason}); use --device auto or cpu`);
  return { rasterizer: new CpuRasterizer(workerThreads), gpuName: '', gpuMemoryBytes: 0, cpuReason: probe.reason };
}
