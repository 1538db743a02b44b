import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../raster/native.js';

/**
 * Checks the addon's fillPoly and polylines against images that real OpenCV 4.6.0 drew.
 * test/goldens/gen_opencv_goldens.py writes the cases and documents the file format.
 */

interface FillPolyStep {
  op: 'fillPoly';
  points: number[];
  color: number;
  shift: number;
}

interface PolylinesStep {
  op: 'polylines';
  points: number[];
  closed: boolean;
  color: number;
  thickness: number;
  shift: number;
}

type DrawStep = FillPolyStep | PolylinesStep;

/** Non-zero pixels as [start, length, value], where start is row * cols + col. */
type PixelRun = [number, number, number];

interface GoldenCase {
  name: string;
  kind: string;
  rows: number;
  cols: number;
  steps: DrawStep[];
  expected: PixelRun[];
}

interface GoldenFile {
  opencv_version: string;
  seed: number;
  cases: GoldenCase[];
}

const GOLDEN_URL = new URL('./goldens/opencv/cases.json', import.meta.url);
const MAX_REPORTED_PIXELS = 8;

const goldens = JSON.parse(readFileSync(GOLDEN_URL, 'utf8')) as GoldenFile;

function isInt32(value: number): boolean {
  return Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31;
}

/** Builds the expected image and throws if the golden case is malformed, so that a bad file is not read as a drawing bug. */
function decodeExpected(goldenCase: GoldenCase): Float32Array {
  const image = new Float32Array(goldenCase.rows * goldenCase.cols);
  for (const [start, length, value] of goldenCase.expected) {
    if (start < 0 || length <= 0 || start + length > image.length) {
      throw new Error(`${goldenCase.name}: run [${start}, ${length}] lies outside the ${goldenCase.rows}x${goldenCase.cols} image`);
    }
    if (Math.fround(value) !== value) {
      throw new Error(`${goldenCase.name}: run value ${value} is not a float32 value`);
    }
    image.fill(value, start, start + length);
  }
  return image;
}

function drawCase(goldenCase: GoldenCase): Float32Array {
  const { rows, cols } = goldenCase;
  const image = new Float32Array(rows * cols);
  for (const step of goldenCase.steps) {
    if (!step.points.every(isInt32)) {
      throw new Error(`${goldenCase.name}: a point does not fit int32`);
    }
    const points = Int32Array.from(step.points);
    if (step.op === 'fillPoly') {
      native.fillPoly(image, rows, cols, points, step.color, step.shift);
    } else {
      native.polylines(image, rows, cols, points, step.closed, step.color, step.thickness, step.shift);
    }
  }
  return image;
}

interface ImageComparison {
  differenceCount: number;
  /** Text naming the case, the first differing pixels and the draw steps, or '' when the images match. */
  message: string;
}

/** Compares the images bit for bit. */
function compareImages(goldenCase: GoldenCase, expected: Float32Array, actual: Float32Array): ImageComparison {
  const expectedBits = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const actualBits = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const differences: string[] = [];
  let differenceCount = 0;
  for (let index = 0; index < expectedBits.length; index++) {
    if (expectedBits[index] === actualBits[index]) {
      continue;
    }
    differenceCount++;
    if (differences.length < MAX_REPORTED_PIXELS) {
      const row = Math.floor(index / goldenCase.cols);
      const col = index % goldenCase.cols;
      differences.push(`(row ${row}, col ${col}, expected ${expected[index]}, got ${actual[index]})`);
    }
  }
  if (differenceCount === 0) {
    return { differenceCount, message: '' };
  }
  const message = [
    `${goldenCase.name}: ${differenceCount} of ${expected.length} pixels differ from OpenCV ${goldens.opencv_version}`,
    `in a ${goldenCase.rows}x${goldenCase.cols} (rows x cols) image. First differing pixels: ${differences.join(', ')}.`,
    `Steps: ${JSON.stringify(goldenCase.steps)}`,
  ].join('\n');
  return { differenceCount, message };
}

const casesByKind = new Map<string, GoldenCase[]>();
for (const goldenCase of goldens.cases) {
  const group = casesByKind.get(goldenCase.kind) ?? [];
  group.push(goldenCase);
  casesByKind.set(goldenCase.kind, group);
}

let checkedCount = 0;
let differingCount = 0;

describe('native drawing against OpenCV goldens', () => {
  afterAll(() => {
    console.log(
      `checked ${checkedCount} of ${goldens.cases.length} OpenCV ${goldens.opencv_version} golden cases bit for bit, ` +
        `${differingCount} differ`,
    );
  });

  it('golden file has cases', () => {
    expect(goldens.opencv_version).toBe('4.6.0');
    expect(goldens.cases.length).toBeGreaterThan(0);
  });

  for (const [kind, cases] of casesByKind) {
    describe(kind, () => {
      for (const goldenCase of cases) {
        it(goldenCase.name, () => {
          const expected = decodeExpected(goldenCase);
          const actual = drawCase(goldenCase);
          const comparison = compareImages(goldenCase, expected, actual);
          checkedCount++;
          if (comparison.differenceCount > 0) {
            differingCount++;
          }
          expect(comparison.differenceCount, comparison.message).toBe(0);
        });
      }
    });
  }
});
