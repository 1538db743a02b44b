// nuPlan's RasterFeatureBuilder for one scene: ego, agents, roadmap and baseline-path layers.
//
// The caller has already selected the map objects (the axis-aligned square around the ego centre)
// and passes their exterior rings and baseline paths in drawing order, in map coordinates [m].
// Every step below follows nuPlan's raster_utils.py operation by operation; see pose_math.hpp for
// why the arithmetic order matters.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "opencv_draw.hpp"
#include "pose_math.hpp"

namespace rasterd {

/** RasterFeatureBuilder's arguments and the ego of one step. */
struct SceneParams {
  int targetWidth;             // [px]; nuPlan's raster has targetWidth rows
  int targetHeight;            // [px]; and targetHeight columns
  double pixelSize;            // [m]
  double egoWidth;             // [m] builder's ego rectangle
  double egoFrontLength;       // [m]
  double egoRearLength;        // [m]
  double longitudinalOffset;   // [fraction] of the raster
  int baselineThickness;       // [px]
  double rearAxleX;            // [m] map frame
  double rearAxleY;            // [m]
  double heading;              // [rad]
  double vehicleFrontLength;   // [m] vehicle parameters: place the centre relative to the rear axle
  double vehicleRearLength;    // [m]
};

/** Polylines or polygon rings as vertex ranges into one flat (x, y) float64 array [m]. */
struct RingSet {
  const double* coords;        // x0, y0, x1, y1, ... for the whole map
  const uint32_t* ranges;      // [start, end) vertex index pairs, one pair per ring
  const float* colors;         // one per ring, or null for 1.0
  int count;                   // rings
};

/** Tracked objects as rows of (x [m], y [m], heading [rad], length [m], width [m]). */
struct AgentSet {
  const double* rows;
  int count;
};

/** Per-stage wall time of one scene [us]. */
struct SceneTimings {
  double roadmap = 0, agents = 0, baselines = 0, ego = 0, serialization = 0;
};

/** Derived ranges of RasterFeatureBuilder.__init__ [m]. */
struct RasterRanges {
  double xMin, xMax, yMin, yMax, radius;
};

inline RasterRanges computeRanges(const SceneParams& p) {
  const double xSize = p.targetWidth * p.pixelSize / 2.0;
  const double ySize = p.targetHeight * p.pixelSize / 2.0;
  const double xOffset = 2.0 * p.longitudinalOffset * xSize;
  RasterRanges r;
  r.xMin = -xSize + xOffset;
  r.xMax = xSize + xOffset;
  r.yMin = -ySize;
  r.yMax = ySize;
  r.radius = (r.xMax - r.xMin) / 2;
  return r;
}

/** Computes the ego's box centre from its rear axle, as CarFootprint.build_from_rear_axle does [m]. */
inline void egoCenter(const SceneParams& p, double& x, double& y) {
  const double halfLength = (p.vehicleFrontLength + p.vehicleRearLength) / 2.0;
  const double rearAxleToCenter = halfLength - p.vehicleRearLength;
  x = p.rearAxleX + rearAxleToCenter * std::cos(p.heading);
  y = p.rearAxleY + rearAxleToCenter * std::sin(p.heading);
}

/** Converts to int64 like numpy's astype(int64) on x86-64 (out of range and NaN give INT64_MIN), then wraps to int32 as OpenCV's bindings do. */
inline int64_t toFixedInt32(double value) {
  int64_t wide = INT64_MIN;
  if (value > -9223372036854775808.0 && value < 9223372036854775808.0) wide = static_cast<int64_t>(value);
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(wide)));
}

/** Converts like numpy's astype(int32) on x86-64: out of range and NaN give INT32_MIN. */
inline int64_t toInt32(double value) {
  if (value > -2147483649.0 && value < 2147483648.0) return static_cast<int32_t>(value);
  return INT32_MIN;
}

/** Reusable buffers of one worker thread, so that rasterizing a scene does not allocate once warm. */
struct SceneScratch {
  std::vector<PointL> points;
  std::vector<PolyEdge> edges;
};

/** Computes the transform of map coordinates to the roadmap's pixel frame: Rz(90 deg, float32) @ inv(centre pose). */
inline bool roadmapTransform(const SceneParams& p, Matrix3& transform) {
  double centerX, centerY;
  egoCenter(p, centerX, centerY);
  Matrix3 globalTransform;
  if (!invertLikeLapack(poseMatrix(centerX, centerY, p.heading), globalTransform)) return false;

  // scipy's Rotation.from_euler('z', 90, degrees=True).as_matrix() cast to float32: its diagonal is
  // float32(2.220446e-16) = 2^-52, not zero.
  const double tiny = 2.220446049250313e-16;
  const Matrix3 mapAlign{{{tiny, -1.0, 0.0}, {1.0, tiny, 0.0}, {0.0, 0.0, 1.0}}};
  transform = multiply(mapAlign, globalTransform);
  return true;
}

