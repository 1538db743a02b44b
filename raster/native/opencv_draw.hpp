// OpenCV 4.6.0's integer drawing rules for single-channel float32 images.
//
// nuPlan draws its rasters with cv2.fillPoly and cv2.polylines on float32 images, where OpenCV
// replaces LINE_AA by LINE_8, so every pixel is either the colour or untouched. This header
// reimplements the fixed-point arithmetic of OpenCV 4.6.0 (modules/imgproc/src/drawing.cpp:
// CollectPolyEdges, FillEdgeCollection, Line, Line2, ThickLine, FillConvexPoly, Circle, clipLine)
// for that case, so that the same integer vertices give the same pixels. Later OpenCV releases
// changed polygon filling in corner cases; the rules here are 4.6.0's.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

namespace rasterd {

/**
 * A row-major float32 image that the drawing functions write into: one channel of an image with
 * `pixelStride` interleaved channels, optionally stored upside down (row y at rows - 1 - y), so that
 * nuPlan's np.flip and dstack cost nothing.
 */
struct FloatImage {
  float* data;
  int rows;
  int cols;
  int pixelStride = 1;
  bool flipRows = false;

  float* row(int y) const {
    const int stored = flipRows ? rows - 1 - y : y;
    return data + static_cast<size_t>(stored) * cols * pixelStride;
  }
};

/** A point in OpenCV's 64-bit fixed-point drawing space. */
struct PointL {
  int64_t x;
  int64_t y;
};

constexpr int kXyShift = 16;
constexpr int64_t kXyOne = int64_t(1) << kXyShift;
constexpr int64_t kXyHalf = kXyOne >> 1;

/** Multiplies by 2^bits: OpenCV's left shift of signed values, without undefined behaviour. */
inline int64_t shiftLeft(int64_t value, int bits) { return value * (int64_t(1) << bits); }

/** Narrows like OpenCV's saturate_cast<int>(int64). */
inline int saturateInt(int64_t value) {
  if (value > INT_MAX) return INT_MAX;
  if (value < INT_MIN) return INT_MIN;
  return static_cast<int>(value);
}

inline void putPixel(const FloatImage& image, int x, int y, float color) {
  if (0 <= x && x < image.cols && 0 <= y && y < image.rows) image.row(y)[static_cast<size_t>(x) * image.pixelStride] = color;
}

/** Writes `color` to columns x1..x2 (inclusive) of row y; the caller has clipped both to the image. */
inline void horizontalLine(const FloatImage& image, int y, int x1, int x2, float color) {
  float* row = image.row(y);
  if (image.pixelStride == 1) {
    for (int x = x1; x <= x2; x++) row[x] = color;
    return;
  }
  const int stride = image.pixelStride;
  for (int x = x1; x <= x2; x++) row[static_cast<size_t>(x) * stride] = color;
}

/**
 * Clips the segment to [0, width-1] x [0, height-1] in place, with OpenCV 4.6.0's double-precision
 * intersection arithmetic. Returns false when nothing of it is inside.
 */
inline bool clipLine(int64_t width, int64_t height, PointL& p1, PointL& p2) {
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

/** Draws an 8-connected line between integer pixels, walking left to right (OpenCV's LineIterator). */
inline void line8(const FloatImage& image, int x1, int y1, int x2, int y2, float color) {
  if (static_cast<unsigned>(x1) >= static_cast<unsigned>(image.cols) ||
      static_cast<unsigned>(x2) >= static_cast<unsigned>(image.cols) ||
      static_cast<unsigned>(y1) >= static_cast<unsigned>(image.rows) ||
      static_cast<unsigned>(y2) >= static_cast<unsigned>(image.rows)) {
    PointL p1{x1, y1};
    PointL p2{x2, y2};
    if (!clipLine(image.cols, image.rows, p1, p2)) return;
    x1 = static_cast<int>(p1.x);
    y1 = static_cast<int>(p1.y);
    x2 = static_cast<int>(p2.x);
    y2 = static_cast<int>(p2.y);
  }

  int dx = x2 - x1;
  int dy = y2 - y1;
  int stepX = 1;
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
  if (vertical) std::swap(dx, dy);

  int err = dx - (dy + dy);
  const int plusDelta = dx + dx;
  const int minusDelta = -(dy + dy);
  const int count = dx + 1;
  int x = x1;
  int y = y1;

  for (int i = 0; i < count; i++) {
    putPixel(image, x, y, color);
    const bool minorStep = err < 0;
    err += minusDelta + (minorStep ? plusDelta : 0);
    if (vertical) {
      y += stepY;
      if (minorStep) x += stepX;
    } else {
      x += stepX;
      if (minorStep) y += stepY;
    }
  }
}

/** Draws OpenCV's sub-pixel LINE_8 line (Line2) between points with kXyShift fractional bits. */
inline void line2(const FloatImage& image, PointL p1, PointL p2, float color) {
  if (!clipLine(shiftLeft(image.cols, kXyShift), shiftLeft(image.rows, kXyShift), p1, p2)) return;

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
    if (signX) std::swap(p1, p2);
    stepX = kXyOne;
    stepY = dy * kXyOne / (ax | 1);
    count = static_cast<int>((p2.x - p1.x) >> kXyShift);
  } else {
    dx = (dx ^ signY) - signY;
    if (signY) std::swap(p1, p2);
    stepX = dx * kXyOne / (ay | 1);
    stepY = kXyOne;
    count = static_cast<int>((p2.y - p1.y) >> kXyShift);
  }

  p1.x += kXyHalf;
  p1.y += kXyHalf;
  putPixel(image, static_cast<int>((p2.x + kXyHalf) >> kXyShift), static_cast<int>((p2.y + kXyHalf) >> kXyShift), color);

  if (ax > ay) {
    int64_t x = p1.x >> kXyShift;
    int64_t y = p1.y;
    for (; count >= 0; count--) {
      putPixel(image, static_cast<int>(x), static_cast<int>(y >> kXyShift), color);
      x++;
      y += stepY;
    }
  } else {
    int64_t x = p1.x;
    int64_t y = p1.y >> kXyShift;
    for (; count >= 0; count--) {
      putPixel(image, static_cast<int>(x >> kXyShift), static_cast<int>(y), color);
      x += stepX;
      y++;
    }
  }
}

/** Fills a circle of integer centre and radius [px] (OpenCV's Circle with fill). */
inline void filledCircle(const FloatImage& image, int centerX, int centerY, int radius, float color) {
  int err = 0;
  int dx = radius;
  int dy = 0;
  int plus = 1;
  int minus = (radius << 1) - 1;

  auto span = [&](int y, int xLeft, int xRight) {
    if (static_cast<unsigned>(y) >= static_cast<unsigned>(image.rows)) return;
    if (xLeft >= image.cols || xRight < 0) return;
    horizontalLine(image, y, std::max(xLeft, 0), std::min(xRight, image.cols - 1), color);
  };

  while (dx >= dy) {
    const int y11 = centerY - dy, y12 = centerY + dy, y21 = centerY - dx, y22 = centerY + dx;
    const int x11 = centerX - dx, x12 = centerX + dx, x21 = centerX - dy, x22 = centerX + dy;

    if (x11 < image.cols && x12 >= 0 && y21 < image.rows && y22 >= 0) {
      span(y11, x11, x12);
      span(y12, x11, x12);
      span(y21, x21, x22);
      span(y22, x21, x22);
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

/** Fills a convex polygon with LINE_8 edges (OpenCV's FillConvexPoly). */
inline void fillConvexPoly(const FloatImage& image, const PointL* v, int count, float color, int shift) {
  const int delta = (1 << shift) >> 1;
  const int64_t delta1 = kXyHalf;
  const int64_t delta2 = kXyHalf;
  int imin = 0;
  int64_t xmin = v[0].x, xmax = v[0].x, ymin = v[0].y, ymax = v[0].y;
  PointL p0{shiftLeft(v[count - 1].x, kXyShift - shift), shiftLeft(v[count - 1].y, kXyShift - shift)};

  for (int i = 0; i < count; i++) {
    PointL p = v[i];
    if (p.y < ymin) {
      ymin = p.y;
      imin = i;
    }
    ymax = std::max(ymax, p.y);
    xmax = std::max(xmax, p.x);
    xmin = std::min(xmin, p.x);

    p.x = shiftLeft(p.x, kXyShift - shift);
    p.y = shiftLeft(p.y, kXyShift - shift);
    if (shift == 0) {
      line8(image, static_cast<int>(p0.x >> kXyShift), static_cast<int>(p0.y >> kXyShift),
            static_cast<int>(p.x >> kXyShift), static_cast<int>(p.y >> kXyShift), color);
    } else {
      line2(image, p0, p, color);
    }
    p0 = p;
  }

  xmin = (xmin + delta) >> shift;
  xmax = (xmax + delta) >> shift;
  ymin = (ymin + delta) >> shift;
  ymax = (ymax + delta) >> shift;
  if (count < 3 || static_cast<int>(xmax) < 0 || static_cast<int>(ymax) < 0 || static_cast<int>(xmin) >= image.cols ||
      static_cast<int>(ymin) >= image.rows) {
    return;
  }
  ymax = std::min<int64_t>(ymax, image.rows - 1);

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

    if (y >= 0) {
      int left = 0, right = 1;
      if (edge[0].x > edge[1].x) {
        left = 1;
        right = 0;
      }
      int x1 = static_cast<int>((edge[left].x + delta1) >> kXyShift);
      int x2 = static_cast<int>((edge[right].x + delta2) >> kXyShift);
      if (x2 >= 0 && x1 < image.cols) {
        if (x1 < 0) x1 = 0;
        if (x2 >= image.cols) x2 = image.cols - 1;
        horizontalLine(image, y, x1, x2, color);
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
inline void thickLine(const FloatImage& image, PointL p0, PointL p1, float color, int thickness, int flags, int shift) {
  p0.x = shiftLeft(p0.x, kXyShift - shift);
  p0.y = shiftLeft(p0.y, kXyShift - shift);
  p1.x = shiftLeft(p1.x, kXyShift - shift);
  p1.y = shiftLeft(p1.y, kXyShift - shift);

  if (thickness <= 1) {
    if (shift == 0) {
      line8(image, saturateInt((p0.x + kXyHalf) >> kXyShift), saturateInt((p0.y + kXyHalf) >> kXyShift),
            saturateInt((p1.x + kXyHalf) >> kXyShift), saturateInt((p1.y + kXyHalf) >> kXyShift), color);
    } else {
      line2(image, p0, p1, color);
    }
    return;
  }

  constexpr double kInverseXyOne = 1.0 / static_cast<double>(kXyOne);
  const double dx = static_cast<double>(p0.x - p1.x) * kInverseXyOne;
  const double dy = static_cast<double>(p1.y - p0.y) * kInverseXyOne;
  double r = dx * dx + dy * dy;
  const int oddThickness = thickness & 1;
  const int scaledThickness = thickness << (kXyShift - 1);

  if (std::fabs(r) > 2.220446049250313e-16) {
    r = (scaledThickness + oddThickness * kXyOne * 0.5) / std::sqrt(r);
    const int64_t offsetX = static_cast<int>(std::lrint(dy * r));
    const int64_t offsetY = static_cast<int>(std::lrint(dx * r));
    const PointL quad[4] = {
        {p0.x + offsetX, p0.y + offsetY},
        {p0.x - offsetX, p0.y - offsetY},
        {p1.x - offsetX, p1.y - offsetY},
        {p1.x + offsetX, p1.y + offsetY},
    };
    fillConvexPoly(image, quad, 4, color, kXyShift);
  }

  for (int i = 0; i < 2; i++) {
    if (flags & (i + 1)) {
      const int centerX = static_cast<int>((p0.x + kXyHalf) >> kXyShift);
      const int centerY = static_cast<int>((p0.y + kXyHalf) >> kXyShift);
      filledCircle(image, centerX, centerY, (scaledThickness + static_cast<int>(kXyHalf)) >> kXyShift, color);
    }
    p0 = p1;
  }
}

/** Draws a polyline like cv2.polylines(..., lineType=LINE_AA) on a float32 image (LINE_8 there). */
inline void polyline(const FloatImage& image, const PointL* v, int count, bool closed, float color, int thickness, int shift) {
  if (v == nullptr || count <= 0) return;

  int flags = 2 + !closed;
  PointL p0 = v[closed ? count - 1 : 0];
  for (int i = closed ? 0 : 1; i < count; i++) {
    thickLine(image, p0, v[i], color, thickness, flags, shift);
    p0 = v[i];
    flags = 2;
  }
}

/** One polygon edge in the scanline fill: rows y0..y1-1, x at row y0 and its step per row (kXyShift bits). */
struct PolyEdge {
  int y0 = 0;
  int y1 = 0;
  int64_t x = 0;
  int64_t dx = 0;
  PolyEdge* next = nullptr;
};

/** Draws the polygon's edges as LINE_8 lines and appends its non-horizontal edges (OpenCV's CollectPolyEdges). */
inline void collectPolyEdges(const FloatImage& image, const PointL* v, int count, std::vector<PolyEdge>& edges, float color,
                             int shift) {
  const int64_t delta = (int64_t(1) << shift) >> 1;
  PointL pt0{shiftLeft(v[count - 1].x, kXyShift - shift), (v[count - 1].y + delta) >> shift};

  for (int i = 0; i < count; i++) {
    const PointL pt1{shiftLeft(v[i].x, kXyShift - shift), (v[i].y + delta) >> shift};

    line8(image, saturateInt((pt0.x + kXyHalf) >> kXyShift), saturateInt(pt0.y), saturateInt((pt1.x + kXyHalf) >> kXyShift),
          saturateInt(pt1.y), color);

    if (pt0.y != pt1.y) {
      PolyEdge edge;
      if (pt0.y < pt1.y) {
        edge.y0 = static_cast<int>(pt0.y);
        edge.y1 = static_cast<int>(pt1.y);
        edge.x = pt0.x;
      } else {
        edge.y0 = static_cast<int>(pt1.y);
        edge.y1 = static_cast<int>(pt0.y);
        edge.x = pt1.x;
      }
      edge.dx = (pt1.x - pt0.x) / (pt1.y - pt0.y);
      edges.push_back(edge);
    }
    pt0 = pt1;
  }
}

/** Fills between edge crossings scanline by scanline (OpenCV's FillEdgeCollection, even-odd rule). */
inline void fillEdgeCollection(const FloatImage& image, std::vector<PolyEdge>& edges, float color) {
  if (edges.size() < 2) return;

  int yMax = INT_MIN, yMin = INT_MAX;
  int64_t xMax = -1, xMin = INT64_MAX;
  for (const PolyEdge& edge : edges) {
    const int64_t x1 = edge.x + (edge.y1 - edge.y0) * edge.dx;
    yMin = std::min(yMin, edge.y0);
    yMax = std::max(yMax, edge.y1);
    xMin = std::min(xMin, edge.x);
    xMax = std::max(xMax, edge.x);
    xMin = std::min(xMin, x1);
    xMax = std::max(xMax, x1);
  }
  if (yMax < 0 || yMin >= image.rows || xMax < 0 || xMin >= shiftLeft(image.cols, kXyShift)) return;

  // OpenCV walks the rows above the image too, drawing nothing but stepping each edge's x by dx.
  // Integer steps make that walk exact to skip: an edge's x at row 0 is x + (0 - y0) * dx, and the
  // active list there is the same set in the same x order.
  if (yMin < 0) {
    size_t kept = 0;
    for (size_t k = 0; k < edges.size(); k++) {
      PolyEdge edge = edges[k];
      if (edge.y1 <= 0) continue;
      if (edge.y0 < 0) {
        edge.x += static_cast<int64_t>(-edge.y0) * edge.dx;
        edge.y0 = 0;
      }
      edges[kept++] = edge;
    }
    edges.resize(kept);
    if (edges.empty()) return;
  }

  std::sort(edges.begin(), edges.end(), [](const PolyEdge& a, const PolyEdge& b) {
    if (a.y0 != b.y0) return a.y0 < b.y0;
    if (a.x != b.x) return a.x < b.x;
    return a.dx < b.dx;
  });

  const int total = static_cast<int>(edges.size());
  PolyEdge sentinel;
  sentinel.y0 = INT_MAX;
  edges.push_back(sentinel);
  PolyEdge head;
  head.next = nullptr;
  int i = 0;
  PolyEdge* e = &edges[0];
  yMax = std::min(yMax, image.rows);

  for (int y = e->y0; y < yMax; y++) {
    PolyEdge* prelast = &head;
    PolyEdge* last = head.next;
    PolyEdge* keepPrelast;
    int draw = 0;
    const bool clipped = y < 0;

    while (last || e->y0 == y) {
      if (last && last->y1 == y) {
        prelast->next = last->next;
        last = last->next;
        continue;
      }
      keepPrelast = prelast;
      if (last && (e->y0 > y || last->x < e->x)) {
        prelast = last;
        last = last->next;
      } else if (i < total) {
        prelast->next = e;
        e->next = last;
        prelast = e;
        e = &edges[++i];
      } else {
        break;
      }

      if (draw) {
        if (!clipped) {
          int x1, x2;
          if (keepPrelast->x > prelast->x) {
            x1 = static_cast<int>((prelast->x + kXyOne - 1) >> kXyShift);
            x2 = static_cast<int>(keepPrelast->x >> kXyShift);
          } else {
            x1 = static_cast<int>((keepPrelast->x + kXyOne - 1) >> kXyShift);
            x2 = static_cast<int>(prelast->x >> kXyShift);
          }
          if (x1 < image.cols && x2 >= 0) {
            if (x1 < 0) x1 = 0;
            if (x2 >= image.cols) x2 = image.cols - 1;
            horizontalLine(image, y, x1, x2, color);
          }
        }
        keepPrelast->x += keepPrelast->dx;
        prelast->x += prelast->dx;
      }
      draw ^= 1;
    }

    // Bubble sort of the active list by x, as OpenCV does it.
    keepPrelast = nullptr;
    do {
      prelast = &head;
      last = head.next;
      PolyEdge* lastExchange = nullptr;
      while (last != keepPrelast && last->next != nullptr) {
        PolyEdge* te = last->next;
        if (last->x > te->x) {
          prelast->next = te;
          last->next = te->next;
          te->next = last;
          prelast = te;
          lastExchange = prelast;
        } else {
          prelast = last;
          last = te;
        }
      }
      if (lastExchange == nullptr) break;
      keepPrelast = lastExchange;
    } while (keepPrelast != head.next && keepPrelast != &head);
  }
}

/**
 * Fills one polygon like cv2.fillPoly(img, [v], color, lineType=LINE_AA, shift) on a float32 image.
 * `scratch` is reused between calls so that the hot loop does not allocate.
 */
inline void fillPoly(const FloatImage& image, const PointL* v, int count, float color, int shift, std::vector<PolyEdge>& scratch) {
  if (count <= 0) return;

  // A polygon whose rounded vertices all lie on one side of the image draws nothing: its edge lines
  // round to those pixels and its spans lie between them. Skipping it changes no pixel.
  const int64_t delta = (int64_t(1) << shift) >> 1;
  int64_t minX = INT64_MAX, maxX = INT64_MIN, minY = INT64_MAX, maxY = INT64_MIN;
  for (int i = 0; i < count; i++) {
    const int64_t x = (shiftLeft(v[i].x, kXyShift - shift) + kXyHalf) >> kXyShift;
    const int64_t y = (v[i].y + delta) >> shift;
    minX = std::min(minX, x);
    maxX = std::max(maxX, x);
    minY = std::min(minY, y);
    maxY = std::max(maxY, y);
  }
  if (maxX < 0 || maxY < 0 || minX >= image.cols || minY >= image.rows) return;

  scratch.clear();
  collectPolyEdges(image, v, count, scratch, color, shift);
  fillEdgeCollection(image, scratch, color);
}

/** Fills the axis-aligned rectangle between two corners, both included (cv2.rectangle with thickness -1). */
inline void filledRectangle(const FloatImage& image, int x1, int y1, int x2, int y2, float color) {
  const PointL corners[4] = {{x1, y1}, {x2, y1}, {x2, y2}, {x1, y2}};
  fillConvexPoly(image, corners, 4, color, 0);
}

}  // namespace rasterd
