// The CUDA backend: device memory for maps, ego layers and batches, and the three kernels.
//
// One batch is one launch sequence on one stream:
//   1. a single host-to-device copy of the batch description (scenes, rings, agent corners),
//   2. vertexKernel: one thread per vertex transforms it to fixed point and builds its polygon edge,
//   3. polygonMetaKernel: one thread per ring finds the rows its fill and outline touch,
//   4. bandKernel: one block per (scene, band of rows) draws that band in shared memory and writes
//      its float32 [rows, cols, 4] pixels with the flips. Outlines take one thread per edge, fills
//      one warp per polygon with one lane per row, and baseline segments one thread each,
//   5. optionally one device-to-host copy of the rasters.
// Compiled with --fmad=false: the vertex transform must round like numpy's float64 matmul.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.hpp"
#include "batch_prep.hpp"
#include "raster_kernels.hpp"

namespace rasterd {
namespace gpu {
namespace {

constexpr int kBandThreads = 256;
constexpr int kWarpSize = 32;
/** Shared memory one band block may use [bytes]: the default limit, so no opt-in is needed. */
constexpr size_t kBandBudget = 48 * 1024;

void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(what + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

__global__ void noopKernel(int* flag) {
  if (flag != nullptr) *flag = 1;
}

__global__ void vertexKernel(BatchView batch) {
  const int vertex = blockIdx.x * blockDim.x + threadIdx.x;
  if (vertex < batch.vertexCount) processVertex(batch, vertex);
}

__global__ void polygonMetaKernel(BatchView batch) {
  const int ring = blockIdx.x * blockDim.x + threadIdx.x;
  if (ring < batch.ringCount) computePolygonMeta(batch, ring);
}

__global__ void __launch_bounds__(kBandThreads) bandKernel(BatchView batch, int bandRows, float4* out) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int sceneIndex = blockIdx.x;
  const SceneDesc& scene = batch.scenes[sceneIndex];
  const int rows = scene.rows;
  const int cols = scene.cols;
  const int rowBegin = blockIdx.y * bandRows;
  if (rowBegin >= rows) return;

  const BandCanvas canvas = bandCanvasAt(shared, bandRows, rowBegin, rows, cols);
  uint4* words = reinterpret_cast<uint4*>(shared);
  const int wordCount = static_cast<int>(bandCanvasBytes(bandRows, cols) / sizeof(uint4));
  for (int i = threadIdx.x; i < wordCount; i += blockDim.x) words[i] = make_uint4(0, 0, 0, 0);
  __syncthreads();

  for (int edge = scene.edgeBegin + threadIdx.x; edge < scene.edgeEnd; edge += blockDim.x) drawEdgeOutline(batch, canvas, edge);

  // One warp per polygon, one lane per row of the band (bandRows <= 32): the lanes read the same
  // edges at the same time.
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  for (int ring = scene.ringBegin + warp; ring < scene.ringEnd; ring += warps) {
    if (!fillTouchesBand(batch.polygonMeta[ring], canvas)) continue;
    if (lane < canvas.rowEnd - canvas.rowBegin) fillPolygonRow(batch, canvas, ring, rowBegin + lane);
  }

  for (int vertex = scene.segmentBegin + threadIdx.x; vertex < scene.segmentEnd; vertex += blockDim.x) {
    drawBaselineSegment(batch, canvas, vertex, scene.baselineThickness);
  }
  __syncthreads();

  const int pixels = (canvas.rowEnd - canvas.rowBegin) * cols;
  for (int i = threadIdx.x; i < pixels; i += blockDim.x) {
    const int y = rowBegin + i / cols;
    const int x = i % cols;
    float values[4];
    bandPixelValues(batch, scene, canvas, y, x, values);
    out[(static_cast<size_t>(sceneIndex) * rows + (rows - 1 - y)) * cols + x] = make_float4(values[0], values[1], values[2], values[3]);
  }
}

/** A device allocation that grows to the largest size asked for and is reused between batches. */
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { release(); }

  T* reserve(size_t count, const char* what) {
    if (count > capacity_) {
      release();
      const size_t grown = count + count / 4;
      check(cudaMalloc(reinterpret_cast<void**>(&data_), grown * sizeof(T)), what);
      capacity_ = grown;
    }
    return data_;
  }

