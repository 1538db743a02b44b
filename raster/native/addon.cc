// Node-API bindings of the CPU rasterizer: OpenCV primitives for golden tests, nuPlan's pose
// arithmetic, and whole scenes. Typed arrays are read in place; nothing is copied per call.
#include <napi.h>

#include <cstdint>
#include <string>

#include "opencv_draw.hpp"
#include "pose_math.hpp"
#include "scene_raster.hpp"

namespace {

using rasterd::PointL;

thread_local rasterd::SceneScratch sceneScratch;

bool fail(const Napi::Env& env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return false;
}

template <typename T>
bool readArray(const Napi::Env& env, const Napi::Value& value, napi_typedarray_type type, const char* name, T*& data, size_t& length) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != type) {
    return fail(env, std::string(name) + " must be a typed array of the documented element type");
  }
  // napi_get_typedarray_info gives the data pointer for views of SharedArrayBuffers too (worker outputs).
  napi_typedarray_type actualType;
  void* pointer = nullptr;
  size_t elements = 0;
  if (napi_get_typedarray_info(env, value, &actualType, &elements, &pointer, nullptr, nullptr) != napi_ok || (pointer == nullptr && elements > 0)) {
    return fail(env, std::string(name) + " could not be read as a typed array");
  }
  data = static_cast<T*>(pointer);
  length = elements;
  return true;
}

bool readImage(const Napi::CallbackInfo& info, rasterd::FloatImage& image) {
  const Napi::Env env = info.Env();
  float* data = nullptr;
  size_t length = 0;
  if (!readArray(env, info[0], napi_float32_array, "image", data, length)) return false;
  const int rows = info[1].As<Napi::Number>().Int32Value();
  const int cols = info[2].As<Napi::Number>().Int32Value();
  if (rows <= 0 || cols <= 0 || static_cast<size_t>(rows) * cols != length) {
    return fail(env, "image must hold rows * cols values; got " + std::to_string(length) + " for " + std::to_string(rows) + " x " +
                         std::to_string(cols));
  }
  image = rasterd::FloatImage{data, rows, cols};
  return true;
}

bool readPoints(const Napi::Env& env, const Napi::Value& value, std::vector<PointL>& points) {
  int32_t* data;
  size_t length;
  if (!readArray(env, value, napi_int32_array, "points", data, length)) return false;
  if (length % 2 != 0) return fail(env, "points must hold (x, y) pairs; got " + std::to_string(length) + " values");
  points.resize(length / 2);
  for (size_t i = 0; i < points.size(); i++) points[i] = PointL{data[2 * i], data[2 * i + 1]};
  return true;
}

bool checkShift(const Napi::Env& env, int shift) {
  if (shift < 0 || shift > rasterd::kXyShift) return fail(env, "shift must be in 0..16; got " + std::to_string(shift));
  return true;
}

/** fillPoly(image, rows, cols, points, color, shift) */
Napi::Value FillPoly(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  rasterd::FloatImage image;
  std::vector<PointL> points;
  if (!readImage(info, image) || !readPoints(env, info[3], points)) return env.Undefined();
  const float color = info[4].As<Napi::Number>().FloatValue();
  const int shift = info[5].As<Napi::Number>().Int32Value();
  if (!checkShift(env, shift)) return env.Undefined();
  rasterd::fillPoly(image, points.data(), static_cast<int>(points.size()), color, shift, sceneScratch.edges);
  return env.Undefined();
}

/** polylines(image, rows, cols, points, closed, color, thickness, shift) */
Napi::Value Polylines(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  rasterd::FloatImage image;
  std::vector<PointL> points;
  if (!readImage(info, image) || !readPoints(env, info[3], points)) return env.Undefined();
  const bool closed = info[4].As<Napi::Boolean>().Value();
  const float color = info[5].As<Napi::Number>().FloatValue();
  const int thickness = info[6].As<Napi::Number>().Int32Value();
  const int shift = info[7].As<Napi::Number>().Int32Value();
  if (!checkShift(env, shift)) return env.Undefined();
  if (thickness < 0 || thickness > 32767) {
    fail(env, "thickness must be in 0..32767; got " + std::to_string(thickness));
    return env.Undefined();
  }
  rasterd::polyline(image, points.data(), static_cast<int>(points.size()), closed, color, thickness, shift);
  return env.Undefined();
}

/** Reads the 13 scene parameters (see SceneParams, same order) from a Float64Array. */
bool readParams(const Napi::Env& env, const Napi::Value& value, rasterd::SceneParams& p) {
  double* data;
  size_t length;
  if (!readArray(env, value, napi_float64_array, "params", data, length)) return false;
  if (length != 13) return fail(env, "params must hold 13 values; got " + std::to_string(length));
  p = rasterd::sceneParamsFrom(data);
  return true;
}

/** egoCenter(params) -> Float64Array [x, y]: the box centre nuPlan queries the map around [m]. */
Napi::Value EgoCenter(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  rasterd::SceneParams p;
  if (!readParams(env, info[0], p)) return env.Undefined();
  Napi::Float64Array result = Napi::Float64Array::New(env, 2);
  rasterd::egoCenter(p, result[0], result[1]);
  return result;
}