/** Transforms one ring to fixed-point pixel coordinates with `shift` fractional bits. */
inline void ringToFixed(const Matrix3& t, const double* coords, uint32_t start, uint32_t end, double radius, double pixelSize,
                        int shift, std::vector<PointL>& out) {
  out.clear();
  const double scale = static_cast<double>(int64_t(1) << shift);
  for (uint32_t k = start; k < end; k++) {
    double u, v;
    transformPoint(t, coords[2 * k], coords[2 * k + 1], u, v);
    const double indexU = (radius + u) / pixelSize;
    const double indexV = (radius + v) / pixelSize;
    out.push_back(PointL{toFixedInt32(indexU * scale), toFixedInt32(indexV * scale)});
  }
}

/** Draws the roadmap layer (before its flip): polygons in order, each with its colour, shift 12. */
inline void drawRoadmap(const SceneParams& p, const RasterRanges& ranges, const Matrix3& t, const RingSet& polygons,
                        const FloatImage& image, SceneScratch& scratch) {
  for (int i = 0; i < polygons.count; i++) {
    ringToFixed(t, polygons.coords, polygons.ranges[2 * i], polygons.ranges[2 * i + 1], ranges.radius, p.pixelSize, 12, scratch.points);
    const float color = polygons.colors ? polygons.colors[i] : 1.0f;
    fillPoly(image, scratch.points.data(), static_cast<int>(scratch.points.size()), color, 12, scratch.edges);
  }
}

/** Draws the baseline-path layer (before its flip): open polylines, shift 13, colour 1. */
inline void drawBaselines(const SceneParams& p, const RasterRanges& ranges, const Matrix3& t, const RingSet& paths,
                          const FloatImage& image, SceneScratch& scratch) {
  for (int i = 0; i < paths.count; i++) {
    ringToFixed(t, paths.coords, paths.ranges[2 * i], paths.ranges[2 * i + 1], ranges.radius, p.pixelSize, 13, scratch.points);
    polyline(image, scratch.points.data(), static_cast<int>(scratch.points.size()), false, 1.0f, p.baselineThickness, 13);
  }
}

/**
 * Computes the fixed-point corners (shift 9; front-left, rear-left, rear-right, front-right) of each
 * tracked object whose centre lies strictly inside the raster, around the rear axle, and calls
 * `onBox(corners)` for each. The CPU draws them; the CUDA path uploads them. Returns false when the
 * rear-axle pose is singular.
 */
template <typename OnBox>
inline bool forEachAgentBox(const SceneParams& p, const RasterRanges& ranges, const AgentSet& agents, OnBox&& onBox) {
  // nuPlan's EgoState.rear_axle is recomputed from the centre: translate back by the same distance.
  double centerX, centerY;
  egoCenter(p, centerX, centerY);
  const double halfLength = (p.vehicleFrontLength + p.vehicleRearLength) / 2.0;
  const double distance = -(halfLength - p.vehicleRearLength);
  const double rearX = centerX + distance * std::cos(p.heading);
  const double rearY = centerY + distance * std::sin(p.heading);

  Matrix3 globalToEgo;
  if (!invertLikeLapack(poseMatrix(rearX, rearY, p.heading), globalToEgo)) return false;
  const double halfPi = M_PI / 2.0;
  const Matrix3 northAligned = multiply(poseMatrix(0.0, 0.0, M_PI / 2), globalToEgo);

  const double width = p.targetWidth;
  const double height = p.targetHeight;
  for (int n = 0; n < agents.count; n++) {
    const double* row = agents.rows + 5 * n;
    const Matrix3 m = multiply(northAligned, poseMatrix(row[0], row[1], row[2]));
    const double x = m.m[0][2];
    const double y = m.m[1][2];
    const double h = std::atan2(m.m[1][0], m.m[0][0]);
    if (!(ranges.xMin < x && x < ranges.xMax) || !(ranges.yMin < y && y < ranges.yMax)) continue;

    const double halfLengthBox = row[3] / 2.0;
    const double halfWidthBox = row[4] / 2.0;
    const double lon[4] = {halfLengthBox, -halfLengthBox, -halfLengthBox, halfLengthBox};
    const double lat[4] = {halfWidthBox, halfWidthBox, -halfWidthBox, -halfWidthBox};
    const double cosLat = std::cos(h + halfPi), sinLat = std::sin(h + halfPi);
    const double cosLon = std::cos(h), sinLon = std::sin(h);
    PointL corners[4];
    for (int k = 0; k < 4; k++) {
      const double cornerX = x + ((lat[k] * cosLat) + (lon[k] * cosLon));
      const double cornerY = y + ((lat[k] * sinLat) + (lon[k] * sinLon));
      const double pixelX = (cornerX - ranges.xMin) / (ranges.xMax - ranges.xMin) * width;
      const double pixelY = (cornerY - ranges.yMin) / (ranges.yMax - ranges.yMin) * height;
      corners[k] = PointL{toInt32(pixelX * 512.0), toInt32(pixelY * 512.0)};
    }
    onBox(corners);
  }
  return true;
}