  void release() {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    capacity_ = 0;
  }

  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  size_t capacity_ = 0;
};

size_t alignUp(size_t value, size_t alignment) { return (value + alignment - 1) / alignment * alignment; }

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    check(cudaSetDevice(0), "cudaSetDevice(0)");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    for (cudaEvent_t& event : events_) check(cudaEventCreate(&event), "cudaEventCreate");
  }

  ~CudaBackend() override {
    releaseAll();
    for (cudaEvent_t event : events_) cudaEventDestroy(event);
    cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }

  int registerMap(const double* coords, size_t vertexCount) override {
    double* device = nullptr;
    const size_t bytes = 2 * vertexCount * sizeof(double);
    check(cudaMalloc(reinterpret_cast<void**>(&device), bytes > 0 ? bytes : sizeof(double)), "cudaMalloc of map vertices");
    const cudaError_t copied = cudaMemcpy(device, coords, bytes, cudaMemcpyHostToDevice);
    if (copied != cudaSuccess) {
      cudaFree(device);
      check(copied, "cudaMemcpy of map vertices");
    }
    const int id = nextMapId_++;
    maps_[id] = MapRef{device, vertexCount};
    return id;
  }

  void releaseMap(int id) override {
    const auto found = maps_.find(id);
    if (found == maps_.end()) return;
    cudaFree(const_cast<double*>(found->second.coords));
    maps_.erase(found);
  }

  MapRef map(int id) const override {
    const auto found = maps_.find(id);
    if (found == maps_.end()) throw std::out_of_range("map id " + std::to_string(id) + " is not registered; call registerMap first");
    return found->second;
  }

  const uint8_t* egoPlane(const SceneParams& params) override {
    const std::array<double, 7> key = egoKey(params);
    const auto found = egoPlanes_.find(key);
    if (found != egoPlanes_.end()) return found->second;
    const std::vector<uint8_t> bytes = egoPlaneBytes(params);
    uint8_t* device = nullptr;
    check(cudaMalloc(reinterpret_cast<void**>(&device), bytes.size()), "cudaMalloc of the ego layer");
    const cudaError_t copied = cudaMemcpy(device, bytes.data(), bytes.size(), cudaMemcpyHostToDevice);
    if (copied != cudaSuccess) {
      cudaFree(device);
      check(copied, "cudaMemcpy of the ego layer");
    }
    egoPlanes_[key] = device;
    return device;
  }

  int bandRows(int rows, int cols) const override {
    const int fit = bandRowsFor(rows, cols, kBandBudget);
    return bandRowsOverride_ > 0 && bandRowsOverride_ < fit ? bandRowsOverride_ : fit;
  }

  void setBandRowsOverride(int rows) override { bandRowsOverride_ = rows > 0 ? rows : 0; }

