"""``poselib flops MODEL [--input HxW]``: parameters and GMACs of a registered model; ``--list`` lists them.

The last line printed is JSON: ``{"model": ..., "input": "HxW", "gmacs": ..., "params_m": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys

from poselib.cli import parse_size

HELP = "parameters and multiply-accumulates (GMACs) of a registered model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="registered model name (see --list)")
    parser.add_argument("--input", metavar="HxW", help="input size (default: the size the paper measures at)")
    parser.add_argument("--list", action="store_true", help="list registered models with their default inputs")


def run(args: argparse.Namespace) -> int:
    from poselib.engine.flops import count_macs
    from poselib.models import registry

    if args.list:
        for entry in registry.list_models():
            h, w = entry.input_size
            print(f"{entry.name:32s} {h}x{w}  {entry.in_channels} ch  {entry.description}")
        return 0
    if not args.model:
        print("poselib flops: name a model, or use --list", file=sys.stderr)
        return 2
    try:
        entry = registry.get_entry(args.model)
    except KeyError as err:
        print(f"poselib flops: {err.args[0]}", file=sys.stderr)
        return 2
    try:
        size = parse_size(args.input) if args.input else tuple(entry.input_size)
    except ValueError as err:
        print(f"poselib flops: {err}", file=sys.stderr)
        return 2
    cost = count_macs(registry.build_model(args.model), size, in_channels=entry.in_channels)
    h, w = size
    print(
        f"{args.model} at {h}x{w} ({entry.in_channels} channels): "
        f"{cost['gmacs']:.3f} GMACs, {cost['params_m']:.3f} M parameters"
    )
    print(json.dumps({"model": args.model, "input": f"{h}x{w}", "gmacs": cost["gmacs"], "params_m": cost["params_m"]}))
    return 0
