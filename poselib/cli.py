"""The ``poselib`` command line: one sub-command per module under :mod:`poselib.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; modules are
imported only when their command runs, so ``poselib --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> module defining it
COMMANDS: dict[str, str] = {
    "synth": "poselib.commands.synth",
    "data": "poselib.commands.data",
    "eval": "poselib.commands.evaluate",
    "flops": "poselib.commands.flops",
    "train": "poselib.commands.train",
    "predict": "poselib.commands.predict",
    "bench": "poselib.commands.bench",
    "book": "poselib.commands.book",
    "archive": "poselib.commands.archive",
}

COMMAND_HELP: dict[str, str] = {
    "synth": "render a SynthPose data set in COCO keypoint format",
    "data": "inspect a COCO keypoint file, or download COCO 2017",
    "eval": "COCO keypoint or box evaluation of a results file",
    "flops": "parameters and multiply-accumulates (GMACs) of a registered model",
    "train": "train a method under a preset",
    "predict": "run a trained method on images; draws skeletons and writes COCO results",
    "bench": "speed benchmarks",
    "book": "execute the notebooks with papermill and render the book",
    "archive": "train experiments outside the book's build and archive their records",
}


class SizeError(argparse.ArgumentTypeError, ValueError):
    """A size argument that is not ``HxW`` with positive integers."""


def parse_size(text: str) -> tuple[int, int]:
    """``"256x192"`` -> ``(256, 192)`` as ``(H, W)``; usable as an argparse ``type``.

    Raises :class:`SizeError` (both an ``ArgumentTypeError``, so argparse shows its message, and a ``ValueError``).
    """
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise SizeError(f"size {text!r} must look like HxW with positive integers, e.g. 256x192")
    return int(parts[0]), int(parts[1])


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object]:
    parser = argparse.ArgumentParser(prog="poselib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, help_text in COMMAND_HELP.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(COMMANDS[name])
            module.add_arguments(p)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, module = build_parser(argv)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
