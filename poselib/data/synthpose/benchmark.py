"""``poselib bench synth``: SynthPose rendering speed on one core, end to end.

Renders and writes a data set (drawing, labels, RLE masks, JPEG files, annotation file) into a temporary folder
with torch and cv2 limited to one thread, and reports images per second of wall time and of process CPU time
(the latter is less disturbed by other work on a shared machine). The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from poselib.data.synthpose.config import NAMED_CONFIGS, get_named_config
from poselib.cli import parse_size


def _one_thread() -> None:
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch
    except ImportError:  # torch plays no part in rendering; limit it only when present
        return
    torch.set_num_threads(1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="poselib bench synth", description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=300, help="images to render (default: %(default)s)")
    parser.add_argument("--size", type=parse_size, metavar="HxW", help="image size (default: the config's)")
    parser.add_argument("--config", default="synthpose", choices=list(NAMED_CONFIGS),
                        help="knobs to render with (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error("--num-images must be at least 1")

    _one_thread()
    from poselib.data.synthpose.writer import generate

    config = get_named_config(args.config).config
    if args.size:
        config = config.replace(image_size=args.size)
    h, w = config.image_size
    with tempfile.TemporaryDirectory(prefix="synthpose-bench-") as tmp:
        generate(Path(tmp) / "warmup", 2, args.seed + 1, config, progress=False)  # imports, caches
        wall, cpu = time.perf_counter(), time.process_time()
        folder = generate(Path(tmp) / "bench", args.num_images, args.seed, config, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        annotations = json.loads((folder / "annotations.json").read_text())["annotations"]

    people = sum(not a["iscrowd"] for a in annotations) / args.num_images
    result = {
        "benchmark": "synth",
        "images_per_s": round(args.num_images / wall, 1),
        "cpu_images_per_s": round(args.num_images / cpu, 1),
        "num_images": args.num_images,
        "size": [h, w],
        "config": args.config,
        "people_per_image": round(people, 2),
    }
    print(f"SynthPose {args.config} at {h}x{w}, {args.num_images} images, {people:.2f} people per image, one thread")
    print(f"  wall  {wall:8.2f} s   {result['images_per_s']:8.1f} images/s")
    print(f"  cpu   {cpu:8.2f} s   {result['cpu_images_per_s']:8.1f} images/s")
    print(json.dumps(result))
    return 0
