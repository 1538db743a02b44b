#!/usr/bin/python3
"""Time RasterClient.rasterize per step on a parity set's drive, beside nuPlan's own seconds.

Usage (a server must be running on TARGET with the set's map loaded):
    /usr/bin/python3 clients/python/examples/time_av2_drive.py SET_DIR [TARGET] [ROUNDS]

SET_DIR holds scenes.json and reference.json (nuPlan's seconds per scene, same machine kind).
Prints the median client round trip [ms] per step, nuPlan's median [ms] and their ratio.
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from rasterd_client import EgoState, Pose, RasterClient, TrackedObject  # noqa: E402


def main() -> None:
    set_dir = sys.argv[1]
    target = sys.argv[2] if len(sys.argv) > 2 else '127.0.0.1:50051'
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    spec = json.load(open(os.path.join(set_dir, 'scenes.json')))
    reference = json.load(open(os.path.join(set_dir, 'reference.json')))['seconds']

    client = RasterClient(target, timeout=5.0)
    steps = []
    for scene in spec['scenes']:
        ego = EgoState(rear_axle=Pose(scene['ego']['x'], scene['ego']['y'], scene['ego']['heading']))
        objects = [TrackedObject(center=Pose(a['x'], a['y'], a['heading']), length=a['length'], width=a['width'],
                                 height=a.get('height', 1.5), type=a.get('type', 'vehicle')) for a in scene['agents']]
        steps.append((ego, objects))

    for ego, objects in steps[:20]:  # warm-up
        client.rasterize(spec['map'], ego, objects)
    times = []
    for _ in range(rounds):
        for ego, objects in steps:
            started = time.perf_counter()
            client.rasterize(spec['map'], ego, objects)
            times.append(time.perf_counter() - started)

    ours = statistics.median(times) * 1000
    nuplan = statistics.median(v for v in reference.values() if v) * 1000
    print(f'{len(times)} steps: rasterd client median {ours:.2f} ms, nuPlan median {nuplan:.2f} ms, ratio {nuplan / ours:.1f}x')


if __name__ == '__main__':
    main()
