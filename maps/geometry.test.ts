import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { polygonIntersectsRect, rangesIntersectRect, segmentIntersectsRect } from './geometry.js';

interface Case { kind: 'polygon' | 'line'; rings: number[][][]; box: [number, number, number, number]; intersects: boolean }
/** shapely 1.8's results (test/goldens/gen_intersects_goldens.py). */
const cases = JSON.parse(readFileSync(new URL('../test/goldens/intersects/shapely.json', import.meta.url), 'utf8')) as Case[];

function flat(rings: number[][][]): { coords: Float64Array; starts: Uint32Array } {
  const coords: number[] = [];
  const starts = [0];
  for (const ring of rings) {
    for (const [x, y] of ring) coords.push(x, y);
    starts.push(coords.length / 2);
  }
  return { coords: Float64Array.from(coords), starts: Uint32Array.from(starts) };
}

describe('intersects like shapely', () => {
  it('agrees on every golden case', () => {
    const wrong: string[] = [];
    cases.forEach((testCase, i) => {
      const { coords, starts } = flat(testCase.rings);
      const [minX, minY, maxX, maxY] = testCase.box;
      const rect = { minX, minY, maxX, maxY };
      const got = testCase.kind === 'polygon'
        ? polygonIntersectsRect(coords, starts, 0, starts.length - 1, rect)
        : rangesIntersectRect(coords, starts, 0, starts.length - 1, false, rect);
      if (got !== testCase.intersects) wrong.push(`case ${i} (${testCase.kind}): shapely ${testCase.intersects}, got ${got}`);
    });
    console.log(`${cases.length - wrong.length}/${cases.length} intersects cases agree with shapely`);
    expect(wrong).toEqual([]);
  });

  it('counts a touching corner', () => {
    expect(segmentIntersectsRect(-1, -1, 0, 0, { minX: 0, minY: 0, maxX: 1, maxY: 1 })).toBe(true);
  });

  it('rejects a square inside a hole', () => {
    const { coords, starts } = flat([
      [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
      [[4, 4], [4, 6], [6, 6], [6, 4], [4, 4]],
    ]);
    expect(polygonIntersectsRect(coords, starts, 0, 2, { minX: 4.5, minY: 4.5, maxX: 5.5, maxY: 5.5 })).toBe(false);
    expect(polygonIntersectsRect(coords, starts, 0, 2, { minX: 1, minY: 1, maxX: 2, maxY: 2 })).toBe(true);
  });
});