  void run(const HostBatch& batch, float* hostOut, BatchTimings& timings) override {
    const size_t sceneCount = batch.scenes.size();
    const size_t ringCount = batch.rings.size();
    const size_t vertexCount = batch.vertexCount;
    if (sceneCount > 0x7fffffff) throw std::invalid_argument("the batch has " + std::to_string(sceneCount) + " scenes; split it into batches of at most 2^31 - 1");

    // Pack the batch description into one page-locked staging buffer: a single upload.
    const size_t scenesAt = 0;
    const size_t ringsAt = alignUp(scenesAt + sceneCount * sizeof(SceneDesc), 256);
    const size_t cornersAt = alignUp(ringsAt + ringCount * sizeof(RingDesc), 256);
    const size_t uploadBytes = alignUp(cornersAt + batch.agentCorners.size() * sizeof(int32_t), 256);
    if (uploadBytes > stagingBytes_) {
      if (staging_ != nullptr) cudaFreeHost(staging_);
      staging_ = nullptr;
      stagingBytes_ = 0;
      check(cudaHostAlloc(reinterpret_cast<void**>(&staging_), uploadBytes + uploadBytes / 4, cudaHostAllocDefault), "cudaHostAlloc of the upload staging buffer");
      stagingBytes_ = uploadBytes + uploadBytes / 4;
    }
    std::memcpy(staging_ + scenesAt, batch.scenes.data(), sceneCount * sizeof(SceneDesc));
    std::memcpy(staging_ + ringsAt, batch.rings.data(), ringCount * sizeof(RingDesc));
    std::memcpy(staging_ + cornersAt, batch.agentCorners.data(), batch.agentCorners.size() * sizeof(int32_t));

    unsigned char* upload = upload_.reserve(uploadBytes, "cudaMalloc of the batch description");
    const size_t outputFloats = sceneCount * static_cast<size_t>(batch.rows) * batch.cols * 4;
    BatchView view;
    view.scenes = reinterpret_cast<const SceneDesc*>(upload + scenesAt);
    view.rings = reinterpret_cast<const RingDesc*>(upload + ringsAt);
    view.agentCorners = reinterpret_cast<const int32_t*>(upload + cornersAt);
    view.vertices = vertices_.reserve(2 * vertexCount + 2, "cudaMalloc of the vertex buffer");
    view.segmentFlags = segmentFlags_.reserve(vertexCount + 1, "cudaMalloc of the segment flags");
    view.edges = edges_.reserve(vertexCount + 1, "cudaMalloc of the edge buffer");
    view.polygonMeta = polygonMeta_.reserve(ringCount + 1, "cudaMalloc of the polygon spans");
    view.sceneCount = static_cast<int32_t>(sceneCount);
    view.ringCount = static_cast<int32_t>(ringCount);
    view.vertexCount = static_cast<int32_t>(vertexCount);
    view.pad = 0;
    float* output = output_.reserve(outputFloats, "cudaMalloc of the output rasters");

    const int band = bandRows(batch.rows, batch.cols);
    const size_t sharedBytes = bandCanvasBytes(band, batch.cols);
    if (sharedBytes > kBandBudget) {
      throw std::invalid_argument("rasters of " + std::to_string(batch.cols) + " columns need " + std::to_string(sharedBytes) +
                                  " bytes of shared memory per band row, more than the " + std::to_string(kBandBudget) +
                                  " a block gets; use at most 8000 columns");
    }
    const unsigned bands = static_cast<unsigned>((batch.rows + band - 1) / band);
    if (bands > 65535) throw std::invalid_argument("rasters of " + std::to_string(batch.rows) + " rows need more than 65535 bands");

    check(cudaEventRecord(events_[0], stream_), "cudaEventRecord");
    check(cudaMemcpyAsync(upload, staging_, uploadBytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync of the batch description");
    check(cudaEventRecord(events_[1], stream_), "cudaEventRecord");
    if (vertexCount > 0) {
      vertexKernel<<<static_cast<unsigned>((vertexCount + 255) / 256), 256, 0, stream_>>>(view);
      check(cudaGetLastError(), "vertexKernel launch");
    }
    if (ringCount > 0) {
      polygonMetaKernel<<<static_cast<unsigned>((ringCount + 127) / 128), 128, 0, stream_>>>(view);
      check(cudaGetLastError(), "polygonMetaKernel launch");
    }
    bandKernel<<<dim3(static_cast<unsigned>(sceneCount), bands), kBandThreads, sharedBytes, stream_>>>(view, band, reinterpret_cast<float4*>(output));
    check(cudaGetLastError(), "bandKernel launch");
    check(cudaEventRecord(events_[2], stream_), "cudaEventRecord");
    if (hostOut != nullptr) {
      check(cudaMemcpyAsync(hostOut, output, outputFloats * sizeof(float), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync of the rasters");
    }
    check(cudaEventRecord(events_[3], stream_), "cudaEventRecord");
    check(cudaStreamSynchronize(stream_), "the batch's kernels");

    float uploadMs = 0, kernelMs = 0, downloadMs = 0;
    check(cudaEventElapsedTime(&uploadMs, events_[0], events_[1]), "cudaEventElapsedTime");
    check(cudaEventElapsedTime(&kernelMs, events_[1], events_[2]), "cudaEventElapsedTime");
    check(cudaEventElapsedTime(&downloadMs, events_[2], events_[3]), "cudaEventElapsedTime");
    timings.uploadMs = uploadMs;
    timings.kernelMs = kernelMs;
    timings.downloadMs = hostOut != nullptr ? downloadMs : 0.0;
    lastOutput_ = output;
  }

  uint64_t outputAddress() const override { return reinterpret_cast<uint64_t>(lastOutput_); }

  void releaseAll() override {
    for (auto& entry : maps_) cudaFree(const_cast<double*>(entry.second.coords));
    maps_.clear();
    for (auto& entry : egoPlanes_) cudaFree(entry.second);
    egoPlanes_.clear();
    upload_.release();
    vertices_.release();
    segmentFlags_.release();
    edges_.release();
    polygonMeta_.release();
    output_.release();
    if (staging_ != nullptr) cudaFreeHost(staging_);
    staging_ = nullptr;
    stagingBytes_ = 0;
    lastOutput_ = nullptr;
  }

 private:
  cudaStream_t stream_ = nullptr;
  std::array<cudaEvent_t, 4> events_{};
  int nextMapId_ = 1;
  int bandRowsOverride_ = 0;
  std::map<int, MapRef> maps_;
  std::map<std::array<double, 7>, uint8_t*> egoPlanes_;
  unsigned char* staging_ = nullptr;
  size_t stagingBytes_ = 0;
  DeviceArray<unsigned char> upload_;
  DeviceArray<int32_t> vertices_;
  DeviceArray<uint8_t> segmentFlags_;
  DeviceArray<FillEdge> edges_;
  DeviceArray<PolygonMeta> polygonMeta_;
  DeviceArray<float> output_;
  const float* lastOutput_ = nullptr;
};

}  // namespace

ProbeResult probeCuda() {
  ProbeResult result;
  // The statically linked runtime loads the driver library itself. Looking for it first gives a
  // machine without a driver a plain reason.
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (driver == nullptr) {
    const char* why = dlerror();
    result.reason = std::string("the NVIDIA driver library libcuda.so.1 cannot be loaded (") + (why ? why : "unknown error") +
                    "); install the NVIDIA driver or use the CPU rasterizer";
    return result;
  }
  dlclose(driver);

  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    result.reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    return result;
  }
  result.deviceCount = count;
  if (count == 0) {
    result.reason = "the CUDA driver reports no device";
    return result;
  }

  cudaDeviceProp properties;
  status = cudaGetDeviceProperties(&properties, 0);
  if (status != cudaSuccess) {
    result.reason = std::string("cudaGetDeviceProperties(0) failed: ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    return result;
  }
  result.gpuName = properties.name;
  result.memoryBytes = properties.totalGlobalMem;
  result.computeMajor = properties.major;
  result.computeMinor = properties.minor;
  if (properties.major < 8) {
    result.reason = "device 0 (" + result.gpuName + ") has compute capability " + std::to_string(properties.major) + "." +
                    std::to_string(properties.minor) + "; the addon is built for 8.0 and newer";
    return result;
  }

  // A kernel launch proves that the addon's code runs on this device and driver.
  status = cudaSetDevice(0);
  if (status == cudaSuccess) {
    noopKernel<<<1, 1>>>(nullptr);
    status = cudaGetLastError();
  }
  if (status == cudaSuccess) status = cudaDeviceSynchronize();
  if (status != cudaSuccess) {
    result.reason = "a test kernel failed on device 0 (" + result.gpuName + "): " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    return result;
  }

  result.available = true;
  result.reason = result.gpuName + ", compute capability " + std::to_string(properties.major) + "." + std::to_string(properties.minor) + ", " +
                  std::to_string(properties.totalGlobalMem >> 20) + " MiB";
  return result;
}

std::unique_ptr<Backend> createCudaBackend() {
  const ProbeResult probe = probeCuda();
  if (!probe.available) throw std::runtime_error("no usable CUDA device: " + probe.reason);
  return std::make_unique<CudaBackend>();
}

void* allocatePinned(size_t bytes) {
  void* pointer = nullptr;
  check(cudaHostAlloc(&pointer, bytes > 0 ? bytes : 1, cudaHostAllocDefault), "cudaHostAlloc of " + std::to_string(bytes) + " bytes");
  return pointer;
}

void freePinned(void* pointer) {
  if (pointer != nullptr) cudaFreeHost(pointer);
}

}  // namespace gpu
}  // namespace rasterd
