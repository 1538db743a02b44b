// CPU emulation of the CUDA pipeline: the three kernels of cuda_pipeline.cu run here as loops
// over the same per-thread functions (raster_kernels.hpp), band by band, so that the exact GPU
// algorithm can be tested on machines without a GPU.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "batch_prep.hpp"
#include "raster_kernels.hpp"

namespace rasterd {
namespace gpu {

/** Work buffers of the emulation, kept between batches. */
struct EmulationBuffers {
  std::vector<int32_t> vertices;
  std::vector<uint8_t> segmentFlags;
  std::vector<FillEdge> edges;
  std::vector<PolygonMeta> polygonMeta;
  std::vector<uint8_t> canvas;
};

/** Sizes the work buffers for a prepared batch and returns the BatchView over both. */
inline BatchView emulationView(const HostBatch& batch, EmulationBuffers& buffers) {
  buffers.vertices.resize(2 * static_cast<size_t>(batch.vertexCount));
  buffers.segmentFlags.resize(batch.vertexCount);
  buffers.edges.resize(batch.vertexCount);
  buffers.polygonMeta.resize(batch.rings.size());

  BatchView view;
  view.scenes = batch.scenes.data();
  view.rings = batch.rings.data();
  view.agentCorners = batch.agentCorners.data();
  view.vertices = buffers.vertices.data();
  view.segmentFlags = buffers.segmentFlags.data();
  view.edges = buffers.edges.data();
  view.polygonMeta = buffers.polygonMeta.data();
  view.sceneCount = static_cast<int32_t>(batch.scenes.size());
  view.ringCount = static_cast<int32_t>(batch.rings.size());
  view.vertexCount = static_cast<int32_t>(batch.vertexCount);
  view.pad = 0;
  return view;
}

/** Runs the band kernel for one scene and band: what one CUDA block does, with its threads run in turn. */
inline void emulateBand(const BatchView& view, int sceneIndex, int bandRows, int rowBegin, EmulationBuffers& buffers, float* out) {
  const SceneDesc& scene = view.scenes[sceneIndex];
  buffers.canvas.assign(bandCanvasBytes(bandRows, scene.cols), 0);
  const BandCanvas canvas = bandCanvasAt(buffers.canvas.data(), bandRows, rowBegin, scene.rows, scene.cols);

  for (int edge = scene.edgeBegin; edge < scene.edgeEnd; edge++) drawEdgeOutline(view, canvas, edge);
  for (int ring = scene.ringBegin; ring < scene.ringEnd; ring++) {
    if (!fillTouchesBand(view.polygonMeta[ring], canvas)) continue;
    for (int lane = 0; lane < canvas.rowEnd - canvas.rowBegin; lane++) fillPolygonRow(view, canvas, ring, rowBegin + lane);
  }
  for (int vertex = scene.segmentBegin; vertex < scene.segmentEnd; vertex++) {
    drawBaselineSegment(view, canvas, vertex, scene.baselineThickness);
  }

  for (int y = canvas.rowBegin; y < canvas.rowEnd; y++) {
    float* row = out + (static_cast<size_t>(sceneIndex) * scene.rows + (scene.rows - 1 - y)) * scene.cols * 4;
    for (int x = 0; x < scene.cols; x++) bandPixelValues(view, scene, canvas, y, x, row + 4 * x);
  }
}

/** Runs the whole pipeline on the CPU into `out`, float32 [scenes, rows, cols, 4]. */
inline void emulateBatch(const HostBatch& batch, int bandRows, EmulationBuffers& buffers, float* out) {
  const BatchView view = emulationView(batch, buffers);
  for (int vertex = 0; vertex < view.vertexCount; vertex++) processVertex(view, vertex);
  for (int ring = 0; ring < view.ringCount; ring++) computePolygonMeta(view, ring);
  for (int scene = 0; scene < view.sceneCount; scene++) {
    for (int rowBegin = 0; rowBegin < batch.rows; rowBegin += bandRows) emulateBand(view, scene, bandRows, rowBegin, buffers, out);
  }
}

}  // namespace gpu
}  // namespace rasterd
