"""``poselib bench decode``: time every heatmap decoder on a batch of maps; ``poselib bench encode``: time the
target encoders on one training sample, as a data loader calls them.

Decoder maps are Gaussian targets of random keypoints plus noise (so argmax ties are as rare as on network output).
Each prints a table and, as its last line, a JSON object: ``{"benchmark": "decode", "device", "shape", "repeats",
"ms_per_batch": {decoder: ms}, "us_per_map": {decoder: us}}`` or ``{"benchmark": "encode", "size", "levels",
"repeats", "us_per_sample": {encoder: us}}``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from poselib.codecs.decode import DECODERS, flip_back, gaussian_blur
from poselib.codecs.heatmap import encode_gaussian_levels, encode_heatmaps, gaussian_sigma_from_kernel
from poselib.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from poselib.presets import resolve_device
from poselib.cli import parse_size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poselib bench decode", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="maps per batch (N)")
    parser.add_argument("--keypoints", type=int, default=17, help="channels per map (K)")
    parser.add_argument("--size", type=parse_size, default=(64, 48), help="heatmap size HxW")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per decoder (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernel selection and allocator
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    h, w = args.size
    stride = 4
    keypoints = torch.rand(args.batch, args.keypoints, 3, generator=generator)
    keypoints[..., 0] *= w * stride
    keypoints[..., 1] *= h * stride
    keypoints[..., 2] = 1.0
    maps, _ = encode_heatmaps(keypoints, (h, w), stride, 2.0)
    maps = (maps + 0.05 * torch.randn(maps.shape, generator=generator)).to(device)
    flip_index = FLIP_INDEX if args.keypoints == NUM_KEYPOINTS else list(range(args.keypoints))

    cases = {name: (lambda fn=fn: fn(maps)) for name, fn in DECODERS.items()}
    cases["gaussian_blur(11)"] = lambda: gaussian_blur(maps, 11)
    cases["flip_back"] = lambda: flip_back(maps, flip_index)
    timings = {name: _median_ms(fn, device, args.repeats) for name, fn in cases.items()}

    num_maps = args.batch * args.keypoints
    width = max(len(name) for name in timings)
    print(f"decoders on {args.batch}x{args.keypoints}x{h}x{w} maps, {device}, median of {args.repeats}")
    print(f"{'decoder':<{width}}  {'ms/batch':>9}  {'us/map':>7}")
    for name, ms in timings.items():
        print(f"{name:<{width}}  {ms:9.3f}  {ms * 1e3 / num_maps:7.3f}")
    summary = {
        "benchmark": "decode",
        "device": str(device),
        "shape": [args.batch, args.keypoints, h, w],
        "repeats": args.repeats,
        "ms_per_batch": {name: round(ms, 4) for name, ms in timings.items()},
        "us_per_map": {name: round(ms * 1e3 / num_maps, 4) for name, ms in timings.items()},
    }
    print(json.dumps(summary))
    return 0


def build_encode_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poselib bench encode", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(32, 24), help="heatmap size HxW")
    parser.add_argument("--kernels", default="15,11,9,7,5", help="MSPN kernel sizes, one target level each")
    parser.add_argument("--repeats", type=int, default=500, help="timed samples per encoder (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def encode_main(argv: list[str] | None = None) -> int:
    """Microseconds per sample (one person, 17 keypoints) of each way to build its targets on the CPU."""
    args = build_encode_parser().parse_args(argv)
    h, w = args.size
    stride = 4
    kernels = [int(k) for k in args.kernels.split(",")]
    sigmas = [gaussian_sigma_from_kernel(k) for k in kernels]
    rng = np.random.default_rng(args.seed)
    keypoints = np.concatenate([rng.uniform(0, [w * stride, h * stride], (1, NUM_KEYPOINTS, 2)),
                                np.ones((1, NUM_KEYPOINTS, 1))], -1).astype(np.float32)
    cpu = torch.device("cpu")
    cases = {
        "one Gaussian level": lambda: encode_heatmaps(keypoints, (h, w), stride, sigmas[-1]),
        f"{len(sigmas)} Gaussian levels, one pass": lambda: encode_gaussian_levels(keypoints, (h, w), stride, sigmas),
        f"{len(sigmas)} Gaussian levels, one call each": lambda: [encode_heatmaps(keypoints, (h, w), stride, s) for s in sigmas],
        f"{len(kernels)} blurred-impulse levels": lambda: [encode_heatmaps(keypoints, (h, w), stride, kernel_size=k) for k in kernels],
    }
    timings = {name: _median_ms(fn, cpu, args.repeats) * 1e3 for name, fn in cases.items()}
    width = max(len(name) for name in timings)
    print(f"targets of one person ({NUM_KEYPOINTS} keypoints) on {h}x{w} maps, cpu, median of {args.repeats}")
    for name, us in timings.items():
        print(f"{name:<{width}}  {us:8.1f} us/sample")
    print(json.dumps({"benchmark": "encode", "size": [h, w], "levels": len(sigmas), "repeats": args.repeats,
                      "us_per_sample": {name: round(us, 2) for name, us in timings.items()}}))
    return 0
