"""``poselib train --method M --preset P``: train a method, evaluate it on the validation split, write a record."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from poselib.presets import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from poselib.methods import METHODS

    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument("--preset", default="cpu", choices=PRESETS)
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", "cuda:1"...')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from poselib.engine.records import dataset_info, write_record
    from poselib.methods import get_method, topdown

    method = get_method(args.method)
    overrides = {"train": {"epochs": args.epochs}} if args.epochs else {}
    options = dict(seed=args.seed, device=args.device, progress=not args.no_progress)
    if hasattr(method, "train_summary"):  # methods that are not plain top-down train and evaluate themselves
        summary = method.train_summary(args.preset, overrides, **options)
    else:
        summary = topdown.train_summary(method.recipe(args.preset, **overrides), **options)
    path = write_record(
        f"{args.method}-seed{args.seed}",
        method=args.method,
        config={"recipe": asdict(summary.recipe), "seed": args.seed},
        preset=args.preset,
        dataset=dataset_info(summary.recipe.dataset, summary.val_ann),
        metrics=summary.metrics,
        params_m=summary.params_m,
        gmacs=summary.gmacs,
        wall_time_s=summary.wall_time_s,  # the training run's time, also when the model came from the cache
        device=args.device,
        extra={"run_dir": str(summary.run_dir), **summary.extra},
    )
    print(f"trained {args.method} ({args.preset}) in {summary.wall_time_s:.0f} s; "
          f"checkpoint {summary.run_dir / 'final.pt'}; record {path}")
    print(json.dumps({"method": args.method, "preset": args.preset, **(summary.headline or summary.metrics)}))
    return 0
