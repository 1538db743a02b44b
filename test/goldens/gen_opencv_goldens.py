#!/usr/bin/python3
"""Generate golden images from OpenCV 4.6.0 for the fillPoly and polylines of the C++ addon.

Run it with Debian's python3, which has cv2 4.6.0 and numpy from apt:

    /usr/bin/python3 test/goldens/gen_opencv_goldens.py

The output is deterministic because every case kind draws from its own random.Random with a fixed
seed. test/opencv-goldens.test.ts draws each case with the addon and compares every pixel bit for bit.

Output: test/goldens/opencv/cases.json, one JSON object with one case per line:

    {"opencv_version": "4.6.0", "seed": 20240607, "cases": [case, ...]}

Fields of a case:
    name      unique id, such as "concave/star/s12/3"
    kind      case group: convex, concave, sliver, far, degenerate, polyline or multi
    rows      image height [px]
    cols      image width [px]
    steps     draw calls applied in order to one float32 image that starts as all zeros:
              {"op": "fillPoly", "points": [x0, y0, x1, y1, ...], "color": c, "shift": s}
              {"op": "polylines", "points": [...], "closed": b, "color": c, "thickness": t, "shift": s}
              points are int32 fixed-point vertices with s fractional bits, drawn with
              lineType=cv2.LINE_AA (OpenCV draws LINE_8 instead on float32 images).
    expected  the image that OpenCV returned, as runs of equal non-zero pixels in row-major order:
              [start, length, value], where start is row * cols + col. Each value is a float32
              written as the double of the same value, so it round-trips exactly. Pixels outside
              every run are 0.0.
"""

import json
import math
import os
import random
import sys

import cv2
import numpy as np

SEED = 20240607
SHIFTS = (9, 12, 13)
# Rows x cols. Most cases use the first size, the others catch swapped rows and cols.
IMAGE_SIZES = ((64, 48), (48, 64), (64, 48), (31, 57), (20, 20))
COLORS = (1.0, 0.5, 0.25, 0.7)
INT32_MAX = 2**31 - 1
OUTPUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "opencv", "cases.json")


def to_fixed(coordinates, shift):
    """Convert pixel coordinates [(x, y), ...] to a flat list of fixed-point ints with `shift` fractional bits."""
    scale = 1 << shift
    flat = []
    for x, y in coordinates:
        flat.append(int(round(x * scale)))
        flat.append(int(round(y * scale)))
    for value in flat:
        if abs(value) > INT32_MAX:
            raise ValueError(f"fixed-point coordinate {value} does not fit int32")
    return flat


def fill_step(coordinates, shift, color=1.0):
    return {"op": "fillPoly", "points": to_fixed(coordinates, shift), "color": color, "shift": shift}


def polyline_step(coordinates, shift, closed, thickness, color=1.0):
    return {
        "op": "polylines",
        "points": to_fixed(coordinates, shift),
        "closed": closed,
        "color": color,
        "thickness": thickness,
        "shift": shift,
    }


def draw_steps(rows, cols, steps):
    """Draw the steps with cv2 onto a zero float32 image and return the image."""
    image = np.zeros((rows, cols), np.float32)
    for step in steps:
        points = np.array(step["points"], np.int32).reshape(-1, 2)
        if step["op"] == "fillPoly":
            cv2.fillPoly(image, [points], step["color"], lineType=cv2.LINE_AA, shift=step["shift"])
        else:
            cv2.polylines(
                image, [points], step["closed"], step["color"], step["thickness"],
                lineType=cv2.LINE_AA, shift=step["shift"],
            )
    return image


def encode_runs(image):
    """Encode the non-zero pixels of a float32 image as [start, length, value] runs in row-major order."""
    flat = image.reshape(-1)
    runs = []
    index = 0
    while index < flat.size:
        value = flat[index]
        if value == 0:
            index += 1
            continue
        start = index
        while index < flat.size and flat[index] == value:
            index += 1
        runs.append([start, index - start, float(value)])
    return runs


def decode_runs(rows, cols, runs):
    flat = np.zeros(rows * cols, np.float32)
    for start, length, value in runs:
        flat[start:start + length] = value
    return flat.reshape(rows, cols)


