// Per-thread drawing logic of the batched rasterizer, shared by the CUDA kernels and their CPU
// emulation.
//
// Every function here is __host__ __device__ under nvcc and plain inline C++ under g++, so that
// the emulation (emulation.hpp) runs the very code the GPU runs. The integer rules are those of
// OpenCV 4.6.0 as raster/native/opencv_draw.hpp reproduces them; what differs is only how the work
// is split:
//
// - A polygon fill (OpenCV's FillEdgeCollection) walks an active-edge list row by row. Its x
//   increments are exact int64 additions, and every active edge is incremented once per row, so an
//   edge's x at row y is x0 + (y - y0) * dx. The list is sorted by x before each row is filled, and
//   the spans pair neighbours of that sorted order. So any row can be filled on its own: gather the
//   x of the edges active at that row, sort, and fill between pairs (fillPolygonRow).
// - Every other primitive (LINE_8 outlines, sub-pixel lines, thick segments, circles, convex
//   polygons) runs sequentially in one thread, exactly as on the CPU.
// - Pixels are drawn into a band of rows of the image (BandCanvas); primitives outside the band
//   return early, and pixels outside it are dropped.
// - Later roadmap polygons overwrite earlier ones: each roadmap pixel keeps the largest draw
//   index that touched it (atomicMax on the GPU), and the colour is looked up at the end.
//
// Compile without floating-point contraction (nvcc --fmad=false, g++ -ffp-contract=off): numpy
// rounds every product and sum separately.
#pragma once

#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define RASTERD_HD __host__ __device__ __forceinline__
#else
#define RASTERD_HD inline
#endif

