import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { native } from './native.js';

/** numpy's own results (test/goldens/gen_pose_goldens.py, Debian numpy 1.24 on reference LAPACK). */
const golden = JSON.parse(readFileSync(new URL('../test/goldens/pose/numpy.json', import.meta.url), 'utf8')) as {
  inverse: Array<[number[], number[]]>;
  sin: Array<[number, number]>;
  cos: Array<[number, number]>;
  atan2: Array<[number, number, number]>;
};

function bits(value: number): bigint {
  return new BigUint64Array(new Float64Array([value]).buffer)[0];
}

describe('pose arithmetic against numpy', () => {
  it('invert3 equals numpy.linalg.inv bit for bit', () => {
    const mismatches: string[] = [];
    golden.inverse.forEach(([matrix, expected], i) => {
      const inverse = native.invert3(Float64Array.from(matrix));
      expect(inverse).not.toBeNull();
      expected.forEach((value, k) => {
        if (bits(value) !== bits(inverse![k])) mismatches.push(`case ${i} entry ${k}: numpy ${value}, addon ${inverse![k]}`);
      });
    });
    expect(mismatches).toEqual([]);
  });

  it('an analytic SE(2) inverse differs from numpy', () => {
    // Shows why invert3 repeats LAPACK's steps: the textbook inverse disagrees in the last bits.
    let differing = 0;
    for (const [matrix, expected] of golden.inverse) {
      const [c, , x, s, , y] = matrix;
      const analyticX = -(c * x + s * y);
      if (bits(analyticX) !== bits(expected[2])) differing++;
    }
    expect(differing).toBeGreaterThan(golden.inverse.length / 4);
  });

  it('libm sin, cos and atan2 equal numpy baseline', () => {
    const mismatches: string[] = [];
    for (const [x, value] of golden.sin) if (bits(native.libm('sin', x)) !== bits(value)) mismatches.push(`sin(${x})`);
    for (const [x, value] of golden.cos) if (bits(native.libm('cos', x)) !== bits(value)) mismatches.push(`cos(${x})`);
    for (const [y, x, value] of golden.atan2) if (bits(native.libm('atan2', y, x)) !== bits(value)) mismatches.push(`atan2(${y}, ${x})`);
    expect(mismatches).toEqual([]);
  });

  it('V8 Math.cos differs from glibc for some inputs', () => {
    const differing = golden.cos.filter(([x, value]) => bits(Math.cos(x)) !== bits(value)).length;
    console.log(`V8 Math.cos differs from glibc cos in ${differing} of ${golden.cos.length} golden inputs`);
    expect(differing).toBeGreaterThan(0);
  });
});