def make_case(name, kind, rows, cols, steps):
    image = draw_steps(rows, cols, steps)
    allowed = {0.0} | {float(np.float32(step["color"])) for step in steps}
    unexpected = {float(value) for value in np.unique(image)} - allowed
    if unexpected:
        raise AssertionError(f"{name}: OpenCV wrote values {sorted(unexpected)} that no step's color explains")
    runs = encode_runs(image)
    if decode_runs(rows, cols, runs).tobytes() != image.tobytes():
        raise AssertionError(f"{name}: the run-length encoding does not round-trip")
    return {"name": name, "kind": kind, "rows": rows, "cols": cols, "steps": steps, "expected": runs}


def shift_plan(full_count, shift0_count):
    """Yield (shift, index) pairs: full_count cases at each of SHIFTS, then shift0_count cases at shift 0."""
    for shift in SHIFTS:
        for index in range(full_count):
            yield shift, index
    for index in range(shift0_count):
        yield 0, index


def pick_size(rng):
    return rng.choice(IMAGE_SIZES)


def random_point(rng, rows, cols, margin=0.0):
    return (rng.uniform(-margin, cols - 1 + margin), rng.uniform(-margin, rows - 1 + margin))


# Polygon makers. Each returns pixel coordinates [(x, y), ...] as floats.


def convex_polygon(rng, rows, cols):
    """Sample vertices on an ellipse at sorted random angles, which gives a convex polygon before rounding."""
    center_x = rng.uniform(0, cols - 1)
    center_y = rng.uniform(0, rows - 1)
    radius_x = rng.uniform(1.5, cols * 0.6)
    radius_y = rng.uniform(1.5, rows * 0.6)
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(rng.randint(3, 9)))
    return [(center_x + radius_x * math.cos(a), center_y + radius_y * math.sin(a)) for a in angles]


def star_polygon(rng, rows, cols):
    center_x = rng.uniform(cols * 0.25, cols * 0.75)
    center_y = rng.uniform(rows * 0.25, rows * 0.75)
    outer = rng.uniform(8, min(rows, cols) * 0.7)
    inner = outer * rng.uniform(0.15, 0.6)
    tips = rng.randint(4, 9)
    phase = rng.uniform(0, 2 * math.pi)
    coordinates = []
    for index in range(2 * tips):
        radius = outer if index % 2 == 0 else inner
        angle = phase + math.pi * index / tips
        coordinates.append((center_x + radius * math.cos(angle), center_y + radius * math.sin(angle)))
    return coordinates


def zigzag_polygon(rng, rows, cols):
    """Build a comb whose top edge zig-zags between two heights and whose bottom edge is straight."""
    teeth = rng.randint(3, 8)
    left = rng.uniform(-3, cols * 0.3)
    right = rng.uniform(cols * 0.7, cols + 3)
    low = rng.uniform(rows * 0.5, rows + 2)
    high_a = rng.uniform(-2, rows * 0.4)
    high_b = rng.uniform(high_a + 0.3, low - 0.5)
    coordinates = [(left, low)]
    for index in range(2 * teeth + 1):
        x = left + (right - left) * index / (2 * teeth)
        coordinates.append((x, high_a if index % 2 == 0 else high_b))
    coordinates.append((right, low))
    if rng.random() < 0.5:
        coordinates = [(y * cols / rows, x * rows / cols) for x, y in coordinates]  # comb along the other axis
    return coordinates


def self_intersecting_polygon(rng, rows, cols, variant):
    if variant == 0:
        # Bow tie: two triangles that meet where the diagonals cross.
        x0, y0 = random_point(rng, rows, cols, 2)
        x1, y1 = random_point(rng, rows, cols, 2)
        return [(x0, y0), (x1, y1), (x0, y1), (x1, y0)]
    if variant == 1:
        # Pentagram or heptagram drawn as one closed path, so the center is covered by crossing edges.
        tips = rng.choice((5, 7))
        step = 2 if tips == 5 else 3
        center_x, center_y = random_point(rng, rows, cols)
        radius = rng.uniform(6, max(rows, cols) * 0.6)
        phase = rng.uniform(0, 2 * math.pi)
        return [
            (center_x + radius * math.cos(phase + 2 * math.pi * (index * step % tips) / tips),
             center_y + radius * math.sin(phase + 2 * math.pi * (index * step % tips) / tips))
            for index in range(tips)
        ]
    # Random vertices in random order.
    return [random_point(rng, rows, cols, 6) for _ in range(rng.randint(4, 10))]