namespace rasterd {
namespace gpu {

constexpr int kXyShift = 16;
constexpr int64_t kXyOne = int64_t(1) << kXyShift;
constexpr int64_t kXyHalf = kXyOne >> 1;

/** Fractional bits of the fixed-point vertices nuPlan passes to OpenCV, per ring kind. */
constexpr int kRoadmapShift = 12;
constexpr int kAgentShift = 9;
constexpr int kBaselineShift = 13;

/** Active edges a row gathers in registers before it falls back to repeated minimum searches. */
constexpr int kRowEdgeCapacity = 16;

/** Ring kinds, by the source of their vertices and the layer they are drawn into. */
enum RingKind : int32_t {
  kRingRoadmap = 0,   // map polygon ring, transformed on the device, filled into the roadmap layer
  kRingAgent = 1,     // box corners given in fixed point by the host, filled into the agents layer
  kRingBaseline = 2,  // map polyline, transformed on the device, drawn into the baseline layer
};

/** Per-segment flags of an open polyline (OpenCV's ThickLine): bit 1 caps the start, bit 2 the end. */
enum SegmentFlags : uint8_t {
  kNoSegment = 0,
  kLaterSegment = 2,
  kFirstSegment = 3,
};

template <typename T>
RASTERD_HD T minOf(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
RASTERD_HD T maxOf(T a, T b) {
  return a < b ? b : a;
}
template <typename T>
RASTERD_HD void swapValues(T& a, T& b) {
  T t = a;
  a = b;
  b = t;
}

/** A point in OpenCV's 64-bit fixed-point drawing space. */
struct Point64 {
  int64_t x;
  int64_t y;
};

/** Multiplies by 2^bits: OpenCV's left shift of signed values, without undefined behaviour. */
RASTERD_HD int64_t shiftLeft(int64_t value, int bits) { return value * (int64_t(1) << bits); }

/** Narrows like OpenCV's saturate_cast<int>(int64). */
RASTERD_HD int saturateInt(int64_t value) {
  if (value > INT_MAX) return INT_MAX;
  if (value < INT_MIN) return INT_MIN;
  return static_cast<int>(value);
}

/** a + b * c in two's complement, as OpenCV's repeated int64 additions wrap. */
RASTERD_HD int64_t wrappingMultiplyAdd(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b) * static_cast<uint64_t>(c));
}

// ---------------------------------------------------------------------------------------------
// Batch layout: what the host uploads and what the first kernels derive.

/** One scene of a batch. Pointers are device pointers on the GPU and host pointers in the emulation. */
struct SceneDesc {
  double transform[9];   // map [m] to the roadmap's pixel frame, row-major (roadmapTransform)
  double radius;         // [m] half size of the raster square
  double pixelSize;      // [m]
  const double* coords;  // the scene's map vertices: x0, y0, x1, y1, ... [m]
  const uint8_t* ego;    // ego layer, rows x cols, 1 where drawn, or null for a scene that failed
  int32_t rows;          // [px] targetWidth
  int32_t cols;          // [px] targetHeight
  int32_t baselineThickness;  // [px]
  int32_t ringBegin;     // polygon rings (roadmap, then agent boxes): rings [ringBegin, ringEnd)
  int32_t ringEnd;
  int32_t edgeBegin;     // their vertices, which are also their edges: [edgeBegin, edgeEnd)
  int32_t edgeEnd;
  int32_t segmentBegin;  // baseline path vertices: [segmentBegin, segmentEnd)
  int32_t segmentEnd;
  int32_t pad;
};

/** One ring (polygon exterior or polyline) of a batch. */
struct RingDesc {
  uint32_t source;       // first map vertex (roadmap, baseline) or first agent corner (agent)
  uint32_t vertexBegin;  // first vertex in the batch's vertex buffer
  uint32_t vertexCount;
  int32_t scene;
  int32_t kind;          // RingKind
  int32_t shift;         // fractional bits of its fixed-point vertices
  float color;           // value its pixels get
  int32_t pad;
};

/**
 * One polygon edge: its LINE_8 outline and, unless it is horizontal, its scanline-fill record
 * (OpenCV's PolyEdge): rows [y0, y1), x at row y0 and x step per row with kXyShift fractional bits.
 */
struct FillEdge {
  int64_t x;
  int64_t dx;
  int32_t y0;
  int32_t y1;      // equal to y0 for a horizontal edge, which is never active
  int32_t lineX0;  // outline endpoints [px]
  int32_t lineY0;
  int32_t lineX1;
  int32_t lineY1;
  int32_t ring;    // batch index of the polygon
  int32_t pad;
};

/** Row spans of one polygon: rows its fill draws, [fillRowBegin, fillRowEnd), and rows its outline may touch. */
struct PolygonMeta {
  int32_t fillRowBegin;
  int32_t fillRowEnd;
  int32_t lineRowMin;
  int32_t lineRowMax;
};

/** The arrays of one batch, as the kernels see them. */
struct BatchView {
  const SceneDesc* scenes;
  const RingDesc* rings;
  const int32_t* agentCorners;  // x, y pairs with kAgentShift fractional bits
  int32_t* vertices;            // x, y pairs, fixed point with the ring's shift
  uint8_t* segmentFlags;        // SegmentFlags per vertex
  FillEdge* edges;              // per polygon vertex: the edge that ends there
  PolygonMeta* polygonMeta;     // per ring
  int32_t sceneCount;
  int32_t ringCount;
  int32_t vertexCount;
  int32_t pad;
};

// ---------------------------------------------------------------------------------------------
// Drawing target.

/** A band of rows [rowBegin, rowEnd) of one scene's agents, roadmap and baseline layers (before the flip). */
struct BandCanvas {
  int32_t* roadmap;    // rows x stride: 1 + batch ring index of the last roadmap polygon drawn, 0 where none
  uint8_t* agents;     // rows x cols, 1 where drawn
  uint8_t* baselines;  // rows x cols, 1 where drawn
  int rowBegin;
  int rowEnd;
  int rows;            // [px] whole image, for OpenCV's clipping
  int cols;
  int stride;          // elements per row of `roadmap`
};

/** The layer a primitive draws into and, for the roadmap, its draw index (ring + 1). */
struct Pen {
  int32_t kind;  // RingKind
  int32_t value;
};

RASTERD_HD void plotUnchecked(const BandCanvas& canvas, Pen pen, int x, int y) {
  const int row = y - canvas.rowBegin;
  if (pen.kind == kRingRoadmap) {
    int32_t* cell = canvas.roadmap + static_cast<ptrdiff_t>(row) * canvas.stride + x;
#if defined(__CUDA_ARCH__)
    atomicMax(cell, pen.value);
#else
    if (*cell < pen.value) *cell = pen.value;
#endif
  } else if (pen.kind == kRingAgent) {
    canvas.agents[static_cast<ptrdiff_t>(row) * canvas.cols + x] = 1;
  } else {
    canvas.baselines[static_cast<ptrdiff_t>(row) * canvas.cols + x] = 1;
  }
}

/** Writes one pixel like OpenCV's image write, but only inside the band. */
RASTERD_HD void plot(const BandCanvas& canvas, Pen pen, int x, int y) {
  if (y < canvas.rowBegin || y >= canvas.rowEnd || x < 0 || x >= canvas.cols) return;
  plotUnchecked(canvas, pen, x, y);
}

/** Writes columns x1..x2 (inclusive, already clipped to the image) of row y when the row is in the band. */
RASTERD_HD void plotSpan(const BandCanvas& canvas, Pen pen, int y, int x1, int x2) {
  if (y < canvas.rowBegin || y >= canvas.rowEnd) return;
  for (int x = x1; x <= x2; x++) plotUnchecked(canvas, pen, x, y);
}

// ---------------------------------------------------------------------------------------------
// OpenCV 4.6.0 primitives, one thread each.

/**
 * Clips the segment to [0, width-1] x [0, height-1] in place with OpenCV's double-precision
 * intersection arithmetic. Returns false when nothing of it is inside.
 */
RASTERD_HD bool clipLine(int64_t width, int64_t height, Point64& p1, Point64& p2) {
  if (width <= 0 || height <= 0) return false;

  const int64_t right = width - 1;
  const int64_t bottom = height - 1;
  int64_t& x1 = p1.x;
  int64_t& y1 = p1.y;
  int64_t& x2 = p2.x;
  int64_t& y2 = p2.y;
  int c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8;
  int c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8;

  if ((c1 & c2) == 0 && (c1 | c2) != 0) {
    int64_t a;
    if (c1 & 12) {
      a = c1 < 8 ? 0 : bottom;
      x1 += static_cast<int64_t>(static_cast<double>(a - y1) * (x2 - x1) / (y2 - y1));
      y1 = a;
      c1 = (x1 < 0) + (x1 > right) * 2;
    }
    if (c2 & 12) {
      a = c2 < 8 ? 0 : bottom;
      x2 += static_cast<int64_t>(static_cast<double>(a - y2) * (x2 - x1) / (y2 - y1));
      y2 = a;
      c2 = (x2 < 0) + (x2 > right) * 2;
    }
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
      if (c1) {
        a = c1 == 1 ? 0 : right;
        y1 += static_cast<int64_t>(static_cast<double>(a - x1) * (y2 - y1) / (x2 - x1));
        x1 = a;
        c1 = 0;
      }
      if (c2) {
        a = c2 == 1 ? 0 : right;
        y2 += static_cast<int64_t>(static_cast<double>(a - x2) * (y2 - y1) / (x2 - x1));
        x2 = a;
        c2 = 0;
      }
    }
  }

