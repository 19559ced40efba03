"""``poselib data``: inspect a COCO keypoint file, or check and download COCO 2017.

    poselib data inspect ANN.json [--images DIR] [--no-decode]
    poselib data coco [--root DIR] [--download] [--split train2017 val2017] [--keep-archives]
"""

from __future__ import annotations

import argparse
import sys

HELP = "inspect a COCO keypoint file, or download COCO 2017"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    inspect = sub.add_parser(
        "inspect",
        help="validate a COCO keypoint file and its images; exit code 1 if any problem",
        description="Validate a COCO keypoint file and, with --images, open every image it lists. Prints counts "
        "and every problem found; the exit code is 1 if there is any problem.",
    )
    inspect.add_argument("ann_path", metavar="ANN.json", help="COCO person keypoint annotation file")
    inspect.add_argument("--images", metavar="DIR", default=None, help="folder holding the images (checks them)")
    inspect.add_argument("--no-decode", action="store_true", help="only check that image files exist (faster)")
    inspect.add_argument("--max-problems", type=int, default=200, metavar="N", help="print at most N problems (default 200)")

    from poselib.data.download import SPLITS  # light: standard library only

    coco = sub.add_parser(
        "coco",
        help="check a COCO 2017 folder, or download what is missing with --download",
        description="Check a COCO 2017 person keypoint folder and report what is missing. With --download, fetch "
        "the official archives (size and MD5 checked, partial downloads resumed), extract them and remove them.",
    )
    coco.add_argument("--root", default=None, metavar="DIR", help="COCO folder (default: <data root>/coco)")
    coco.add_argument("--download", action="store_true", help="download, verify and extract what is missing")
    coco.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits to check or fetch")
    coco.add_argument("--keep-archives", action="store_true", help="keep the zip files after extraction")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "inspect":
        return _inspect(args)
    return _coco(args)


def _inspect(args: argparse.Namespace) -> int:
    from poselib.data.errors import DataError
    from poselib.data.inspect import inspect_coco

    try:
        report = inspect_coco(args.ann_path, args.images, decode=not args.no_decode, progress=True)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.format(max_problems=args.max_problems))
    return 0 if report.ok else 1


def _coco(args: argparse.Namespace) -> int:
    from pathlib import Path

    from poselib.data.download import DownloadError, archives_present, manual_instructions, prepare_coco
    from poselib.paths import data_root

    root = Path(args.root) if args.root else data_root() / "coco"
    try:
        missing = prepare_coco(root, args.split, download=args.download, keep_archives=args.keep_archives)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not missing:
        print(f"COCO 2017 {' '.join(args.split)} complete in {root}")
        return 0
    print(f"COCO 2017 under {root} is incomplete:")
    for line in missing:
        print(f"  {line}")
    if not args.download:
        present = archives_present(root)
        if present:
            print("archives found there: " + ", ".join(p.name for p in present))
        print(f"run `poselib data coco --root {root} --download` to fetch, verify and extract what is missing.")
        print(manual_instructions(root, args.split))
    return 1
