"""``poselib archive METHOD [EXPERIMENT ...] [--preset cpu] [--seed 0]``: train experiments outside the book's
build and commit their records.

Some of a chapter's experiments cost more than its share of the book's time budget under the small presets.
This command trains them (or loads them from the model cache) with exactly the code and recipe the chapter would
use, evaluates them, and copies each record into ``results/archive/<preset>/``; commit that folder. The chapter's
tables then show those rows from the archive, labelled with the record's date and commit, as long as the record
names the model the current recipe, seed, data and starting weights give; a changed recipe or regenerated data
makes it stale, and the row says so instead of showing it. Records must come from a clean checkout (no
uncommitted changes), so that their commit names the code that trained them.

Without experiments it prints each experiment of the method and whether the archive holds a current record of
it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from poselib.presets import PRESETS

HELP = "train experiments outside the book's build and archive their records"

#: methods whose experiments can be archived: name -> module with EXPERIMENTS, trains_in_build, run_experiment,
#: record_name, archived_experiment
METHODS: dict[str, str] = {"mspn": "poselib.methods.mspn"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=sorted(METHODS))
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                        help="experiments to train and archive (none: list every experiment's archive status)")
    parser.add_argument("--preset", choices=PRESETS, default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help='"auto", "cpu", "cuda", "cuda:1"...')
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from poselib.engine.records import archive_record, git_state

    method = importlib.import_module(METHODS[args.method])
    unknown = [name for name in args.experiments if name not in method.EXPERIMENTS]
    if unknown:
        print(f"poselib archive: unknown {args.method} experiment(s) {', '.join(unknown)}; "
              f"choose from {', '.join(method.EXPERIMENTS)}", file=sys.stderr)
        return 2
    if not args.experiments:
        for name in method.EXPERIMENTS:
            if method.trains_in_build(name, args.preset, args.seed):
                status = "trained in the book's build"
            else:
                found = method.archived_experiment(name, args.preset, seed=args.seed)
                status = "current" if found.record is not None else found.problem
            print(f"{name:28s} {status}")
        return 0
    state = git_state()
    if state is None or state["dirty"]:  # found out before training, not after
        print("poselib archive: the checkout has uncommitted changes (or is not a git checkout); commit them first, "
              "so that the records name the code that trains them", file=sys.stderr)
        return 1
    for name in args.experiments:
        result = method.run_experiment(name, args.preset, seed=args.seed, device=args.device,
                                       progress=not args.no_progress)
        try:
            path = archive_record(method.record_name(name, args.seed), args.preset)
        except ValueError as err:
            print(f"poselib archive: {err}", file=sys.stderr)
            return 1
        print(f"{name} seed {args.seed}: AP {result['AP']:.4f}, trained in {result['train_s']:.0f} s; archived {path}")
    return 0