  return (c1 | c2) == 0;
}

/** Draws OpenCV's 8-connected integer line (LineIterator walking left to right) into the band. */
RASTERD_HD void line8(const BandCanvas& canvas, Pen pen, int x1, int y1, int x2, int y2) {
  // Clipping only shortens the segment along itself, so its rows stay within the endpoints' rows.
  if (maxOf(y1, y2) < canvas.rowBegin || minOf(y1, y2) >= canvas.rowEnd) return;

  if (static_cast<unsigned>(x1) >= static_cast<unsigned>(canvas.cols) ||
      static_cast<unsigned>(x2) >= static_cast<unsigned>(canvas.cols) ||
      static_cast<unsigned>(y1) >= static_cast<unsigned>(canvas.rows) ||
      static_cast<unsigned>(y2) >= static_cast<unsigned>(canvas.rows)) {
    Point64 p1{x1, y1};
    Point64 p2{x2, y2};
    if (!clipLine(canvas.cols, canvas.rows, p1, p2)) return;
    x1 = static_cast<int>(p1.x);
    y1 = static_cast<int>(p1.y);
    x2 = static_cast<int>(p2.x);
    y2 = static_cast<int>(p2.y);
  }

  int dx = x2 - x1;
  int dy = y2 - y1;
  const int stepX = 1;
  int stepY = 1;
  if (dx < 0) {
    dx = -dx;
    dy = -dy;
    x1 = x2;
    y1 = y2;
  }
  if (dy < 0) {
    dy = -dy;
    stepY = -1;
  }

  const bool vertical = dy > dx;
  if (vertical) swapValues(dx, dy);

  int err = dx - (dy + dy);
  const int plusDelta = dx + dx;
  const int minusDelta = -(dy + dy);
  const int count = dx + 1;
  int x = x1;
  int y = y1;

  for (int i = 0; i < count; i++) {
    plot(canvas, pen, x, y);
    const bool minorStep = err < 0;
    err += minusDelta + (minorStep ? plusDelta : 0);
    if (vertical) {
      y += stepY;
      if (minorStep) x += stepX;
    } else {
      x += stepX;
      if (minorStep) y += stepY;
    }
    // Rows only move in the direction of stepY, so once past the band nothing more lands in it.
    if (stepY > 0 ? y >= canvas.rowEnd : y < canvas.rowBegin) break;
  }
}

/** Draws OpenCV's sub-pixel LINE_8 line (Line2) between points with kXyShift fractional bits. */
RASTERD_HD void line2(const BandCanvas& canvas, Pen pen, Point64 p1, Point64 p2) {
  // Every pixel's row lies between the endpoints' rounded rows. One row of margin either side is kept.
  const int64_t rowLow = (minOf(p1.y, p2.y) >> kXyShift) - 1;
  const int64_t rowHigh = ((maxOf(p1.y, p2.y) + kXyHalf) >> kXyShift) + 1;
  if (rowHigh < canvas.rowBegin || rowLow >= canvas.rowEnd) return;

  if (!clipLine(shiftLeft(canvas.cols, kXyShift), shiftLeft(canvas.rows, kXyShift), p1, p2)) return;

  int64_t dx = p2.x - p1.x;
  int64_t dy = p2.y - p1.y;
  const int64_t signX = dx < 0 ? -1 : 0;
  const int64_t ax = (dx ^ signX) - signX;
  const int64_t signY = dy < 0 ? -1 : 0;
  const int64_t ay = (dy ^ signY) - signY;
  int64_t stepX;
  int64_t stepY;
  int count;

  if (ax > ay) {
    dy = (dy ^ signX) - signX;
    if (signX) swapValues(p1, p2);
    stepX = kXyOne;
    stepY = dy * kXyOne / (ax | 1);
    count = static_cast<int>((p2.x - p1.x) >> kXyShift);
  } else {
    dx = (dx ^ signY) - signY;
    if (signY) swapValues(p1, p2);
    stepX = dx * kXyOne / (ay | 1);
    stepY = kXyOne;
    count = static_cast<int>((p2.y - p1.y) >> kXyShift);
  }

  p1.x += kXyHalf;
  p1.y += kXyHalf;
  plot(canvas, pen, static_cast<int>((p2.x + kXyHalf) >> kXyShift), static_cast<int>((p2.y + kXyHalf) >> kXyShift));

  if (ax > ay) {
    int64_t x = p1.x >> kXyShift;
    int64_t y = p1.y;
    for (; count >= 0; count--) {
      const int row = static_cast<int>(y >> kXyShift);
      plot(canvas, pen, static_cast<int>(x), row);
      if (stepY >= 0 ? row >= canvas.rowEnd : row < canvas.rowBegin) break;
      x++;
      y += stepY;
    }
  } else {
    int64_t x = p1.x;
    int64_t y = p1.y >> kXyShift;
    for (; count >= 0; count--) {
      plot(canvas, pen, static_cast<int>(x >> kXyShift), static_cast<int>(y));
      if (y >= canvas.rowEnd) break;
      x += stepX;
      y++;
    }
  }
}

