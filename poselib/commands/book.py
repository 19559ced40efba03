"""``poselib book [--preset P] [--only GLOB] [--no-execute] [--timeout S]``: execute the notebooks and render the book.

See :mod:`poselib.book` for the build layout. ``--only`` executes the matching notebooks (glob on the path relative
to the checkout, e.g. ``'notebooks/part0/*'``); the others keep their earlier executed copy of the same preset, or are
rendered unexecuted with a note. ``--no-execute`` renders the notebooks executed earlier (by a previous run or by
``pytest -m notebook`` for the smoke preset) and fails naming any that is missing.
"""

from __future__ import annotations

import argparse

from poselib.presets import PRESETS

HELP = "execute the notebooks with papermill and render the book"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", choices=PRESETS, help="notebook preset (default: cpu)")
    parser.add_argument("--only", metavar="GLOB", help="execute only the notebooks whose path matches GLOB")
    parser.add_argument(
        "--no-execute", action="store_true", help="render the notebooks already executed with this preset"
    )
    parser.add_argument("--timeout", type=float, metavar="S", help="limit each cell to S seconds (default: none)")


def run(args: argparse.Namespace) -> int:
    from poselib.book import run_book

    if args.timeout is not None and args.timeout <= 0:
        raise SystemExit("poselib book: --timeout must be a positive number of seconds")
    return run_book(args.preset, only=args.only, execute=not args.no_execute, timeout=args.timeout)
