"""``poselib bench grouping``: images per second of Simple Pose's greedy assignment against the number of people.

Maps are the stride-4 targets of random stick figures (keypoint and body-part heatmaps) plus a little noise,
upsampled to the input's resolution as at inference; only the assignment itself is timed. Prints a table and, as its last line, a JSON object
``{"benchmark", "size", "repeats", "images_per_s": {people: value}, "ms_per_image": {people: value}}``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from poselib.codecs.bodyparts import BodyPartTargets
from poselib.grouping.greedy import group, upsample_maps
from poselib.keypoints import NUM_KEYPOINTS

#: A standing figure, keypoint offsets in units of its height / 80 from the nose.
_FIGURE = np.array([(0, 0), (3, -3), (-3, -3), (6, -1), (-6, -1), (9, 12), (-9, 12), (12, 24), (-12, 24), (13, 36),
                    (-13, 36), (6, 40), (-6, 40), (7, 56), (-7, 56), (7, 72), (-7, 72)], dtype=np.float64)


def random_people(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` stick figures ``(count, 17, 3)`` of random height, position and arm/leg jitter in a square image
    of side ``size``."""
    people = np.zeros((count, NUM_KEYPOINTS, 3))
    for i in range(count):
        scale = rng.uniform(0.15, 0.4) * size / 80
        origin = rng.uniform([0.1 * size, 0.05 * size], [0.9 * size, 0.65 * size])
        jitter = rng.normal(0, 2.5, _FIGURE.shape)
        people[i, :, :2] = origin + (_FIGURE + jitter) * scale
        people[i, :, 2] = 2
    return people


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poselib bench grouping", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="side of the (square) maps in pixels")
    parser.add_argument("--people", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="people per image")
    parser.add_argument("--repeats", type=int, default=5, help="images timed per setting (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def measure(people_counts, size: int = 512, repeats: int = 5, seed: int = 0) -> dict[int, float]:
    """Median milliseconds per image of :func:`~poselib.grouping.greedy.group` for each number of people."""
    rng = np.random.default_rng(seed)
    encoder = BodyPartTargets(size, 4, sigma_k=9.0, sigma_p=7.0, num_scales=1)
    result = {}
    for count in people_counts:
        times = []
        for _ in range(repeats + 1):
            # as in inference: stride-4 maps (here the targets, plus noise) upsampled to the input's resolution
            maps = encoder.encode(torch.as_tensor(random_people(count, size, rng), dtype=torch.float32))
            maps = maps + 0.02 * torch.rand(maps.shape, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30))))
            maps = upsample_maps(maps[None], 4)[0]
            start = time.perf_counter()
            group(maps[:NUM_KEYPOINTS], maps[NUM_KEYPOINTS:])
            times.append((time.perf_counter() - start) * 1e3)
        result[int(count)] = sorted(times[1:])[len(times[1:]) // 2]  # the first run warms up
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ms = measure(args.people, args.size, args.repeats, args.seed)
    print(f"greedy assignment on {args.size}x{args.size} maps, CPU ({torch.get_num_threads()} threads)")
    print(f"{'people':>8} {'ms/image':>10} {'images/s':>10}")
    for count, value in ms.items():
        print(f"{count:>8} {value:>10.1f} {1e3 / value:>10.1f}")
    print(json.dumps({"benchmark": "grouping", "size": args.size, "repeats": args.repeats,
                      "ms_per_image": {str(k): v for k, v in ms.items()},
                      "images_per_s": {str(k): 1e3 / v for k, v in ms.items()}}))
    return 0


__all__ = ["main", "measure", "random_people"]
