"""``poselib bench load``: time a method's training-data pipeline, the CPU work behind every training step.

On a small machine the data loader runs in the training process (the ``cpu`` recipes use ``num_workers=0``: on
2 cores a worker process costs more than it saves), so every millisecond spent here is added to each step. For
the method's training set under a preset this times, per sample, reading and augmenting (the decoded images are
cached as in training, so a warm-up pass over the same samples comes first), then encoding the targets, then
batching one training batch; ``poselib bench step`` times the network's side of the step. Prints a table and, as
its last line, a JSON object ``{"benchmark", "method", "preset", "samples", "batch_size", "ms_per_sample":
{"load", "encode"}, "ms_collate", "ms_per_batch"}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch.utils.data import default_collate

from poselib.data.datasets import BottomUpDataset, collate_bottomup
from poselib.methods import METHODS, get_method, msa_rcnn, topdown
from poselib.presets import PRESETS


def _collate_for(train_set) -> Callable:
    """How the method's training loop batches ``train_set``'s samples."""
    if isinstance(train_set, BottomUpDataset):
        return collate_bottomup
    if isinstance(train_set, msa_rcnn.DetectionDataset):
        return msa_rcnn.collate_detection
    return default_collate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poselib bench load", description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=sorted(METHODS), help="whose training data pipeline to time")
    parser.add_argument("--preset", choices=PRESETS, default="cpu", help="the recipe's preset (default: cpu)")
    parser.add_argument("--samples", type=int, default=256, help="training samples timed (default: 256)")
    return parser


def time_pipeline(method: str, preset: str = "cpu", samples: int = 256) -> dict:
    """Milliseconds per sample to load (read, augment, normalise) and to encode targets, and per batch to collate,
    for the training set of ``method`` under ``preset`` (the first ``samples`` samples, images cached)."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    module = get_method(method)  # KeyError naming the choices for an unknown method
    recipe = module.recipe(preset)
    # the top-down methods (Parts 0, IV, V) build their data through topdown; the others have their own builder
    train_set, _ = getattr(module, "build_datasets", topdown.build_datasets)(recipe, 0)
    samples = min(samples, len(train_set))
    encoder = getattr(train_set, "encoder", None)  # detection sets (Part III) build their targets while loading
    if encoder is not None:
        train_set.encoder = None
    try:
        for index in range(samples):  # decode and cache the images, as the first pass over them in training does
            train_set[index]
        start = time.perf_counter()
        raw = [train_set[index] for index in range(samples)]
        load_ms = (time.perf_counter() - start) * 1e3 / samples
    finally:
        if encoder is not None:
            train_set.encoder = encoder
    encode_ms = 0.0
    encoded = raw
    if encoder is not None:
        start = time.perf_counter()
        encoded = [encoder(dict(sample)) for sample in raw]
        encode_ms = (time.perf_counter() - start) * 1e3 / samples
    batch_size = min(int(recipe.train["batch_size"]), samples)
    start = time.perf_counter()
    _collate_for(train_set)(encoded[:batch_size])
    collate_ms = (time.perf_counter() - start) * 1e3
    return {"benchmark": "load", "method": method, "preset": preset, "samples": samples, "batch_size": batch_size,
            "ms_per_sample": {"load": round(load_ms, 3), "encode": round(encode_ms, 3)},
            "ms_collate": round(collate_ms, 3),
            "ms_per_batch": round(batch_size * (load_ms + encode_ms) + collate_ms, 2)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = time_pipeline(args.method, args.preset, args.samples)
    per = result["ms_per_sample"]
    print(f"{args.method} training data at preset {args.preset!r}: {result['samples']} samples, "
          f"{torch.get_num_threads()} torch threads")
    print(f"  load (read, augment, normalise) {per['load']:8.3f} ms/sample")
    print(f"  encode targets                  {per['encode']:8.3f} ms/sample")
    print(f"  collate a batch of {result['batch_size']:<3}          {result['ms_collate']:8.3f} ms")
    print(f"  per training batch              {result['ms_per_batch']:8.2f} ms")
    print(json.dumps(result))
    return 0


__all__ = ["main", "time_pipeline"]
