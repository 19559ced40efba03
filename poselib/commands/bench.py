"""``poselib bench NAME [ARGS...]``: speed benchmarks. Each prints a table and, as its last line, a JSON object."""

from __future__ import annotations

import argparse
import importlib

#: benchmark name -> "module:function" taking the remaining arguments
BENCHMARKS: dict[str, str] = {
    "synth": "poselib.data.synthpose.benchmark:main",
    "decode": "poselib.codecs.benchmark:main",
    "encode": "poselib.codecs.benchmark:encode_main",
    "prn": "poselib.methods.multiposenet:bench_main",
    "grouping": "poselib.grouping.benchmark:main",
    "step": "poselib.models.benchmark:main",
    "load": "poselib.methods.benchmark:main",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (see NAME --help)")


def run(args: argparse.Namespace) -> int:
    module, function = BENCHMARKS[args.name].split(":")
    return int(getattr(importlib.import_module(module), function)(list(args.args)) or 0)
