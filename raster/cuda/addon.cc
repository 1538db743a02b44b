// Node-API bindings of the batched rasterizer. Built twice from this file:
// - rasterd_cuda.node (RASTERD_WITH_CUDA): batches run on CUDA device 0;
// - rasterd_cuda_emu.node: the same kernels' per-thread code run sequentially on the CPU.
// Both export the same functions, plus test hooks that draw single primitives band by band.
#include <napi.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../native/pose_math.hpp"
#include "../native/scene_raster.hpp"
#include "backend.hpp"
#include "batch_prep.hpp"
#include "emulation.hpp"
#include "raster_kernels.hpp"

namespace {

using rasterd::gpu::Backend;

/** Per-environment state: the backend is created on first use. */
struct AddonState {
  std::unique_ptr<Backend> backend;
};

Backend& backendOf(const Napi::Env& env) {
  AddonState* state = env.GetInstanceData<AddonState>();
  if (!state->backend) {
#if defined(RASTERD_WITH_CUDA)
    state->backend = rasterd::gpu::createCudaBackend();
#else
    state->backend = rasterd::gpu::createEmulationBackend();
#endif
  }
  return *state->backend;
}

Napi::Value throwError(const Napi::Env& env, const std::string& message) {
  Napi::Error::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

/** Reads a typed array of the given element type in place; throws std::invalid_argument naming `name` otherwise. */
template <typename T>
T* typedArray(const Napi::Value& value, napi_typedarray_type type, const char* typeName, const std::string& name, size_t& length) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw std::invalid_argument(name + " must be a " + typeName);
  }
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  length = array.ElementLength();
  return reinterpret_cast<T*>(static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset());
}

template <typename T>
T* field(const Napi::Object& object, const char* key, napi_typedarray_type type, const char* typeName, size_t& length) {
  return typedArray<T>(object.Get(key), type, typeName, std::string("batch.") + key, length);
}

int intArgument(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsNumber()) throw std::invalid_argument(std::string(name) + " must be a number");
  return info[index].As<Napi::Number>().Int32Value();
}

/** Wraps a binding so that C++ exceptions become JavaScript errors with their message. */
template <Napi::Value (*Body)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return Body(info);
  } catch (const std::exception& error) {
    return throwError(info.Env(), error.what());
  }
}

Napi::Value ProbeBody(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
#if defined(RASTERD_WITH_CUDA)
  const rasterd::gpu::ProbeResult probe = rasterd::gpu::probeCuda();
#else
  rasterd::gpu::ProbeResult probe;
  probe.reason = "this is the CPU emulation addon, built without CUDA";
#endif
  result.Set("available", Napi::Boolean::New(env, probe.available));
  result.Set("reason", Napi::String::New(env, probe.reason));
  result.Set("gpuName", Napi::String::New(env, probe.gpuName));
  result.Set("memoryBytes", Napi::Number::New(env, static_cast<double>(probe.memoryBytes)));
  result.Set("deviceCount", Napi::Number::New(env, probe.deviceCount));
  result.Set("computeCapability", Napi::String::New(env, std::to_string(probe.computeMajor) + "." + std::to_string(probe.computeMinor)));
  return result;
}

/** egoCenter(params) -> Float64Array [x, y] [m]: the box centre the map query is made around. */
Napi::Value EgoCenterBody(const Napi::CallbackInfo& info) {
  size_t length;
  const double* params = typedArray<double>(info[0], napi_float64_array, "Float64Array", "params", length);
  if (length != rasterd::gpu::kSceneParamCount) throw std::invalid_argument("params must hold 13 values; got " + std::to_string(length));
  Napi::Float64Array result = Napi::Float64Array::New(info.Env(), 2);
  rasterd::egoCenter(rasterd::sceneParamsFrom(params), result[0], result[1]);
  return result;
}

/** registerMap(coords: Float64Array) -> id: copies a map's vertices to the backend (the device for CUDA). */
Napi::Value RegisterMapBody(const Napi::CallbackInfo& info) {
  size_t length;
  const double* coords = typedArray<double>(info[0], napi_float64_array, "Float64Array", "coords", length);
  if (length % 2 != 0) throw std::invalid_argument("coords must hold (x, y) pairs; got " + std::to_string(length) + " values");
  return Napi::Number::New(info.Env(), backendOf(info.Env()).registerMap(coords, length / 2));
}