def sliver_triangle(rng, rows, cols):
    """Triangle whose apex sits less than one pixel from the opposite edge."""
    x0, y0 = random_point(rng, rows, cols, 2)
    x1, y1 = random_point(rng, rows, cols, 2)
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    offset = rng.uniform(0.002, 0.9)
    t = rng.uniform(0.05, 0.95)
    return [
        (x0, y0),
        (x1, y1),
        (x0 + t * (x1 - x0) - offset * (y1 - y0) / length, y0 + t * (y1 - y0) + offset * (x1 - x0) / length),
    ]


def horizontal_sliver(rng, rows, cols):
    """Quadrilateral less than one pixel tall. Some start exactly on a half-pixel row boundary."""
    if rng.random() < 0.3:
        y0 = rng.randint(0, rows - 1) + 0.5
    else:
        y0 = rng.uniform(-0.5, rows - 0.5)
    height = rng.uniform(0.001, 0.95)
    x0 = rng.uniform(-3, cols * 0.5)
    x1 = rng.uniform(x0 + 0.2, cols + 3)
    skew = rng.uniform(-0.4, 0.4)
    return [(x0, y0), (x1, y0 + skew * height), (x1, y0 + (1 + skew) * height), (x0, y0 + height)]


def vertical_sliver(rng, rows, cols):
    return [(y, x) for x, y in horizontal_sliver(rng, cols, rows)]


def far_value(rng, size):
    """Return a coordinate hundreds to tens of thousands of pixels before or after the image."""
    distance = 10 ** rng.uniform(2, math.log10(50000))
    return -distance if rng.random() < 0.5 else size + distance


def far_polygon(rng, rows, cols, variant):
    if variant == 0:
        # Triangle with two vertices inside and one far away.
        return [random_point(rng, rows, cols), random_point(rng, rows, cols), (far_value(rng, cols), far_value(rng, rows))]
    if variant == 1:
        # Quadrilateral around the whole image with every vertex far away.
        return [
            (-rng.uniform(100, 40000), -rng.uniform(100, 40000)),
            (cols + rng.uniform(100, 40000), -rng.uniform(100, 40000)),
            (cols + rng.uniform(100, 40000), rows + rng.uniform(100, 40000)),
            (-rng.uniform(100, 40000), rows + rng.uniform(100, 40000)),
        ]
    if variant == 2:
        # Huge triangle whose longest edge runs through a point inside the image, with every vertex
        # thousands of pixels away.
        anchor_x, anchor_y = random_point(rng, rows, cols)
        angle = rng.uniform(0.05, math.pi / 2 - 0.05)
        dx, dy = math.cos(angle), -math.sin(angle)
        forward = rng.uniform(1000, 45000)
        backward = rng.uniform(1000, 45000)
        return [
            (-rng.uniform(1000, 45000), -rng.uniform(1000, 45000)),
            (anchor_x + forward * dx, anchor_y + forward * dy),
            (anchor_x - backward * dx, anchor_y - backward * dy),
        ]
    if variant == 3:
        # Band a few pixels wide through the image, with end points tens of thousands of pixels away, so
        # rounding of the fixed-point edge slopes decides which pixels are covered.
        angle = rng.uniform(0, math.pi)
        center_x, center_y = random_point(rng, rows, cols)
        reach = rng.uniform(5000, 45000)
        width = rng.uniform(0.5, 4)
        dx, dy = math.cos(angle), math.sin(angle)
        nx, ny = -dy * width / 2, dx * width / 2
        return [
            (center_x - reach * dx + nx, center_y - reach * dy + ny),
            (center_x + reach * dx + nx, center_y + reach * dy + ny),
            (center_x + reach * dx - nx, center_y + reach * dy - ny),
            (center_x - reach * dx - nx, center_y - reach * dy - ny),
        ]
    if variant == 4:
        # Polygon entirely outside the image, next to it or far away. Nothing may be drawn.
        side = rng.randint(0, 3)
        gap = rng.choice((0.6, 3.0, 700.0, 20000.0))
        base = [(rng.uniform(0, 30), rng.uniform(0, 30)) for _ in range(rng.randint(3, 6))]
        if side == 0:
            return [(x - 31 - gap, y + rng.uniform(-5, rows)) for x, y in base]
        if side == 1:
            return [(x + cols + gap, y) for x, y in base]
        if side == 2:
            return [(x, y - 31 - gap) for x, y in base]
        return [(x, y + rows + gap) for x, y in base]
    # Mixed: random vertices, each far away with probability one half.
    coordinates = []
    for _ in range(rng.randint(3, 8)):
        x, y = random_point(rng, rows, cols)
        if rng.random() < 0.5:
            x = far_value(rng, cols)
        if rng.random() < 0.5:
            y = far_value(rng, rows)
        coordinates.append((x, y))
    return coordinates


