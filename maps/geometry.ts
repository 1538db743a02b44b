/**
 * Exact-geometry tests of map features against nuPlan's axis-aligned query square, with shapely's
 * `intersects` semantics: boundaries touching counts, and a square inside a polygon's hole does not
 * intersect it.
 */

/** An axis-aligned rectangle [m]. */
export interface Rect {
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
}

function pointInRect(x: number, y: number, rect: Rect): boolean {
  return x >= rect.minX && x <= rect.maxX && y >= rect.minY && y <= rect.maxY;
}

function side(ax: number, ay: number, bx: number, by: number, px: number, py: number): number {
  const cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
  if (cross > 0) return 1;
  if (cross < 0) return -1;
  return 0;
}

/** Tests whether the closed segment a-b meets the closed rectangle. */
export function segmentIntersectsRect(ax: number, ay: number, bx: number, by: number, rect: Rect): boolean {
  if (pointInRect(ax, ay, rect) || pointInRect(bx, by, rect)) return true;
  if (Math.max(ax, bx) < rect.minX || Math.min(ax, bx) > rect.maxX) return false;
  if (Math.max(ay, by) < rect.minY || Math.min(ay, by) > rect.maxY) return false;

  // The segment's bounding box overlaps the rectangle: it meets it unless all four corners lie strictly on one side of its line.
  const s1 = side(ax, ay, bx, by, rect.minX, rect.minY);
  const s2 = side(ax, ay, bx, by, rect.maxX, rect.minY);
  const s3 = side(ax, ay, bx, by, rect.maxX, rect.maxY);
  const s4 = side(ax, ay, bx, by, rect.minX, rect.maxY);
  return !((s1 > 0 && s2 > 0 && s3 > 0 && s4 > 0) || (s1 < 0 && s2 < 0 && s3 < 0 && s4 < 0));
}

/**
 * Tests whether any vertex range (a line, or a ring when `closed`) of `coords` meets the rectangle.
 * @param coords flat (x, y) vertices [m]
 * @param starts vertex start of each range; range i is starts[i]..starts[i+1]
 */
export function rangesIntersectRect(
  coords: Float64Array, starts: Uint32Array, firstRange: number, endRange: number, closed: boolean, rect: Rect,
): boolean {
  for (let range = firstRange; range < endRange; range++) {
    const start = starts[range];
    const end = starts[range + 1];
    if (end - start === 1 && pointInRect(coords[2 * start], coords[2 * start + 1], rect)) return true;
    for (let k = start; k + 1 < end; k++) {
      if (segmentIntersectsRect(coords[2 * k], coords[2 * k + 1], coords[2 * k + 2], coords[2 * k + 3], rect)) return true;
    }
    if (closed && end - start > 2) {
      const last = end - 1;
      if (segmentIntersectsRect(coords[2 * last], coords[2 * last + 1], coords[2 * start], coords[2 * start + 1], rect)) return true;
    }
  }
  return false;
}

/** Tests whether (x, y) lies inside the rings by the even-odd rule, so that holes exclude it. */
export function pointInRings(coords: Float64Array, starts: Uint32Array, firstRange: number, endRange: number, x: number, y: number): boolean {
  let inside = false;
  for (let range = firstRange; range < endRange; range++) {
    const start = starts[range];
    const end = starts[range + 1];
    for (let k = start, j = end - 1; k < end; j = k++) {
      const xk = coords[2 * k], yk = coords[2 * k + 1];
      const xj = coords[2 * j], yj = coords[2 * j + 1];
      if (yk > y !== yj > y && x < ((xj - xk) * (y - yk)) / (yj - yk) + xk) inside = !inside;
    }
  }
  return inside;
}

/**
 * Tests whether a polygon feature (its exterior and hole rings) intersects the rectangle: an edge meets it,
 * or the rectangle lies inside the polygon's area.
 */
export function polygonIntersectsRect(coords: Float64Array, starts: Uint32Array, firstRing: number, endRing: number, rect: Rect): boolean {
  if (firstRing === endRing) return false;
  if (rangesIntersectRect(coords, starts, firstRing, endRing, true, rect)) return true;
  return pointInRings(coords, starts, firstRing, endRing, rect.minX, rect.minY);
}
