"""``poselib synth``: render a SynthPose data set in COCO keypoint format.

Two ways to call it:

- ``poselib synth --out DIR --num-images N --seed S [--config NAME] [knobs]`` renders a custom data set; the
  named config supplies the knobs that are not given.
- ``poselib synth --config NAME --split train|val`` renders a named split into the data folder
  (``data/synthpose/NAME/SPLIT``), exactly as notebooks get it through ``ensure_split``; nothing happens when
  it is already there and current (``--force`` renders it again).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from poselib.cli import parse_size

HELP = "render a SynthPose data set in COCO keypoint format"

#: command-line knob -> SynthConfig field
_KNOBS = {
    "size": "image_size", "people": "people", "scale": "scale", "occlusion": "occlusion", "clutter": "clutter",
    "truncation": "truncation", "crowd_height": "crowd_height", "crowd_prob": "crowd_prob",
}


def _pair(cast):
    def parse(text: str):
        try:
            lo, hi = (cast(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected MIN,MAX ({cast.__name__}s), e.g. 1,6; got {text!r}") from None
        return lo, hi

    parse.__name__ = f"{cast.__name__} pair"
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from poselib.data.synthpose.config import NAMED_CONFIGS, SPLITS

    parser.add_argument("--config", default="synthpose", choices=list(NAMED_CONFIGS),
                        help="named configuration supplying size, knobs and (with --split) image count and seed "
                             "(default: %(default)s)")
    parser.add_argument("--split", choices=SPLITS,
                        help="render this split of --config into the data folder, as ensure_split does")
    parser.add_argument("--out", type=Path, help="output folder (annotations.json and images/); required without --split")
    parser.add_argument("--num-images", type=int, help="number of images (default: the config's train size)")
    parser.add_argument("--seed", type=int, help="random seed (default: 0)")
    parser.add_argument("--force", action="store_true", help="with --split: render again even if the split is current")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    knobs = parser.add_argument_group("knobs (override the named configuration; see poselib.data.synthpose.SynthConfig)")
    knobs.add_argument("--size", type=parse_size, metavar="HxW", help="image size in pixels")
    knobs.add_argument("--people", type=_pair(int), metavar="MIN,MAX", help="people per image")
    knobs.add_argument("--scale", type=_pair(float), metavar="MIN,MAX",
                       help="person height as a fraction of the image height")
    knobs.add_argument("--occlusion", type=float, metavar="X",
                       help="0..1: how much people are pushed to overlap, plus foreground objects")
    knobs.add_argument("--clutter", type=float, metavar="X", help="0..1: background distractors and sensor noise")
    knobs.add_argument("--truncation", type=float, metavar="X", help="0..1: how far people may stick out of the image")
    knobs.add_argument("--crowd-height", type=float, metavar="PX",
                       help="people shorter than this are labelled as crowd regions")
    knobs.add_argument("--crowd-prob", type=float, metavar="P", help="probability of a background crowd per image")


def _summary(folder: Path) -> str:
    data = json.loads((folder / "annotations.json").read_text())
    people = [a for a in data["annotations"] if not a["iscrowd"]]
    crowds = len(data["annotations"]) - len(people)
    labelled = sum(a["num_keypoints"] > 0 for a in people)
    return (f"{folder}: {len(data['images'])} images, {len(people)} people ({labelled} with keypoints), "
            f"{crowds} crowd regions")


def run(args: argparse.Namespace) -> int:
    from poselib.data.synthpose.config import get_named_config
    from poselib.data.synthpose.writer import ensure_split, generate, split_dir

    named = get_named_config(args.config)
    changes = {field: getattr(args, arg) for arg, field in _KNOBS.items() if getattr(args, arg) is not None}
    try:
        config = named.config.replace(**changes)
    except ValueError as error:
        print(f"poselib synth: {error}", file=sys.stderr)
        return 2

    if args.split:
        if changes or args.out or args.num_images is not None or args.seed is not None:
            print("poselib synth: --split renders the named split as defined in poselib.data.synthpose.config; "
                  "for other knobs, sizes or seeds use --out", file=sys.stderr)
            return 2
        spec = named.split(args.split)
        if args.force:
            folder = split_dir(args.config, args.split)
            generate(folder, spec.num_images, spec.seed, named.config, progress=not args.quiet)
        else:
            folder = ensure_split(args.config, args.split, progress=not args.quiet)
        print(_summary(folder))
        return 0

    if args.out is None:
        print("poselib synth: --out is required (or use --split to render a named split)", file=sys.stderr)
        return 2
    num_images = named.split("train").num_images if args.num_images is None else args.num_images
    seed = 0 if args.seed is None else args.seed
    try:
        folder = generate(args.out, num_images, seed, config, progress=not args.quiet)
    except ValueError as error:
        print(f"poselib synth: {error}", file=sys.stderr)
        return 2
    print(_summary(folder))
    return 0
