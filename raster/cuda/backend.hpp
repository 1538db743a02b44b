// The interface shared by the CUDA pipeline (cuda_pipeline.cu) and its CPU emulation
// (emulation.hpp): map storage, cached ego layers, and running one prepared batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "../native/scene_raster.hpp"

namespace rasterd {
namespace gpu {

struct HostBatch;

/** A registered map's vertices as the backend stores them: a device pointer for CUDA, or a host pointer for the emulation. */
struct MapRef {
  const double* coords;  // x0, y0, x1, y1, ... [m]
  size_t vertexCount;
};

/** Wall-clock times [ms] of one batch's stages. The CUDA backend measures upload, kernels and download with CUDA events. */
struct BatchTimings {
  double prepareMs = 0;   // host: poses, agent corners, ring lists
  double uploadMs = 0;    // host to device copy of the batch description
  double kernelMs = 0;    // all kernels
  double downloadMs = 0;  // device to host copy of the rasters, 0 when they stay on the device
  double totalMs = 0;     // from the start of preparation to the end of the last copy
};

/** The result of probing for a CUDA device that can run the kernels. */
struct ProbeResult {
  bool available = false;
  std::string reason;   // why not, or a one-line description of the device
  std::string gpuName;
  uint64_t memoryBytes = 0;
  int deviceCount = 0;
  int computeMajor = 0;
  int computeMinor = 0;
};

/** Runs prepared batches: on a CUDA device, or sequentially on the CPU with the same per-thread code. */
class Backend {
 public:
  virtual ~Backend() = default;

  /** 'cuda' or 'emulation'. */
  virtual const char* name() const = 0;

  /** Stores a copy of a map's vertices (x, y pairs [m]) and returns its id. */
  virtual int registerMap(const double* coords, size_t vertexCount) = 0;

  /** Frees a map's vertices. Unknown ids are ignored. */
  virtual void releaseMap(int id) = 0;

  /** Returns the stored vertices of map `id`. Throws std::out_of_range for an unknown id. */
  virtual MapRef map(int id) const = 0;

  /** Returns the ego layer for these settings, rows x cols bytes (1 where drawn), cached per distinct settings. */
  virtual const uint8_t* egoPlane(const SceneParams& params) = 0;

  /** Returns the rows per band for rasters of rows x cols [px]. */
  virtual int bandRows(int rows, int cols) const = 0;

  /** Caps the band height [px] for tests of band boundaries, and 0 restores the default. The CUDA backend keeps bands that fit its shared memory. */
  virtual void setBandRowsOverride(int rows) = 0;

  /**
   * Rasterizes `batch` into the backend's output buffer, float32 [scenes, rows, cols, 4], and
   * copies it to `hostOut` unless that is null. Throws std::runtime_error on a device failure.
   */
  virtual void run(const HostBatch& batch, float* hostOut, BatchTimings& timings) = 0;

  /** Returns the address of the last batch's output buffer (a device address for CUDA), valid until the next run. */
  virtual uint64_t outputAddress() const = 0;

  /** Frees every map, ego layer and work buffer. */
  virtual void releaseAll() = 0;
};

/** Creates a backend that runs the kernels' per-thread code sequentially on the CPU. */
std::unique_ptr<Backend> createEmulationBackend();

#if defined(RASTERD_WITH_CUDA)
/** Checks for a CUDA driver and a device of compute capability 8.0 or newer that runs a test kernel. CUDA errors become the reason. */
ProbeResult probeCuda();

/** Creates a backend on CUDA device 0. Throws std::runtime_error when probeCuda() reports no usable device. */
std::unique_ptr<Backend> createCudaBackend();

/** Allocates page-locked host memory for fast device-to-host copies. Throws std::runtime_error when CUDA cannot allocate it. */
void* allocatePinned(size_t bytes);
void freePinned(void* pointer);
#endif

}  // namespace gpu
}  // namespace rasterd