/** Fills a circle of integer centre and radius [px] (OpenCV's Circle with a negative thickness). */
RASTERD_HD void filledCircle(const BandCanvas& canvas, Pen pen, int centerX, int centerY, int radius) {
  if (centerY + radius < canvas.rowBegin || centerY - radius >= canvas.rowEnd) return;

  int err = 0;
  int dx = radius;
  int dy = 0;
  int plus = 1;
  int minus = (radius << 1) - 1;

  while (dx >= dy) {
    const int y11 = centerY - dy, y12 = centerY + dy, y21 = centerY - dx, y22 = centerY + dx;
    const int x11 = centerX - dx, x12 = centerX + dx, x21 = centerX - dy, x22 = centerX + dy;

    if (x11 < canvas.cols && x12 >= 0 && y21 < canvas.rows && y22 >= 0) {
      const int spanY[4] = {y11, y12, y21, y22};
      const int spanLeft[4] = {x11, x11, x21, x21};
      const int spanRight[4] = {x12, x12, x22, x22};
      for (int k = 0; k < 4; k++) {
        if (static_cast<unsigned>(spanY[k]) >= static_cast<unsigned>(canvas.rows)) continue;
        if (spanLeft[k] >= canvas.cols || spanRight[k] < 0) continue;
        plotSpan(canvas, pen, spanY[k], maxOf(spanLeft[k], 0), minOf(spanRight[k], canvas.cols - 1));
      }
    }

    dy++;
    err += plus;
    plus += 2;
    const int mask = (err <= 0) - 1;
    err -= minus & mask;
    dx += mask;
    minus -= mask & 2;
  }
}

/** Fills a convex polygon with LINE_8 edges (OpenCV's FillConvexPoly). Callers pass at most 4 vertices. */
RASTERD_HD void fillConvexPoly(const BandCanvas& canvas, Pen pen, const Point64* v, int count, int shift) {
  const int delta = (1 << shift) >> 1;
  const int64_t delta1 = kXyHalf;
  const int64_t delta2 = kXyHalf;
  int imin = 0;
  int64_t xmin = v[0].x, xmax = v[0].x, ymin = v[0].y, ymax = v[0].y;
  Point64 p0{shiftLeft(v[count - 1].x, kXyShift - shift), shiftLeft(v[count - 1].y, kXyShift - shift)};

  for (int i = 0; i < count; i++) {
    Point64 p = v[i];
    if (p.y < ymin) {
      ymin = p.y;
      imin = i;
    }
    ymax = maxOf(ymax, p.y);
    xmax = maxOf(xmax, p.x);
    xmin = minOf(xmin, p.x);

    p.x = shiftLeft(p.x, kXyShift - shift);
    p.y = shiftLeft(p.y, kXyShift - shift);
    if (shift == 0) {
      line8(canvas, pen, static_cast<int>(p0.x >> kXyShift), static_cast<int>(p0.y >> kXyShift),
            static_cast<int>(p.x >> kXyShift), static_cast<int>(p.y >> kXyShift));
    } else {
      line2(canvas, pen, p0, p);
    }
    p0 = p;
  }

  xmin = (xmin + delta) >> shift;
  xmax = (xmax + delta) >> shift;
  ymin = (ymin + delta) >> shift;
  ymax = (ymax + delta) >> shift;
  if (count < 3 || static_cast<int>(xmax) < 0 || static_cast<int>(ymax) < 0 || static_cast<int>(xmin) >= canvas.cols ||
      static_cast<int>(ymin) >= canvas.rows) {
    return;
  }
  ymax = minOf<int64_t>(ymax, canvas.rows - 1);

  struct ConvexEdge {
    int idx, di;
    int64_t x, dx;
    int ye;
  } edge[2];
  int y = static_cast<int>(ymin);
  int edges = count;
  edge[0].idx = edge[1].idx = imin;
  edge[0].ye = edge[1].ye = y;
  edge[0].di = 1;
  edge[1].di = count - 1;
  edge[0].x = edge[1].x = -kXyOne;
  edge[0].dx = edge[1].dx = 0;

  do {
    for (int i = 0; i < 2; i++) {
      if (y < edge[i].ye) continue;
      int idx0 = edge[i].idx;
      const int di = edge[i].di;
      int idx = idx0 + di;
      if (idx >= count) idx -= count;

      for (; edges-- > 0;) {
        const int ty = static_cast<int>((v[idx].y + delta) >> shift);
        if (ty > y) {
          int64_t xs = v[idx0].x;
          int64_t xe = v[idx].x;
          if (shift != kXyShift) {
            xs = shiftLeft(xs, kXyShift - shift);
            xe = shiftLeft(xe, kXyShift - shift);
          }
          edge[i].ye = ty;
          edge[i].dx = ((xe - xs) * 2 + (ty - y)) / (2 * static_cast<int64_t>(ty - y));
          edge[i].x = xs;
          edge[i].idx = idx;
          break;
        }
        idx0 = idx;
        idx += di;
        if (idx >= count) idx -= count;
      }
    }

    if (edges < 0) break;
    // Rows only grow from here, so the rest of the polygon lies below the band.
    if (y >= canvas.rowEnd) break;

    if (y >= 0) {
      int left = 0, right = 1;
      if (edge[0].x > edge[1].x) {
        left = 1;
        right = 0;
      }
      int x1 = static_cast<int>((edge[left].x + delta1) >> kXyShift);
      int x2 = static_cast<int>((edge[right].x + delta2) >> kXyShift);
      if (x2 >= 0 && x1 < canvas.cols) {
        if (x1 < 0) x1 = 0;
        if (x2 >= canvas.cols) x2 = canvas.cols - 1;
        plotSpan(canvas, pen, y, x1, x2);
      }
    }

    edge[0].x += edge[0].dx;
    edge[1].x += edge[1].dx;
  } while (++y <= static_cast<int>(ymax));
}

