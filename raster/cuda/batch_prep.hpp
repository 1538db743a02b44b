// Host-side preparation of a batch. The float64 pose arithmetic that must match glibc and numpy
// runs here on the CPU, with raster/native's functions. The device only gets its results (a 3x3
// transform per scene and the agents' fixed-point corners) and ring lists into the maps it holds.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../native/pose_math.hpp"
#include "../native/scene_raster.hpp"
#include "backend.hpp"
#include "raster_kernels.hpp"

namespace rasterd {
namespace gpu {

/** Number of float64 scene parameters per scene, in SceneParams order (see sceneParams in raster/cpu-rasterizer.ts). */
constexpr size_t kSceneParamCount = 13;

/** A batch as the JavaScript side packs it: per-scene counts, and the items of all scenes concatenated. */
struct BatchInput {
  size_t sceneCount = 0;
  const double* params = nullptr;            // kSceneParamCount per scene
  const int32_t* mapIds = nullptr;           // registered map per scene
  const uint32_t* polygonCounts = nullptr;   // rings per scene
  const uint32_t* polygonRanges = nullptr;   // [start, end) vertex pairs into the scene's map, drawing order
  const float* polygonColors = nullptr;      // one per ring
  size_t polygonTotal = 0;
  const uint32_t* baselineCounts = nullptr;  // baseline paths per scene
  const uint32_t* baselineRanges = nullptr;
  size_t baselineTotal = 0;
  const uint32_t* agentCounts = nullptr;     // tracked objects per scene
  const double* agents = nullptr;            // rows of (x [m], y [m], heading [rad], length [m], width [m])
  size_t agentTotal = 0;
};

/** A prepared batch: what the device gets, in the layout of raster_kernels.hpp. */
struct HostBatch {
  std::vector<SceneDesc> scenes;
  std::vector<RingDesc> rings;
  std::vector<int32_t> agentCorners;
  std::vector<uint8_t> sceneOk;  // 0 where a pose matrix was singular, and then that scene's raster is all zeros
  int rows = 0;                  // [px] shared by every scene of the batch
  int cols = 0;
  uint32_t vertexCount = 0;
};

/**
 * Appends the fixed-point corners (kAgentShift bits, x, y pairs, four per box) of the agents whose
 * centre lies strictly inside the raster, computed by the CPU rasterizer's forEachAgentBox. Returns
 * false when the rear-axle pose is singular.
 */
inline bool appendAgentCorners(const SceneParams& p, const RasterRanges& ranges, const AgentSet& agents, std::vector<int32_t>& corners) {
  return forEachAgentBox(p, ranges, agents, [&](const PointL* box) {
    for (int k = 0; k < 4; k++) {
      corners.push_back(static_cast<int32_t>(box[k].x));
      corners.push_back(static_cast<int32_t>(box[k].y));
    }
  });
}

/** Draws the ego layer with drawEgo and returns it as bytes, rows x cols, 1 where drawn. */
inline std::vector<uint8_t> egoPlaneBytes(const SceneParams& p) {
  const int rows = p.targetWidth;
  const int cols = p.targetHeight;
  std::vector<float> image(static_cast<size_t>(rows) * cols, 0.0f);
  drawEgo(p, FloatImage{image.data(), rows, cols});
  std::vector<uint8_t> bytes(image.size());
  for (size_t i = 0; i < image.size(); i++) bytes[i] = image[i] != 0.0f ? 1 : 0;
  return bytes;
}

/** Returns the settings drawEgo depends on, as a cache key. */
inline std::array<double, 7> egoKey(const SceneParams& p) {
  return {static_cast<double>(p.targetWidth), static_cast<double>(p.targetHeight), p.pixelSize, p.egoWidth, p.egoFrontLength,
          p.egoRearLength, p.longitudinalOffset};
}

inline std::string sceneLabel(size_t scene) { return "scene " + std::to_string(scene); }

inline void appendRing(HostBatch& batch, uint32_t source, uint32_t count, int scene, RingKind kind, int shift, float color) {
  RingDesc ring;
  ring.source = source;
  ring.vertexBegin = batch.vertexCount;
  ring.vertexCount = count;
  ring.scene = scene;
  ring.kind = kind;
  ring.shift = shift;
  ring.color = color;
  ring.pad = 0;
  batch.rings.push_back(ring);
  batch.vertexCount += count;
  if (batch.vertexCount > static_cast<uint32_t>(INT32_MAX)) {
    throw std::invalid_argument("the batch has more than 2^31 - 1 vertices; split it into smaller batches");
  }
}

/** Checks that a scene's [start, end) ranges lie inside its map. */
inline void checkRanges(const uint32_t* ranges, size_t count, size_t vertexCount, size_t scene, const char* what) {
  for (size_t i = 0; i < count; i++) {
    const uint32_t start = ranges[2 * i];
    const uint32_t end = ranges[2 * i + 1];
    if (start > end || end > vertexCount) {
      throw std::invalid_argument(sceneLabel(scene) + ": " + what + " range " + std::to_string(start) + ".." + std::to_string(end) +
                                  " is outside its map's " + std::to_string(vertexCount) +
                                  " vertices; pass ranges from the MapData the map was registered with");
    }
  }
}

/** The pose results of one scene, which depend on nothing but that scene. */
struct ScenePoses {
  bool ok = false;
  Matrix3 transform{};
  std::vector<int32_t> corners;
};

/** Computes the poses of scenes [begin, end): the roadmap transform and the agents' fixed-point corners. */
inline void computePoses(const BatchInput& input, const std::vector<size_t>& agentOffsets, size_t begin, size_t end,
                         std::vector<ScenePoses>& poses) {
  for (size_t s = begin; s < end; s++) {
    const SceneParams p = sceneParamsFrom(input.params + kSceneParamCount * s);
    const AgentSet agents{input.agents + 5 * agentOffsets[s], static_cast<int>(input.agentCounts[s])};
    ScenePoses& result = poses[s];
    result.corners.clear();
    result.ok = roadmapTransform(p, result.transform) && appendAgentCorners(p, computeRanges(p), agents, result.corners);
  }
}

/** Runs computePoses over all scenes, on several threads for large batches. */
inline void computeAllPoses(const BatchInput& input, const std::vector<size_t>& agentOffsets, std::vector<ScenePoses>& poses) {
  constexpr size_t kScenesPerThread = 16;
  const size_t scenes = input.sceneCount;
  size_t threads = std::thread::hardware_concurrency();
  threads = std::min<size_t>({threads == 0 ? 1 : threads, 8, scenes / kScenesPerThread});
  if (threads <= 1) {
    computePoses(input, agentOffsets, 0, scenes, poses);
    return;
  }
  std::vector<std::thread> workers;
  const size_t chunk = (scenes + threads - 1) / threads;
  for (size_t t = 1; t < threads; t++) {
    const size_t begin = std::min(scenes, t * chunk);
    const size_t end = std::min(scenes, begin + chunk);
    workers.emplace_back([&, begin, end] { computePoses(input, agentOffsets, begin, end, poses); });
  }
  computePoses(input, agentOffsets, 0, std::min(scenes, chunk), poses);
  for (std::thread& worker : workers) worker.join();
}

/**
 * Prepares a batch for `backend`: per scene the roadmap transform, the agents' corners, and the
 * rings (roadmap polygons in drawing order, agent boxes, baseline paths) with their vertex ranges.
 * Throws std::invalid_argument naming the scene and the value when the input is inconsistent.
 */
inline void buildHostBatch(const BatchInput& input, Backend& backend, HostBatch& batch) {
  batch.scenes.clear();
  batch.rings.clear();
  batch.agentCorners.clear();
  batch.sceneOk.assign(input.sceneCount, 0);
  batch.vertexCount = 0;
  if (input.sceneCount == 0) throw std::invalid_argument("the batch has no scenes; pass at least one");

  const SceneParams first = sceneParamsFrom(input.params);
  batch.rows = first.targetWidth;
  batch.cols = first.targetHeight;

  // Check every scene and find its offsets into the concatenated arrays.
  std::vector<size_t> polygonOffsets(input.sceneCount + 1, 0), baselineOffsets(input.sceneCount + 1, 0), agentOffsets(input.sceneCount + 1, 0);
  for (size_t s = 0; s < input.sceneCount; s++) {
    const double* raw = input.params + kSceneParamCount * s;
    const SceneParams p = sceneParamsFrom(raw);
    if (p.targetWidth != batch.rows || p.targetHeight != batch.cols) {
      throw std::invalid_argument(sceneLabel(s) + " is " + std::to_string(p.targetWidth) + " x " + std::to_string(p.targetHeight) +
                                  " px but the batch is " + std::to_string(batch.rows) + " x " + std::to_string(batch.cols) +
                                  " px; put rasters of one size in a batch");
    }
    if (p.targetWidth < 1 || p.targetHeight < 1 || p.targetWidth > 16384 || p.targetHeight > 16384) {
      throw std::invalid_argument(sceneLabel(s) + ": raster size " + std::to_string(p.targetWidth) + " x " + std::to_string(p.targetHeight) +
                                  " px must be in 1..16384 per side");
    }
    for (int k = 2; k <= 6; k++) {
      if (!std::isfinite(raw[k])) {
        throw std::invalid_argument(sceneLabel(s) + ": parameter " + std::to_string(k) + " is " + std::to_string(raw[k]) +
                                    "; pixel size and ego sizes must be finite");
      }
    }
    if (!(p.pixelSize > 0)) throw std::invalid_argument(sceneLabel(s) + ": pixel size must be > 0 m; got " + std::to_string(p.pixelSize));
    if (p.baselineThickness < 0 || p.baselineThickness > 32767) {
      throw std::invalid_argument(sceneLabel(s) + ": baseline thickness must be in 0..32767 px; got " + std::to_string(p.baselineThickness));
    }
    polygonOffsets[s + 1] = polygonOffsets[s] + input.polygonCounts[s];
    baselineOffsets[s + 1] = baselineOffsets[s] + input.baselineCounts[s];
    agentOffsets[s + 1] = agentOffsets[s] + input.agentCounts[s];
    if (polygonOffsets[s + 1] > input.polygonTotal || baselineOffsets[s + 1] > input.baselineTotal || agentOffsets[s + 1] > input.agentTotal) {
      throw std::invalid_argument(sceneLabel(s) + ": the per-scene counts add up to more polygons, baselines or agents than the arrays hold");
    }
  }
  const size_t scenes = input.sceneCount;
  if (polygonOffsets[scenes] != input.polygonTotal || baselineOffsets[scenes] != input.baselineTotal || agentOffsets[scenes] != input.agentTotal) {
    throw std::invalid_argument("the per-scene counts add up to " + std::to_string(polygonOffsets[scenes]) + " polygons, " +
                                std::to_string(baselineOffsets[scenes]) + " baselines and " + std::to_string(agentOffsets[scenes]) +
                                " agents, but the arrays hold " + std::to_string(input.polygonTotal) + ", " +
                                std::to_string(input.baselineTotal) + " and " + std::to_string(input.agentTotal));
  }

  std::vector<ScenePoses> poses(scenes);
  computeAllPoses(input, agentOffsets, poses);

  // Lay out the rings in scene order, so that every scene's vertices are contiguous.
  batch.scenes.resize(scenes);
  for (size_t s = 0; s < scenes; s++) {
    const SceneParams p = sceneParamsFrom(input.params + kSceneParamCount * s);
    const uint32_t polygons = input.polygonCounts[s];
    const uint32_t baselines = input.baselineCounts[s];
    const size_t polygonAt = polygonOffsets[s];
    const size_t baselineAt = baselineOffsets[s];
    const MapRef map = backend.map(input.mapIds[s]);
    checkRanges(input.polygonRanges + 2 * polygonAt, polygons, map.vertexCount, s, "polygon");
    checkRanges(input.baselineRanges + 2 * baselineAt, baselines, map.vertexCount, s, "baseline");

    SceneDesc& scene = batch.scenes[s];
    scene = SceneDesc{};
    scene.rows = p.targetWidth;
    scene.cols = p.targetHeight;
    scene.baselineThickness = p.baselineThickness;
    scene.coords = map.coords;
    scene.radius = computeRanges(p).radius;
    scene.pixelSize = p.pixelSize;
    const ScenePoses& pose = poses[s];
    batch.sceneOk[s] = pose.ok ? 1 : 0;

    scene.ringBegin = static_cast<int32_t>(batch.rings.size());
    scene.edgeBegin = static_cast<int32_t>(batch.vertexCount);
    if (pose.ok) {
      for (int i = 0; i < 9; i++) scene.transform[i] = pose.transform.m[i / 3][i % 3];
      scene.ego = backend.egoPlane(p);
      for (uint32_t i = 0; i < polygons; i++) {
        const uint32_t start = input.polygonRanges[2 * (polygonAt + i)];
        const uint32_t end = input.polygonRanges[2 * (polygonAt + i) + 1];
        appendRing(batch, start, end - start, static_cast<int>(s), kRingRoadmap, kRoadmapShift, input.polygonColors[polygonAt + i]);
      }
      const uint32_t cornerBase = static_cast<uint32_t>(batch.agentCorners.size() / 2);
      for (size_t box = 0; box < pose.corners.size() / 8; box++) {
        appendRing(batch, cornerBase + static_cast<uint32_t>(4 * box), 4, static_cast<int>(s), kRingAgent, kAgentShift, 1.0f);
      }
      batch.agentCorners.insert(batch.agentCorners.end(), pose.corners.begin(), pose.corners.end());
    }
    scene.ringEnd = static_cast<int32_t>(batch.rings.size());
    scene.edgeEnd = static_cast<int32_t>(batch.vertexCount);
    scene.segmentBegin = scene.edgeEnd;
    if (pose.ok) {
      for (uint32_t i = 0; i < baselines; i++) {
        const uint32_t start = input.baselineRanges[2 * (baselineAt + i)];
        const uint32_t end = input.baselineRanges[2 * (baselineAt + i) + 1];
        appendRing(batch, start, end - start, static_cast<int>(s), kRingBaseline, kBaselineShift, 1.0f);
      }
    }
    scene.segmentEnd = static_cast<int32_t>(batch.vertexCount);
  }
}

}  // namespace gpu
}  // namespace rasterd
