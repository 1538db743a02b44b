#!/usr/bin/python3
"""Write numpy's results for the pose arithmetic nuPlan's raster builder relies on.

Run with Debian's python3 (numpy 1.24 on reference BLAS/LAPACK, as the parity fixtures were made):
    /usr/bin/python3 test/goldens/gen_pose_goldens.py

Output test/goldens/pose/numpy.json:
  {"inverse": [[matrix9, inverse9], ...], "sin": [[x, sin(x)], ...], "cos": [...], "atan2": [[y, x, atan2], ...]}
Every float is written with repr(), which round-trips float64 exactly. numpy is pinned to its
baseline code (no AVX512 sin/cos), so the trig values are glibc's.
"""
import json
import os
import random

os.environ['NPY_DISABLE_CPU_FEATURES'] = 'AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL'
import numpy as np  # noqa: E402

rng = random.Random(20261204)
out = {'inverse': [], 'sin': [], 'cos': [], 'atan2': []}

for _ in range(400):
    heading = rng.uniform(-20.0, 20.0)
    x = rng.uniform(-1e6, 1e6)
    y = rng.uniform(3e6, 5e6)
    m = np.array([[np.cos(heading), -np.sin(heading), x], [np.sin(heading), np.cos(heading), y], [0.0, 0.0, 1.0]])
    out['inverse'].append([[float(v) for v in m.ravel()], [float(v) for v in np.linalg.inv(m).ravel()]])

# Exact multiples of pi/2 and their neighbours exercise the pivot choice (|cos| == |sin| and zeros).
for heading in [0.0, np.pi / 2, np.pi, -np.pi / 2, np.pi / 4, 3 * np.pi / 4, 1e-300, 2 * np.pi]:
    m = np.array([[np.cos(heading), -np.sin(heading), 5.5], [np.sin(heading), np.cos(heading), -7.25], [0.0, 0.0, 1.0]])
    out['inverse'].append([[float(v) for v in m.ravel()], [float(v) for v in np.linalg.inv(m).ravel()]])

for _ in range(3000):
    v = rng.choice([rng.uniform(-7, 7), rng.uniform(-1e3, 1e3), rng.uniform(-1e-3, 1e-3)])
    out['sin'].append([v, float(np.sin(np.float64(v)))])
    out['cos'].append([v, float(np.cos(np.float64(v)))])
    a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
    out['atan2'].append([a, b, float(np.arctan2(np.float64(a), np.float64(b)))])

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pose', 'numpy.json')
with open(path, 'w') as f:
    json.dump(out, f, separators=(',', ':'))
print(f"wrote {path}: {len(out['inverse'])} inverses, {len(out['sin'])} sin/cos/atan2 each")