/**
 * Draws one polyline segment of `thickness` [px] (OpenCV's ThickLine for LINE_8). Above 1 px the
 * segment is a filled quadrilateral; `flags` bit 1 adds a round cap at p0, bit 2 at p1.
 */
RASTERD_HD void thickLine(const BandCanvas& canvas, Pen pen, Point64 p0, Point64 p1, int thickness, int flags, int shift) {
  p0.x = shiftLeft(p0.x, kXyShift - shift);
  p0.y = shiftLeft(p0.y, kXyShift - shift);
  p1.x = shiftLeft(p1.x, kXyShift - shift);
  p1.y = shiftLeft(p1.y, kXyShift - shift);

  if (thickness <= 1) {
    if (shift == 0) {
      line8(canvas, pen, saturateInt((p0.x + kXyHalf) >> kXyShift), saturateInt((p0.y + kXyHalf) >> kXyShift),
            saturateInt((p1.x + kXyHalf) >> kXyShift), saturateInt((p1.y + kXyHalf) >> kXyShift));
    } else {
      line2(canvas, pen, p0, p1);
    }
    return;
  }

  // Everything drawn lies within thickness px of the segment, so segments far from the band are skipped.
  const int64_t margin = shiftLeft(thickness + 2, kXyShift);
  if (((maxOf(p0.y, p1.y) + margin) >> kXyShift) < canvas.rowBegin || ((minOf(p0.y, p1.y) - margin) >> kXyShift) >= canvas.rowEnd) {
    return;
  }

  constexpr double kInverseXyOne = 1.0 / static_cast<double>(kXyOne);
  const double dx = static_cast<double>(p0.x - p1.x) * kInverseXyOne;
  const double dy = static_cast<double>(p1.y - p0.y) * kInverseXyOne;
  double r = dx * dx + dy * dy;
  const int oddThickness = thickness & 1;
  const int scaledThickness = thickness << (kXyShift - 1);

  if ((r < 0 ? -r : r) > 2.220446049250313e-16) {
    r = (scaledThickness + oddThickness * kXyOne * 0.5) / sqrt(r);
    // lrint rounds half to even in the default rounding mode, as rint does on the GPU.
    const int64_t offsetX = static_cast<int>(static_cast<int64_t>(rint(dy * r)));
    const int64_t offsetY = static_cast<int>(static_cast<int64_t>(rint(dx * r)));
    const Point64 quad[4] = {
        {p0.x + offsetX, p0.y + offsetY},
        {p0.x - offsetX, p0.y - offsetY},
        {p1.x - offsetX, p1.y - offsetY},
        {p1.x + offsetX, p1.y + offsetY},
    };
    fillConvexPoly(canvas, pen, quad, 4, kXyShift);
  }

  for (int i = 0; i < 2; i++) {
    if (flags & (i + 1)) {
      const int centerX = static_cast<int>((p0.x + kXyHalf) >> kXyShift);
      const int centerY = static_cast<int>((p0.y + kXyHalf) >> kXyShift);
      filledCircle(canvas, pen, centerX, centerY, (scaledThickness + static_cast<int>(kXyHalf)) >> kXyShift);
    }
    p0 = p1;
  }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: vertices and edges (one thread per batch vertex).

/** Converts like numpy's astype(int64) on x86-64 (out of range and NaN give INT64_MIN), then wraps to int32 as OpenCV does. */
RASTERD_HD int32_t fixedFromDouble(double value) {
  int64_t wide = INT64_MIN;
  if (value > -9223372036854775808.0 && value < 9223372036854775808.0) wide = static_cast<int64_t>(value);
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(wide)));
}

/**
 * Transforms one map vertex (x, y) [m] to fixed-point pixel coordinates with `shift` fractional
 * bits: the operations of transformPoint and ringToFixed in raster/native, in the same order.
 */