/** Draws the agents layer (before its flip): boxes around the rear axle, centres strictly inside, shift 9. */
inline bool drawAgents(const SceneParams& p, const RasterRanges& ranges, const AgentSet& agents, const FloatImage& image,
                       SceneScratch& scratch) {
  return forEachAgentBox(p, ranges, agents, [&](const PointL* corners) { fillPoly(image, corners, 4, 1.0f, 9, scratch.edges); });
}

/** Reads the 13 scene parameters in SceneParams order (sceneParams in raster/scene-params.ts writes them). */
inline SceneParams sceneParamsFrom(const double* data) {
  SceneParams p;
  p.targetWidth = static_cast<int>(data[0]);
  p.targetHeight = static_cast<int>(data[1]);
  p.pixelSize = data[2];
  p.egoWidth = data[3];
  p.egoFrontLength = data[4];
  p.egoRearLength = data[5];
  p.longitudinalOffset = data[6];
  p.baselineThickness = static_cast<int>(data[7]);
  p.rearAxleX = data[8];
  p.rearAxleY = data[9];
  p.heading = data[10];
  p.vehicleFrontLength = data[11];
  p.vehicleRearLength = data[12];
  return p;
}

/** Draws the ego layer: a filled rectangle around the raster's centre column, not flipped. */
inline void drawEgo(const SceneParams& p, const FloatImage& image) {
  const int widthPixels = static_cast<int>(p.egoWidth / p.pixelSize);
  const int frontPixels = static_cast<int>(p.egoFrontLength / p.pixelSize);
  const int rearPixels = static_cast<int>(p.egoRearLength / p.pixelSize);
  const int centerX = static_cast<int>(image.cols * 0.5);
  const int centerY = static_cast<int>(image.rows * (0.5 + p.longitudinalOffset));
  // Python's // floors; the widths are never negative once validated.
  filledRectangle(image, centerX - widthPixels / 2, centerY - frontPixels, centerX + widthPixels / 2, centerY + rearPixels, 1.0f);
}

/**
 * Rasterizes one scene into `out`: float32 [targetWidth, targetHeight, 4], channels ego, agents,
 * roadmap, baseline paths. Returns false when a pose matrix is singular (a non-finite heading).
 */
inline bool rasterizeScene(const SceneParams& p, const RingSet& polygons, const RingSet& baselines, const AgentSet& agents,
                           float* out, SceneScratch& scratch, SceneTimings* timings) {
  using Clock = std::chrono::steady_clock;
  auto elapsedUs = [](Clock::time_point from) { return std::chrono::duration<double, std::micro>(Clock::now() - from).count(); };

  const int rows = p.targetWidth;
  const int cols = p.targetHeight;
  const size_t values = static_cast<size_t>(rows) * cols * 4;
  const RasterRanges ranges = computeRanges(p);

  // Each layer draws straight into its channel of the [rows, cols, 4] output; agents, roadmap and
  // baselines are stored upside down, which is nuPlan's np.flip(axis=0).
  auto start = Clock::now();
  std::fill(out, out + values, 0.0f);
  const FloatImage ego{out + 0, rows, cols, 4, false};
  const FloatImage agentsImage{out + 1, rows, cols, 4, true};
  const FloatImage roadmap{out + 2, rows, cols, 4, true};
  const FloatImage baselineImage{out + 3, rows, cols, 4, true};
  if (timings) timings->serialization = elapsedUs(start);

  Matrix3 transform;
  if (!roadmapTransform(p, transform)) return false;

  start = Clock::now();
  drawRoadmap(p, ranges, transform, polygons, roadmap, scratch);
  if (timings) timings->roadmap = elapsedUs(start);

  start = Clock::now();
  if (!drawAgents(p, ranges, agents, agentsImage, scratch)) return false;
  if (timings) timings->agents = elapsedUs(start);

  start = Clock::now();
  drawEgo(p, ego);
  if (timings) timings->ego = elapsedUs(start);

  start = Clock::now();
  drawBaselines(p, ranges, transform, baselines, baselineImage, scratch);
  if (timings) timings->baselines = elapsedUs(start);
  return true;
}

}  // namespace rasterd
