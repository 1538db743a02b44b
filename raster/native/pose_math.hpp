// nuPlan's pose arithmetic, reproduced to the last bit.
//
// Pixels at fixed-point truncation boundaries depend on the last bit of every value before them, so
// this file repeats nuPlan's operations in nuPlan's order: sin, cos and atan2 from the C library
// (numpy pinned to its baseline code calls glibc), 3x3 inverses as reference LAPACK's dgesv computes
// them (numpy.linalg.inv), and 3x3 products as reference BLAS's dgemm sums them (numpy's matmul).
// It must be compiled without floating-point contraction (-ffp-contract=off): a fused multiply-add
// rounds once where numpy rounds twice.
#pragma once

#include <cmath>

namespace rasterd {

/** A row-major 3x3 matrix. */
struct Matrix3 {
  double m[3][3];
};

/** The SE(2) matrix [[cos h, -sin h, x], [sin h, cos h, y], [0, 0, 1]] of a pose ([m], [m], [rad]). */
inline Matrix3 poseMatrix(double x, double y, double heading) {
  const double c = std::cos(heading);
  const double s = std::sin(heading);
  return Matrix3{{{c, -s, x}, {s, c, y}, {0.0, 0.0, 1.0}}};
}

/** Multiplies two 3x3 matrices, summing each entry from k = 0 up, as reference dgemm does. */
inline Matrix3 multiply(const Matrix3& a, const Matrix3& b) {
  Matrix3 c;
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 3; j++) {
      double sum = 0.0;
      for (int k = 0; k < 3; k++) sum = sum + a.m[i][k] * b.m[k][j];
      c.m[i][j] = sum;
    }
  }
  return c;
}

/**
 * Inverts a 3x3 matrix as numpy.linalg.inv does with reference LAPACK 3.11: dgesv(A, I), that is
 * dgetrf2 (recursive LU with partial pivoting; multipliers scaled by the reciprocal of the pivot)
 * followed by dgetrs (row swaps, then unit-lower and upper triangular solves by columns).
 * Returns false when a pivot is exactly zero (a singular matrix; LAPACK's INFO > 0).
 */
inline bool invertLikeLapack(const Matrix3& input, Matrix3& inverse) {
  // Column-major working copy, in LAPACK's layout: a[col][row].
  double a[3][3];
  for (int row = 0; row < 3; row++)
    for (int col = 0; col < 3; col++) a[col][row] = input.m[row][col];
  int pivots[3];

  // dgetrf2 on the 3x3: first column panel (n1 = 1), then the 2x2 trailing block recursively.
  auto pivotColumn = [&](int col, int firstRow) -> bool {
    int best = firstRow;
    double bestAbs = std::fabs(a[col][firstRow]);
    for (int row = firstRow + 1; row < 3; row++) {
      if (std::fabs(a[col][row]) > bestAbs) {
        bestAbs = std::fabs(a[col][row]);
        best = row;
      }
    }
    pivots[firstRow] = best;
    if (a[col][best] == 0.0) return false;
    if (best != firstRow) std::swap(a[col][firstRow], a[col][best]);
    const double smallestNormal = 2.2250738585072014e-308;
    if (std::fabs(a[col][firstRow]) >= smallestNormal) {
      const double reciprocal = 1.0 / a[col][firstRow];
      for (int row = firstRow + 1; row < 3; row++) a[col][row] = a[col][row] * reciprocal;
    } else {
      for (int row = firstRow + 1; row < 3; row++) a[col][row] = a[col][row] / a[col][firstRow];
    }
    return true;
  };
  auto swapRows = [&](int rowA, int rowB, int fromCol, int toCol) {
    if (rowA == rowB) return;
    for (int col = fromCol; col <= toCol; col++) std::swap(a[col][rowA], a[col][rowB]);
  };

  if (!pivotColumn(0, 0)) return false;
  swapRows(0, pivots[0], 1, 2);
  // A22 = A22 - A21 * A12 (dgemm with alpha = -1, beta = 1: C + (-B) * A).
  for (int col = 1; col < 3; col++) {
    const double temp = -a[col][0];
    for (int row = 1; row < 3; row++) a[col][row] = a[col][row] + temp * a[0][row];
  }
  if (!pivotColumn(1, 1)) return false;
  swapRows(1, pivots[1], 2, 2);
  {
    const double temp = -a[2][1];
    a[2][2] = a[2][2] + temp * a[1][2];
  }
  pivots[2] = 2;
  if (a[2][2] == 0.0) return false;
  // The inner level's row swap also applies to the first column's multipliers.
  swapRows(1, pivots[1], 0, 0);

  // dgetrs: B = P * I, then L y = B (unit lower), then U x = y (upper), column by column.
  double b[3][3];
  for (int col = 0; col < 3; col++)
    for (int row = 0; row < 3; row++) b[col][row] = row == col ? 1.0 : 0.0;
  for (int k = 0; k < 3; k++) {
    if (pivots[k] != k)
      for (int col = 0; col < 3; col++) std::swap(b[col][k], b[col][pivots[k]]);
  }
  for (int col = 0; col < 3; col++) {
    for (int k = 0; k < 3; k++) {
      if (b[col][k] != 0.0)
        for (int row = k + 1; row < 3; row++) b[col][row] = b[col][row] - b[col][k] * a[k][row];
    }
    for (int k = 2; k >= 0; k--) {
      if (b[col][k] != 0.0) {
        b[col][k] = b[col][k] / a[k][k];
        for (int row = 0; row < k; row++) b[col][row] = b[col][row] - b[col][k] * a[k][row];
      }
    }
  }

  for (int row = 0; row < 3; row++)
    for (int col = 0; col < 3; col++) inverse.m[row][col] = b[col][row];
  return true;
}

/** Applies T to the point (x, y, 1): each coordinate summed from the first term, as numpy's matmul does. */
inline void transformPoint(const Matrix3& t, double x, double y, double& u, double& v) {
  u = ((0.0 + t.m[0][0] * x) + t.m[0][1] * y) + t.m[0][2] * 1.0;
  v = ((0.0 + t.m[1][0] * x) + t.m[1][1] * y) + t.m[1][2] * 1.0;
}

}  // namespace rasterd