RASTERD_HD void mapVertexToFixed(const SceneDesc& scene, double x, double y, int shift, int32_t& fixedX, int32_t& fixedY) {
  const double* t = scene.transform;
  const double u = ((0.0 + t[0] * x) + t[1] * y) + t[2] * 1.0;
  const double v = ((0.0 + t[3] * x) + t[4] * y) + t[5] * 1.0;
  const double scale = static_cast<double>(int64_t(1) << shift);
  const double indexU = (scene.radius + u) / scene.pixelSize;
  const double indexV = (scene.radius + v) / scene.pixelSize;
  fixedX = fixedFromDouble(indexU * scale);
  fixedY = fixedFromDouble(indexV * scale);
}

/** Reads or computes vertex k of a ring in fixed point. */
RASTERD_HD void ringVertex(const BatchView& batch, const RingDesc& ring, uint32_t k, int32_t& x, int32_t& y) {
  const uint32_t source = ring.source + k;
  if (ring.kind == kRingAgent) {
    x = batch.agentCorners[2 * static_cast<size_t>(source)];
    y = batch.agentCorners[2 * static_cast<size_t>(source) + 1];
    return;
  }
  const SceneDesc& scene = batch.scenes[ring.scene];
  mapVertexToFixed(scene, scene.coords[2 * static_cast<size_t>(source)], scene.coords[2 * static_cast<size_t>(source) + 1],
                   ring.shift, x, y);
}

/** Finds the last ring whose first vertex is at or before `vertex`. Rings are in vertex order, and empty rings are skipped over. */
RASTERD_HD int findRing(const RingDesc* rings, int ringCount, int vertex) {
  int low = 0;
  int high = ringCount;  // the result lies in [low, high)
  while (high - low > 1) {
    const int middle = low + (high - low) / 2;
    if (rings[middle].vertexBegin <= static_cast<uint32_t>(vertex)) {
      low = middle;
    } else {
      high = middle;
    }
  }
  return low;
}

/**
 * Builds the edge from prev to cur of a polygon with `shift` fractional bits, as OpenCV's
 * CollectPolyEdges does: y rounded to rows, x scaled to kXyShift bits, dx truncated.
 */
RASTERD_HD FillEdge buildEdge(int32_t prevX, int32_t prevY, int32_t curX, int32_t curY, int shift, int32_t ring) {
  const int64_t delta = (int64_t(1) << shift) >> 1;
  const Point64 pt0{shiftLeft(prevX, kXyShift - shift), (static_cast<int64_t>(prevY) + delta) >> shift};
  const Point64 pt1{shiftLeft(curX, kXyShift - shift), (static_cast<int64_t>(curY) + delta) >> shift};

  FillEdge edge;
  edge.lineX0 = saturateInt((pt0.x + kXyHalf) >> kXyShift);
  edge.lineY0 = saturateInt(pt0.y);
  edge.lineX1 = saturateInt((pt1.x + kXyHalf) >> kXyShift);
  edge.lineY1 = saturateInt(pt1.y);
  edge.ring = ring;
  edge.pad = 0;
  if (pt0.y == pt1.y) {
    edge.y0 = edge.y1 = static_cast<int32_t>(pt0.y);
    edge.x = pt0.x;
    edge.dx = 0;
    return edge;
  }
  if (pt0.y < pt1.y) {
    edge.y0 = static_cast<int32_t>(pt0.y);
    edge.y1 = static_cast<int32_t>(pt1.y);
    edge.x = pt0.x;
  } else {
    edge.y0 = static_cast<int32_t>(pt1.y);
    edge.y1 = static_cast<int32_t>(pt0.y);
    edge.x = pt1.x;
  }
  edge.dx = (pt1.x - pt0.x) / (pt1.y - pt0.y);
  return edge;
}

/** Runs stage 1 for one batch vertex: stores its fixed-point position, and its polygon edge or polyline segment flags. */
RASTERD_HD void processVertex(const BatchView& batch, int vertex) {
  const int ringIndex = findRing(batch.rings, batch.ringCount, vertex);
  const RingDesc& ring = batch.rings[ringIndex];
  const uint32_t k = static_cast<uint32_t>(vertex) - ring.vertexBegin;

  int32_t x, y;
  ringVertex(batch, ring, k, x, y);
  batch.vertices[2 * static_cast<size_t>(vertex)] = x;
  batch.vertices[2 * static_cast<size_t>(vertex) + 1] = y;

  if (ring.kind == kRingBaseline) {
    batch.segmentFlags[vertex] = k == 0 ? kNoSegment : (k == 1 ? kFirstSegment : kLaterSegment);
    return;
  }
  batch.segmentFlags[vertex] = kNoSegment;
  int32_t prevX, prevY;
  ringVertex(batch, ring, k == 0 ? ring.vertexCount - 1 : k - 1, prevX, prevY);
  batch.edges[vertex] = buildEdge(prevX, prevY, x, y, ring.shift, ringIndex);
}

// ---------------------------------------------------------------------------------------------
// Stage 2: polygon row spans (one thread per ring).

/**
 * Runs stage 2 for one ring: stores the rows FillEdgeCollection fills, including its early exit
 * when every edge lies outside the image, and the rows its outline may touch. Polylines get empty spans.
 */
