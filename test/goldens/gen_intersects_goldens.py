#!/usr/bin/python3
"""Write shapely's `intersects` results for polygons and lines against axis-aligned squares.

nuPlan selects map objects with GeoPandas `geometry.intersects(box)` (shapely 1.8, GEOS), so the
map query must agree with it, touching boundaries and holes included. Run with Debian's python3:
    /usr/bin/python3 test/goldens/gen_intersects_goldens.py

Output test/goldens/intersects/shapely.json: a list of cases
  {"kind": "polygon" | "line", "rings": [[[x, y], ...], ...] (polygon: exterior first, then holes),
   "box": [minx, miny, maxx, maxy], "intersects": bool}
"""
import json
import math
import os
import random

from shapely.geometry import LineString, Polygon, box

rng = random.Random(7)
cases = []


def star(cx, cy, r, n):
    return [(cx + r * (0.5 + rng.random()) * math.cos(2 * math.pi * k / n), cy + r * (0.5 + rng.random()) * math.sin(2 * math.pi * k / n)) for k in range(n)]


def add(kind, rings, b):
    geometry = Polygon(rings[0], rings[1:]) if kind == 'polygon' else LineString(rings[0])
    cases.append({'kind': kind, 'rings': [[list(p) for p in ring] for ring in rings], 'box': list(b), 'intersects': bool(geometry.intersects(box(*b)))})


for _ in range(600):
    cx, cy = rng.uniform(660000, 661000), rng.uniform(3990000, 3991000)
    shell = star(cx, cy, rng.uniform(5, 60), rng.randint(3, 12))
    hole = [(cx + 0.2 * (x - cx), cy + 0.2 * (y - cy)) for x, y in shell[::-1]] if rng.random() < 0.3 else None
    rings = [shell + [shell[0]]] + ([hole + [hole[0]]] if hole else [])
    r = rng.choice([0.5, 3.0, 56.0])
    choice = rng.random()
    if choice < 0.25:  # a square touching a vertex exactly
        vx, vy = rng.choice(shell)
        b = (vx, vy, vx + 2 * r, vy + 2 * r) if rng.random() < 0.5 else (vx - 2 * r, vy - 2 * r, vx, vy)
    elif choice < 0.35 and hole:  # a small square inside the hole
        b = (cx - 0.1, cy - 0.1, cx + 0.1, cy + 0.1)
    else:
        qx, qy = cx + rng.uniform(-120, 120), cy + rng.uniform(-120, 120)
        b = (qx - r, qy - r, qx + r, qy + r)
    add('polygon', rings, b)
    line = [(x, y) for x, y in shell[: rng.randint(2, len(shell))]]
    add('line', [line], b)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'intersects', 'shapely.json')
with open(path, 'w') as f:
    json.dump(cases, f, separators=(',', ':'))
print(f'wrote {path}: {len(cases)} cases, {sum(c["intersects"] for c in cases)} intersecting')