Napi::Value ReleaseMapBody(const Napi::CallbackInfo& info) {
  AddonState* state = info.Env().GetInstanceData<AddonState>();
  if (state->backend) state->backend->releaseMap(intArgument(info, 0, "map id"));
  return info.Env().Undefined();
}

/**
 * rasterizeBatch(batch, out?, options?) -> {sceneOk, prepareMs, uploadMs, kernelMs, downloadMs, totalMs, bandRows, outputAddress}
 * Rasterizes every scene of `batch` (see BatchInput) into float32 [scenes, rows, cols, 4]. With
 * `out` (a Float32Array of that length) the rasters are copied there. Without it, they stay in
 * the backend's buffer at outputAddress until the next call.
 */
Napi::Value RasterizeBatchBody(const Napi::CallbackInfo& info) {
  using Clock = std::chrono::steady_clock;
  const Napi::Env env = info.Env();
  const auto started = Clock::now();
  if (!info[0].IsObject()) throw std::invalid_argument("batch must be an object of typed arrays (see CudaAddon.rasterizeBatch)");
  const Napi::Object object = info[0].As<Napi::Object>();

  rasterd::gpu::BatchInput input;
  size_t paramCount, mapCount, polygonCountLength, polygonRangeLength, colorLength, baselineCountLength, baselineRangeLength,
      agentCountLength, agentLength;
  input.params = field<double>(object, "params", napi_float64_array, "Float64Array", paramCount);
  input.mapIds = field<int32_t>(object, "mapIds", napi_int32_array, "Int32Array", mapCount);
  input.polygonCounts = field<uint32_t>(object, "polygonCounts", napi_uint32_array, "Uint32Array", polygonCountLength);
  input.polygonRanges = field<uint32_t>(object, "polygonRanges", napi_uint32_array, "Uint32Array", polygonRangeLength);
  input.polygonColors = field<float>(object, "polygonColors", napi_float32_array, "Float32Array", colorLength);
  input.baselineCounts = field<uint32_t>(object, "baselineCounts", napi_uint32_array, "Uint32Array", baselineCountLength);
  input.baselineRanges = field<uint32_t>(object, "baselineRanges", napi_uint32_array, "Uint32Array", baselineRangeLength);
  input.agentCounts = field<uint32_t>(object, "agentCounts", napi_uint32_array, "Uint32Array", agentCountLength);
  input.agents = field<double>(object, "agents", napi_float64_array, "Float64Array", agentLength);

  if (paramCount == 0 || paramCount % rasterd::gpu::kSceneParamCount != 0) {
    throw std::invalid_argument("batch.params must hold 13 values per scene; got " + std::to_string(paramCount));
  }
  input.sceneCount = paramCount / rasterd::gpu::kSceneParamCount;
  const size_t scenes = input.sceneCount;
  if (mapCount != scenes || polygonCountLength != scenes || baselineCountLength != scenes || agentCountLength != scenes) {
    throw std::invalid_argument("batch.mapIds, polygonCounts, baselineCounts and agentCounts must hold one value per scene (" +
                                std::to_string(scenes) + ")");
  }
  if (polygonRangeLength % 2 != 0 || baselineRangeLength % 2 != 0) throw std::invalid_argument("batch ranges must hold [start, end) pairs");
  if (colorLength != polygonRangeLength / 2) throw std::invalid_argument("batch.polygonColors must hold one value per polygon range");
  if (agentLength % 5 != 0) throw std::invalid_argument("batch.agents must hold rows of (x, y, heading, length, width)");
  input.polygonTotal = polygonRangeLength / 2;
  input.baselineTotal = baselineRangeLength / 2;
  input.agentTotal = agentLength / 5;

  Backend& backend = backendOf(env);
  int bandRowsOverride = 0;
  if (info.Length() > 2 && info[2].IsObject()) {
    const Napi::Value bandRows = info[2].As<Napi::Object>().Get("bandRows");
    if (bandRows.IsNumber()) bandRowsOverride = bandRows.As<Napi::Number>().Int32Value();
  }
  backend.setBandRowsOverride(bandRowsOverride);

  rasterd::gpu::HostBatch batch;
  rasterd::gpu::buildHostBatch(input, backend, batch);

  float* out = nullptr;
  if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
    size_t outLength;
    out = typedArray<float>(info[1], napi_float32_array, "Float32Array", "out", outLength);
    const size_t expected = scenes * static_cast<size_t>(batch.rows) * batch.cols * 4;
    if (outLength != expected) {
      throw std::invalid_argument("out must hold scenes * targetWidth * targetHeight * 4 = " + std::to_string(expected) + " values; got " +
                                  std::to_string(outLength));
    }
  }

  rasterd::gpu::BatchTimings timings;
  timings.prepareMs = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  backend.run(batch, out, timings);
  timings.totalMs = std::chrono::duration<double, std::milli>(Clock::now() - started).count();

  Napi::Object result = Napi::Object::New(env);
  Napi::Uint8Array sceneOk = Napi::Uint8Array::New(env, scenes);
  for (size_t s = 0; s < scenes; s++) sceneOk[s] = batch.sceneOk[s];
  result.Set("sceneOk", sceneOk);
  result.Set("prepareMs", Napi::Number::New(env, timings.prepareMs));
  result.Set("uploadMs", Napi::Number::New(env, timings.uploadMs));
  result.Set("kernelMs", Napi::Number::New(env, timings.kernelMs));
  result.Set("downloadMs", Napi::Number::New(env, timings.downloadMs));
  result.Set("totalMs", Napi::Number::New(env, timings.totalMs));
  result.Set("bandRows", Napi::Number::New(env, backend.bandRows(batch.rows, batch.cols)));
  result.Set("outputAddress", Napi::BigInt::New(env, backend.outputAddress()));
  return result;
}