RASTERD_HD void computePolygonMeta(const BatchView& batch, int ringIndex) {
  const RingDesc& ring = batch.rings[ringIndex];
  PolygonMeta meta{0, 0, 0, -1};
  if (ring.kind == kRingBaseline || ring.vertexCount == 0) {
    batch.polygonMeta[ringIndex] = meta;
    return;
  }
  const int rows = batch.scenes[ring.scene].rows;
  const int cols = batch.scenes[ring.scene].cols;

  int total = 0;
  int yMax = INT_MIN, yMin = INT_MAX;
  int64_t xMax = -1, xMin = INT64_MAX;
  int lineMin = INT_MAX, lineMax = INT_MIN;
  for (uint32_t k = 0; k < ring.vertexCount; k++) {
    const FillEdge& edge = batch.edges[ring.vertexBegin + k];
    lineMin = minOf(lineMin, minOf(edge.lineY0, edge.lineY1));
    lineMax = maxOf(lineMax, maxOf(edge.lineY0, edge.lineY1));
    if (edge.y0 == edge.y1) continue;
    total++;
    const int64_t x1 = edge.x + static_cast<int64_t>(edge.y1 - edge.y0) * edge.dx;
    yMin = minOf(yMin, edge.y0);
    yMax = maxOf(yMax, edge.y1);
    xMin = minOf(xMin, minOf(edge.x, x1));
    xMax = maxOf(xMax, maxOf(edge.x, x1));
  }
  meta.lineRowMin = lineMin;
  meta.lineRowMax = lineMax;
  const bool outside = yMax < 0 || yMin >= rows || xMax < 0 || xMin >= shiftLeft(cols, kXyShift);
  if (total >= 2 && !outside) {
    meta.fillRowBegin = maxOf(yMin, 0);
    meta.fillRowEnd = minOf(yMax, rows);
  }
  batch.polygonMeta[ringIndex] = meta;
}

// ---------------------------------------------------------------------------------------------
// Stage 3: drawing into a band (one block per scene and band on the GPU).

RASTERD_HD Pen penOf(const RingDesc& ring, int ringIndex) {
  return Pen{ring.kind, ring.kind == kRingRoadmap ? ringIndex + 1 : 1};
}

/** Draws the LINE_8 outline of one polygon edge (CollectPolyEdges draws every edge, horizontal ones too). */
RASTERD_HD void drawEdgeOutline(const BatchView& batch, const BandCanvas& canvas, int edgeIndex) {
  const FillEdge& edge = batch.edges[edgeIndex];
  if (maxOf(edge.lineY0, edge.lineY1) < canvas.rowBegin || minOf(edge.lineY0, edge.lineY1) >= canvas.rowEnd) return;
  line8(canvas, penOf(batch.rings[edge.ring], edge.ring), edge.lineX0, edge.lineY0, edge.lineX1, edge.lineY1);
}

/** Returns true when the polygon fills any row of the band. */
RASTERD_HD bool fillTouchesBand(const PolygonMeta& meta, const BandCanvas& canvas) {
  return meta.fillRowBegin < meta.fillRowEnd && meta.fillRowBegin < canvas.rowEnd && meta.fillRowEnd > canvas.rowBegin;
}

/** Fills one span of FillEdgeCollection: between crossings xl <= xr (kXyShift bits), pixels ceil(xl)..floor(xr), clipped. */
RASTERD_HD void fillSpan(const BandCanvas& canvas, Pen pen, int y, int64_t xl, int64_t xr) {
  int x1 = static_cast<int>((xl + kXyOne - 1) >> kXyShift);
  int x2 = static_cast<int>(xr >> kXyShift);
  if (x1 < canvas.cols && x2 >= 0) {
    if (x1 < 0) x1 = 0;
    if (x2 >= canvas.cols) x2 = canvas.cols - 1;
    plotSpan(canvas, pen, y, x1, x2);
  }
}

/**
 * Fills row y of a polygon with more than kRowEdgeCapacity active edges: walks the distinct
 * crossing values in increasing order (a minimum search per value) and pairs them by rank.
 */
RASTERD_HD void fillRowBySelection(const BatchView& batch, const BandCanvas& canvas, Pen pen, const RingDesc& ring, int y) {
  bool started = false;
  int64_t previous = 0;
  int64_t pendingLeft = 0;
  int rank = 0;
  for (;;) {
    bool found = false;
    int64_t value = 0;
    int multiplicity = 0;
    for (uint32_t k = 0; k < ring.vertexCount; k++) {
      const FillEdge& edge = batch.edges[ring.vertexBegin + k];
      if (!(edge.y0 <= y && y < edge.y1)) continue;
      const int64_t x = wrappingMultiplyAdd(edge.x, y - edge.y0, edge.dx);
      if (started && x <= previous) continue;
      if (!found || x < value) {
        found = true;
        value = x;
        multiplicity = 1;
      } else if (x == value) {
        multiplicity++;
      }
    }
    if (!found) return;
    for (int m = 0; m < multiplicity; m++, rank++) {
      if ((rank & 1) == 0) {
        pendingLeft = value;
      } else {
        fillSpan(canvas, pen, y, pendingLeft, value);
      }
    }
    started = true;
    previous = value;
  }
}

/**
 * Fills row y of one polygon (FillEdgeCollection restricted to that row): the x of every edge
 * active at y, sorted, paired first with second, third with fourth, and so on. A row never has an
 * odd number of active edges, because a closed ring crosses every row an even number of times.
 */