def degenerate_polygon(rng, rows, cols, variant):
    x0, y0 = random_point(rng, rows, cols)
    x1, y1 = random_point(rng, rows, cols)
    if variant == 0:
        return [(x0, y0)]
    if variant == 1:
        return [(x0, y0), (x1, y1)]
    if variant == 2:
        return [(x0, y0)] * rng.randint(2, 4)
    if variant == 3:
        # Exactly collinear, with the middle vertex beyond the end points so the path folds back.
        return [(x0, y0), (x1, y1), (x0 + 1.5 * (x1 - x0), y0 + 1.5 * (y1 - y0))]
    # Convex polygon with repeated consecutive vertices.
    coordinates = []
    for point in convex_polygon(rng, rows, cols):
        coordinates.extend([point] * rng.randint(1, 3))
    return coordinates


def polyline_coordinates(rng, rows, cols, variant):
    count = rng.randint(2, 7)
    if variant == "inside":
        return [random_point(rng, rows, cols) for _ in range(count)]
    if variant == "leaving":
        return [random_point(rng, rows, cols, 25) for _ in range(count)]
    if variant == "zero_length":
        coordinates = []
        for _ in range(count):
            point = random_point(rng, rows, cols, 3)
            coordinates.extend([point] * rng.randint(1, 3))
        if rng.random() < 0.3:
            coordinates = [coordinates[0]] * rng.randint(1, 3)  # the whole polyline is one point
        return coordinates
    # far
    coordinates = [random_point(rng, rows, cols) for _ in range(count)]
    for index in rng.sample(range(count), rng.randint(1, count)):
        x, y = coordinates[index]
        coordinates[index] = (far_value(rng, cols) if rng.random() < 0.7 else x, far_value(rng, rows) if rng.random() < 0.7 else y)
    return coordinates


# Case kinds.


def convex_cases():
    rng = random.Random(f"{SEED}-convex")
    for shift, index in shift_plan(16, 6):
        rows, cols = pick_size(rng)
        steps = [fill_step(convex_polygon(rng, rows, cols), shift, rng.choice(COLORS))]
        yield make_case(f"convex/s{shift}/{index}", "convex", rows, cols, steps)