/** allocateHostBuffer(length) -> Float32Array: page-locked memory for CUDA builds, ordinary memory for the emulation. */
Napi::Value AllocateHostBufferBody(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw std::invalid_argument("length must be a number of float32 values");
  const double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 0) || requested > 1e11) throw std::invalid_argument("length must be in 0..1e11 values; got " + std::to_string(requested));
  const size_t length = static_cast<size_t>(requested);
#if defined(RASTERD_WITH_CUDA)
  void* memory = rasterd::gpu::allocatePinned(length * sizeof(float));
  Napi::ArrayBuffer buffer =
      Napi::ArrayBuffer::New(env, memory, length * sizeof(float), [](Napi::Env, void* data) { rasterd::gpu::freePinned(data); });
  return Napi::Float32Array::New(env, length, buffer, 0);
#else
  return Napi::Float32Array::New(env, length);
#endif
}

Napi::Value ReleaseDeviceMemoryBody(const Napi::CallbackInfo& info) {
  AddonState* state = info.Env().GetInstanceData<AddonState>();
  if (state->backend) state->backend->releaseAll();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Test hooks: single primitives through the band code, to compare with raster/native's addon.

struct ImageArgument {
  float* data;
  int rows;
  int cols;
};

ImageArgument imageArgument(const Napi::CallbackInfo& info) {
  size_t length;
  float* data = typedArray<float>(info[0], napi_float32_array, "Float32Array", "image", length);
  const int rows = intArgument(info, 1, "rows");
  const int cols = intArgument(info, 2, "cols");
  if (rows <= 0 || cols <= 0 || static_cast<size_t>(rows) * cols != length) {
    throw std::invalid_argument("image must hold rows * cols values; got " + std::to_string(length) + " for " + std::to_string(rows) + " x " +
                                std::to_string(cols));
  }
  return ImageArgument{data, rows, cols};
}

int shiftArgument(const Napi::CallbackInfo& info, size_t index) {
  const int shift = intArgument(info, index, "shift");
  if (shift < 0 || shift > rasterd::gpu::kXyShift) throw std::invalid_argument("shift must be in 0..16; got " + std::to_string(shift));
  return shift;
}

int bandRowsArgument(const Napi::CallbackInfo& info, size_t index, int rows) {
  const int bandRows = intArgument(info, index, "bandRows");
  if (bandRows < 1 || bandRows > 32) throw std::invalid_argument("bandRows must be in 1..32; got " + std::to_string(bandRows));
  return bandRows < rows ? bandRows : rows;
}

/** Copies the pixels a band drew into `image` with `color` (the byte plane of agents or baselines). */
void paintBand(const ImageArgument& image, const rasterd::gpu::BandCanvas& canvas, const uint8_t* plane, float color) {
  for (int y = canvas.rowBegin; y < canvas.rowEnd; y++) {
    for (int x = 0; x < canvas.cols; x++) {
      if (plane[static_cast<size_t>(y - canvas.rowBegin) * canvas.cols + x]) image.data[static_cast<size_t>(y) * image.cols + x] = color;
    }
  }
}

/**
 * fillPolyBands(image, rows, cols, points: Int32Array, color, shift, bandRows): one polygon through
 * the batch pipeline's vertex, span and band stages, painted like cv2.fillPoly.
 */
Napi::Value FillPolyBandsBody(const Napi::CallbackInfo& info) {
  using namespace rasterd::gpu;
  const ImageArgument image = imageArgument(info);
  size_t length;
  const int32_t* points = typedArray<int32_t>(info[3], napi_int32_array, "Int32Array", "points", length);
  if (length % 2 != 0) throw std::invalid_argument("points must hold (x, y) pairs; got " + std::to_string(length) + " values");
  const float color = info[4].As<Napi::Number>().FloatValue();
  const int shift = shiftArgument(info, 5);
  const int bandRows = bandRowsArgument(info, 6, image.rows);
  const uint32_t count = static_cast<uint32_t>(length / 2);

  HostBatch batch;
  batch.rows = image.rows;
  batch.cols = image.cols;
  batch.agentCorners.assign(points, points + length);
  SceneDesc scene{};
  scene.rows = image.rows;
  scene.cols = image.cols;
  scene.ringBegin = 0;
  scene.ringEnd = 1;
  scene.edgeBegin = 0;
  scene.edgeEnd = static_cast<int32_t>(count);
  scene.segmentBegin = scene.segmentEnd = static_cast<int32_t>(count);
  batch.scenes.push_back(scene);
  appendRing(batch, 0, count, 0, kRingAgent, shift, 1.0f);

  EmulationBuffers buffers;
  const BatchView view = emulationView(batch, buffers);
  for (int vertex = 0; vertex < view.vertexCount; vertex++) processVertex(view, vertex);
  computePolygonMeta(view, 0);
  for (int rowBegin = 0; rowBegin < image.rows; rowBegin += bandRows) {
    buffers.canvas.assign(bandCanvasBytes(bandRows, image.cols), 0);
    const BandCanvas canvas = bandCanvasAt(buffers.canvas.data(), bandRows, rowBegin, image.rows, image.cols);
    for (int edge = 0; edge < scene.edgeEnd; edge++) drawEdgeOutline(view, canvas, edge);
    if (fillTouchesBand(view.polygonMeta[0], canvas)) {
      for (int y = canvas.rowBegin; y < canvas.rowEnd; y++) fillPolygonRow(view, canvas, 0, y);
    }
    paintBand(image, canvas, canvas.agents, color);
  }
  return info.Env().Undefined();
}

/** polylineBands(image, rows, cols, points: Int32Array, color, thickness, shift, bandRows): an open polyline, band by band. */
Napi::Value PolylineBandsBody(const Napi::CallbackInfo& info) {
  using namespace rasterd::gpu;
  const ImageArgument image = imageArgument(info);
  size_t length;
  const int32_t* points = typedArray<int32_t>(info[3], napi_int32_array, "Int32Array", "points", length);
  if (length % 2 != 0) throw std::invalid_argument("points must hold (x, y) pairs; got " + std::to_string(length) + " values");
  const float color = info[4].As<Napi::Number>().FloatValue();
  const int thickness = intArgument(info, 5, "thickness");
  if (thickness < 0 || thickness > 32767) throw std::invalid_argument("thickness must be in 0..32767; got " + std::to_string(thickness));
  const int shift = shiftArgument(info, 6);
  const int bandRows = bandRowsArgument(info, 7, image.rows);
  const size_t count = length / 2;

  std::vector<uint8_t> memory;
  for (int rowBegin = 0; rowBegin < image.rows; rowBegin += bandRows) {
    memory.assign(bandCanvasBytes(bandRows, image.cols), 0);
    const BandCanvas canvas = bandCanvasAt(memory.data(), bandRows, rowBegin, image.rows, image.cols);
    for (size_t i = 1; i < count; i++) {
      const Point64 p0{points[2 * i - 2], points[2 * i - 1]};
      const Point64 p1{points[2 * i], points[2 * i + 1]};
      thickLine(canvas, Pen{kRingBaseline, 1}, p0, p1, thickness, i == 1 ? kFirstSegment : kLaterSegment, shift);
    }
    paintBand(image, canvas, canvas.baselines, color);
  }
  return info.Env().Undefined();
}

/**
 * countVertexMismatches(coords, transform[9], radius, pixelSize, shift) -> number of vertices whose
 * fixed-point result differs between the kernels' mapVertexToFixed and raster/native's
 * transformPoint + toFixedInt32 (both compiled here, for the host).
 */
Napi::Value CountVertexMismatchesBody(const Napi::CallbackInfo& info) {
  size_t coordCount, matrixCount;
  const double* coords = typedArray<double>(info[0], napi_float64_array, "Float64Array", "coords", coordCount);
  const double* matrix = typedArray<double>(info[1], napi_float64_array, "Float64Array", "transform", matrixCount);
  if (matrixCount != 9) throw std::invalid_argument("transform must hold 9 values; got " + std::to_string(matrixCount));
  const double radius = info[2].As<Napi::Number>().DoubleValue();
  const double pixelSize = info[3].As<Napi::Number>().DoubleValue();
  const int shift = shiftArgument(info, 4);

  rasterd::gpu::SceneDesc scene{};
  rasterd::Matrix3 transform;
  for (int i = 0; i < 9; i++) {
    scene.transform[i] = matrix[i];
    transform.m[i / 3][i % 3] = matrix[i];
  }
  scene.radius = radius;
  scene.pixelSize = pixelSize;
  const double scale = static_cast<double>(int64_t(1) << shift);
  int mismatches = 0;
  for (size_t k = 0; k + 1 < coordCount; k += 2) {
    int32_t gpuX, gpuY;
    rasterd::gpu::mapVertexToFixed(scene, coords[k], coords[k + 1], shift, gpuX, gpuY);
    double u, v;
    rasterd::transformPoint(transform, coords[k], coords[k + 1], u, v);
    const int64_t cpuX = rasterd::toFixedInt32((radius + u) / pixelSize * scale);
    const int64_t cpuY = rasterd::toFixedInt32((radius + v) / pixelSize * scale);
    if (cpuX != gpuX || cpuY != gpuY) mismatches++;
  }
  return Napi::Number::New(info.Env(), mismatches);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonState());
#if defined(RASTERD_WITH_CUDA)
  exports.Set("backend", Napi::String::New(env, "cuda"));
#else
  exports.Set("backend", Napi::String::New(env, "emulation"));
#endif
  exports.Set("probe", Napi::Function::New(env, guarded<ProbeBody>));
  exports.Set("egoCenter", Napi::Function::New(env, guarded<EgoCenterBody>));
  exports.Set("registerMap", Napi::Function::New(env, guarded<RegisterMapBody>));
  exports.Set("releaseMap", Napi::Function::New(env, guarded<ReleaseMapBody>));
  exports.Set("rasterizeBatch", Napi::Function::New(env, guarded<RasterizeBatchBody>));
  exports.Set("allocateHostBuffer", Napi::Function::New(env, guarded<AllocateHostBufferBody>));
  exports.Set("releaseDeviceMemory", Napi::Function::New(env, guarded<ReleaseDeviceMemoryBody>));
  exports.Set("fillPolyBands", Napi::Function::New(env, guarded<FillPolyBandsBody>));
  exports.Set("polylineBands", Napi::Function::New(env, guarded<PolylineBandsBody>));
  exports.Set("countVertexMismatches", Napi::Function::New(env, guarded<CountVertexMismatchesBody>));
  return exports;
}

}  // namespace

NODE_API_MODULE(rasterd_cuda, Init)