RASTERD_HD void fillPolygonRow(const BatchView& batch, const BandCanvas& canvas, int ringIndex, int y) {
  const PolygonMeta& meta = batch.polygonMeta[ringIndex];
  if (y < meta.fillRowBegin || y >= meta.fillRowEnd || y < canvas.rowBegin || y >= canvas.rowEnd) return;
  const RingDesc& ring = batch.rings[ringIndex];
  const Pen pen = penOf(ring, ringIndex);

  int64_t crossings[kRowEdgeCapacity];
  int count = 0;
  for (uint32_t k = 0; k < ring.vertexCount; k++) {
    const FillEdge& edge = batch.edges[ring.vertexBegin + k];
    if (!(edge.y0 <= y && y < edge.y1)) continue;
    if (count == kRowEdgeCapacity) {
      fillRowBySelection(batch, canvas, pen, ring, y);
      return;
    }
    // Insertion sort, because rows of map polygons usually have two to four crossings.
    int64_t x = wrappingMultiplyAdd(edge.x, y - edge.y0, edge.dx);
    int position = count++;
    while (position > 0 && crossings[position - 1] > x) {
      crossings[position] = crossings[position - 1];
      position--;
    }
    crossings[position] = x;
  }
  for (int i = 0; i + 1 < count; i += 2) fillSpan(canvas, pen, y, crossings[i], crossings[i + 1]);
}

/** Draws the baseline-path segment that ends at `vertex`, if any (OpenCV's PolyLine of an open path). */
RASTERD_HD void drawBaselineSegment(const BatchView& batch, const BandCanvas& canvas, int vertex, int thickness) {
  const uint8_t flags = batch.segmentFlags[vertex];
  if (flags == kNoSegment) return;
  const Point64 p0{batch.vertices[2 * static_cast<size_t>(vertex) - 2], batch.vertices[2 * static_cast<size_t>(vertex) - 1]};
  const Point64 p1{batch.vertices[2 * static_cast<size_t>(vertex)], batch.vertices[2 * static_cast<size_t>(vertex) + 1]};
  thickLine(canvas, Pen{kRingBaseline, 1}, p0, p1, thickness, flags, kBaselineShift);
}

/**
 * Computes the four output values of pixel (y, x) of the band: ego (not flipped), agents, roadmap
 * and baselines, which nuPlan flips upside down. The caller stores them at output row rows - 1 - y.
 */
RASTERD_HD void bandPixelValues(const BatchView& batch, const SceneDesc& scene, const BandCanvas& canvas, int y, int x, float values[4]) {
  const int row = y - canvas.rowBegin;
  const int outputRow = canvas.rows - 1 - y;
  const int32_t drawn = canvas.roadmap[static_cast<ptrdiff_t>(row) * canvas.stride + x];
  values[0] = scene.ego != nullptr && scene.ego[static_cast<ptrdiff_t>(outputRow) * canvas.cols + x] ? 1.0f : 0.0f;
  values[1] = canvas.agents[static_cast<ptrdiff_t>(row) * canvas.cols + x] ? 1.0f : 0.0f;
  values[2] = drawn > 0 ? batch.rings[drawn - 1].color : 0.0f;
  values[3] = canvas.baselines[static_cast<ptrdiff_t>(row) * canvas.cols + x] ? 1.0f : 0.0f;
}

/** Returns the rows per band that fit one band's canvas in `budgetBytes` of shared memory, at most 32 (one warp lane per row). */
RASTERD_HD int bandRowsFor(int rows, int cols, size_t budgetBytes) {
  const size_t perRow = static_cast<size_t>(cols + 1) * sizeof(int32_t) + 2 * static_cast<size_t>(cols);
  size_t fit = budgetBytes / perRow;
  if (fit < 1) fit = 1;
  int band = fit < 32 ? static_cast<int>(fit) : 32;
  return band < rows ? band : rows;
}

/** Returns the bytes of one band's canvas (roadmap plane with a stride of cols + 1, then the two byte planes), 16-byte aligned. */
RASTERD_HD size_t bandCanvasBytes(int bandRows, int cols) {
  const size_t bytes = static_cast<size_t>(bandRows) * (static_cast<size_t>(cols + 1) * sizeof(int32_t) + 2 * static_cast<size_t>(cols));
  return (bytes + 15) & ~static_cast<size_t>(15);
}

/** Lays a band's canvas over `memory` (bandCanvasBytes of it). */
RASTERD_HD BandCanvas bandCanvasAt(void* memory, int bandRows, int rowBegin, int rows, int cols) {
  BandCanvas canvas;
  canvas.rowBegin = rowBegin;
  canvas.rowEnd = minOf(rowBegin + bandRows, rows);
  canvas.rows = rows;
  canvas.cols = cols;
  canvas.stride = cols + 1;
  canvas.roadmap = static_cast<int32_t*>(memory);
  canvas.agents = reinterpret_cast<uint8_t*>(canvas.roadmap + static_cast<size_t>(bandRows) * canvas.stride);
  canvas.baselines = canvas.agents + static_cast<size_t>(bandRows) * cols;
  return canvas;
}

}  // namespace gpu
}  // namespace rasterd