def concave_cases():
    rng = random.Random(f"{SEED}-concave")
    for shift, index in shift_plan(16, 6):
        rows, cols = pick_size(rng)
        color = rng.choice(COLORS)
        if index % 3 == 0:
            shape, coordinates = "star", star_polygon(rng, rows, cols)
        elif index % 3 == 1:
            shape, coordinates = "zigzag", zigzag_polygon(rng, rows, cols)
        else:
            variant = (index // 3) % 3
            shape, coordinates = "self_intersecting", self_intersecting_polygon(rng, rows, cols, variant)
        yield make_case(f"concave/{shape}/s{shift}/{index}", "concave", rows, cols, [fill_step(coordinates, shift, color)])


def sliver_cases():
    rng = random.Random(f"{SEED}-sliver")
    makers = (("triangle", sliver_triangle), ("horizontal", horizontal_sliver), ("vertical", vertical_sliver))
    for shift, index in shift_plan(18, 6):
        rows, cols = pick_size(rng)
        shape, maker = makers[index % 3]
        steps = [fill_step(maker(rng, rows, cols), shift, rng.choice(COLORS))]
        yield make_case(f"sliver/{shape}/s{shift}/{index}", "sliver", rows, cols, steps)


def far_cases():
    rng = random.Random(f"{SEED}-far")
    names = ("one_far_vertex", "covers_image", "huge_triangle", "long_band", "outside", "mixed")
    for shift, index in shift_plan(14, 6):
        rows, cols = pick_size(rng)
        if index >= 12:
            rows, cols = rng.choice(((1, 1), (2, 3), (1, 9), (9, 1)))  # tiny images inside a covering polygon
            variant = 1
        else:
            variant = index % len(names)
        steps = [fill_step(far_polygon(rng, rows, cols, variant), shift, rng.choice(COLORS))]
        yield make_case(f"far/{names[variant]}/s{shift}/{index}", "far", rows, cols, steps)


def degenerate_cases():
    rng = random.Random(f"{SEED}-degenerate")
    names = ("one_point", "two_points", "same_points", "collinear", "repeated_vertices")
    for shift, index in shift_plan(6, 5):
        rows, cols = pick_size(rng)
        variant = index % len(names)
        steps = [fill_step(degenerate_polygon(rng, rows, cols, variant), shift, rng.choice(COLORS))]
        yield make_case(f"degenerate/{names[variant]}/s{shift}/{index}", "degenerate", rows, cols, steps)


def polyline_cases():
    rng = random.Random(f"{SEED}-polyline")
    variants = ("inside", "leaving", "zero_length", "far")
    for shift in SHIFTS + (0,):
        index = 0
        for thickness in (1, 2, 3):
            for closed in (False, True):
                for variant in variants:
                    if shift == 0 and variant == "inside":
                        continue  # shift 0 gets fewer cases than the other shifts
                    rows, cols = pick_size(rng)
                    coordinates = polyline_coordinates(rng, rows, cols, variant)
                    steps = [polyline_step(coordinates, shift, closed, thickness, rng.choice(COLORS))]
                    state = "closed" if closed else "open"
                    name = f"polyline/{variant}/t{thickness}/{state}/s{shift}/{index}"
                    yield make_case(name, "polyline", rows, cols, steps)
                    index += 1


def multi_cases():
    """Several polygons, and sometimes polylines, drawn in order onto one image, alternating colors 1.0 and 0.5."""
    rng = random.Random(f"{SEED}-multi")
    for shift, index in shift_plan(5, 2):
        rows, cols = pick_size(rng)
        steps = []
        for step_index in range(rng.randint(3, 6)):
            color = 1.0 if step_index % 2 == 0 else 0.5
            choice = rng.random()
            if choice < 0.4:
                coordinates = convex_polygon(rng, rows, cols)
            elif choice < 0.6:
                coordinates = star_polygon(rng, rows, cols)
            elif choice < 0.75:
                coordinates = far_polygon(rng, rows, cols, rng.choice((0, 3, 5)))
            else:
                coordinates = None
            if coordinates is None:
                line = polyline_coordinates(rng, rows, cols, rng.choice(("inside", "leaving")))
                steps.append(polyline_step(line, shift, rng.random() < 0.5, rng.randint(1, 3), color))
            else:
                steps.append(fill_step(coordinates, shift, color))
        yield make_case(f"multi/s{shift}/{index}", "multi", rows, cols, steps)


def generate_cases():
    cases = []
    for generator in (convex_cases, concave_cases, sliver_cases, far_cases, degenerate_cases, polyline_cases, multi_cases):
        cases.extend(generator())
    names = [case["name"] for case in cases]
    if len(set(names)) != len(names):
        raise AssertionError("case names are not unique")
    return cases


def main():
    if cv2.__version__ != "4.6.0":
        sys.exit(f"expected OpenCV 4.6.0, found {cv2.__version__}; run this script with /usr/bin/python3")
    cases = generate_cases()
    lines = [json.dumps(case, separators=(",", ":")) for case in cases]
    text = (
        '{"opencv_version":' + json.dumps(cv2.__version__) + ',"seed":' + str(SEED) + ',"cases":[\n'
        + ",\n".join(lines) + "\n]}\n"
    )
    os.makedirs(os.path.dirname(OUTPUT_PATH), exist_ok=True)
    with open(OUTPUT_PATH, "w", encoding="utf-8") as output:
        output.write(text)
    counts = {}
    for case in cases:
        counts[case["kind"]] = counts.get(case["kind"], 0) + 1
    summary = ", ".join(f"{kind} {count}" for kind, count in counts.items())
    print(f"wrote {len(cases)} cases ({summary}) to {OUTPUT_PATH}, {len(text)} bytes")


if __name__ == "__main__":
    main()
