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
    if hasattr(method, "train_command"):  # methods that are not top-down train and evaluate themselves
        return method.train_command(args)
    overrides = {"train": {"epochs": args.epochs}} if args.epochs else {}
    recipe = method.recipe(args.preset, **overrides)
    trained = topdown.train(recipe, seed=args.seed, device=args.device, progress=not args.no_progress)
    seconds = trained.result.wall_time_s  # the training run's time, also when the model came from the cache
    val_set = trained.val_set
    metrics = topdown.evaluate(trained.model, recipe, val_set, device=args.device, progress=not args.no_progress)
    cost = topdown.complexity(recipe)
    path = write_record(
        f"{args.method}-seed{args.seed}",
        method=args.method,
        config={"recipe": asdict(recipe), "seed": args.seed},
        preset=args.preset,
        dataset=dataset_info(recipe.dataset, val_set.ann_path),
        metrics=metrics,
        params_m=cost["params_m"],
        gmacs=cost["gmacs"],
        wall_time_s=seconds,
        device=args.device,
        extra={"run_dir": str(trained.run_dir)},
    )
    print(f"trained {args.method} ({args.preset}) in {seconds:.0f} s; checkpoint {trained.run_dir / 'final.pt'}; record {path}")
    print(json.dumps({"method": args.method, "preset": args.preset, **metrics}))
    return 0