/** invert3(Float64Array[9] row-major) -> Float64Array[9] or null when singular; as numpy.linalg.inv. */
Napi::Value Invert3(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  double* data;
  size_t length;
  if (!readArray(env, info[0], napi_float64_array, "matrix", data, length)) return env.Undefined();
  if (length != 9) {
    fail(env, "matrix must hold 9 values; got " + std::to_string(length));
    return env.Undefined();
  }
  rasterd::Matrix3 input, inverse;
  for (int i = 0; i < 9; i++) input.m[i / 3][i % 3] = data[i];
  if (!rasterd::invertLikeLapack(input, inverse)) return env.Null();
  Napi::Float64Array result = Napi::Float64Array::New(env, 9);
  for (int i = 0; i < 9; i++) result[i] = inverse.m[i / 3][i % 3];
  return result;
}

/** libm(name, x, y) -> glibc's sin, cos or atan2, for tests that compare with numpy. */
Napi::Value Libm(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const double x = info[1].As<Napi::Number>().DoubleValue();
  if (name == "sin") return Napi::Number::New(env, std::sin(x));
  if (name == "cos") return Napi::Number::New(env, std::cos(x));
  if (name == "atan2") return Napi::Number::New(env, std::atan2(x, info[2].As<Napi::Number>().DoubleValue()));
  fail(env, "libm name must be sin, cos or atan2; got " + name);
  return env.Undefined();
}

bool readRings(const Napi::Env& env, const Napi::Value& coordsValue, const Napi::Value& rangesValue, const Napi::Value& colorsValue,
               const char* name, rasterd::RingSet& rings) {
  double* coords = nullptr;
  uint32_t* ranges = nullptr;
  size_t coordCount = 0, rangeCount = 0;
  if (!readArray(env, coordsValue, napi_float64_array, "coords", coords, coordCount)) return false;
  if (!readArray(env, rangesValue, napi_uint32_array, name, ranges, rangeCount)) return false;
  if (rangeCount % 2 != 0) return fail(env, std::string(name) + " must hold [start, end) pairs");
  const size_t vertices = coordCount / 2;
  for (size_t i = 0; i < rangeCount; i += 2) {
    if (ranges[i] > ranges[i + 1] || ranges[i + 1] > vertices) {
      return fail(env, std::string(name) + " range " + std::to_string(ranges[i]) + ".." + std::to_string(ranges[i + 1]) +
                           " is outside the " + std::to_string(vertices) + " map vertices");
    }
  }
  rings.coords = coords;
  rings.ranges = ranges;
  rings.count = static_cast<int>(rangeCount / 2);
  rings.colors = nullptr;
  if (!colorsValue.IsUndefined() && !colorsValue.IsNull()) {
    float* colors;
    size_t colorCount;
    if (!readArray(env, colorsValue, napi_float32_array, "colors", colors, colorCount)) return false;
    if (colorCount != static_cast<size_t>(rings.count)) return fail(env, "colors must hold one value per polygon");
    rings.colors = colors;
  }
  return true;
}

/**
 * rasterize(params, coords, polygonRanges, polygonColors, baselineRanges, agents, out, timings?) -> boolean
 * Draws one scene into `out` (Float32Array, targetWidth * targetHeight * 4). Returns false when the
 * ego pose cannot be inverted. `timings` (Float64Array[5], optional) receives roadmap, agents,
 * baselines, ego and output-clearing times [us].
 */
Napi::Value Rasterize(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  rasterd::SceneParams p;
  rasterd::RingSet polygons, baselines;
  double* agentRows;
  float* out;
  size_t agentCount, outLength;
  if (!readParams(env, info[0], p)) return env.Undefined();
  if (!readRings(env, info[1], info[2], info[3], "polygonRanges", polygons)) return env.Undefined();
  if (!readRings(env, info[1], info[4], env.Undefined(), "baselineRanges", baselines)) return env.Undefined();
  if (!readArray(env, info[5], napi_float64_array, "agents", agentRows, agentCount)) return env.Undefined();
  if (!readArray(env, info[6], napi_float32_array, "out", out, outLength)) return env.Undefined();
  if (agentCount % 5 != 0) {
    fail(env, "agents must hold rows of (x, y, heading, length, width)");
    return env.Undefined();
  }
  if (p.targetWidth <= 0 || p.targetHeight <= 0 || outLength != static_cast<size_t>(p.targetWidth) * p.targetHeight * 4) {
    fail(env, "out must hold targetWidth * targetHeight * 4 values; got " + std::to_string(outLength));
    return env.Undefined();
  }

  rasterd::SceneTimings timings;
  const rasterd::AgentSet agents{agentRows, static_cast<int>(agentCount / 5)};
  const bool ok = rasterd::rasterizeScene(p, polygons, baselines, agents, out, sceneScratch, &timings);

  if (info.Length() > 7 && info[7].IsTypedArray()) {
    double* t;
    size_t tLength;
    if (!readArray(env, info[7], napi_float64_array, "timings", t, tLength)) return env.Undefined();
    if (tLength >= 5) {
      t[0] = timings.roadmap;
      t[1] = timings.agents;
      t[2] = timings.baselines;
      t[3] = timings.ego;
      t[4] = timings.serialization;
    }
  }
  return Napi::Boolean::New(env, ok);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("fillPoly", Napi::Function::New(env, FillPoly));
  exports.Set("polylines", Napi::Function::New(env, Polylines));
  exports.Set("egoCenter", Napi::Function::New(env, EgoCenter));
  exports.Set("invert3", Napi::Function::New(env, Invert3));
  exports.Set("libm", Napi::Function::New(env, Libm));
  exports.Set("rasterize", Napi::Function::New(env, Rasterize));
  return exports;
}

}  // namespace

NODE_API_MODULE(rasterd_native, Init)
