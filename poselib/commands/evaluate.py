"""``poselib eval --gt ANN --results RES [--iou-type keypoints|bbox]``: COCO metrics of a results file.

Prints the metrics as a table and, as its last line, a JSON object of them (keypoints: AP, AP50, AP75, APm, APl,
AR, AR50, AR75, ARm, ARl; bbox: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl).
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "COCO keypoint or box evaluation of a results file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", required=True, metavar="ANN", help="COCO annotation file (ground truth)")
    parser.add_argument("--results", required=True, metavar="RES", help="COCO results file (JSON list)")
    parser.add_argument("--iou-type", choices=("keypoints", "bbox"), default="keypoints", help="what to evaluate")
    parser.add_argument("--verbose", action="store_true", help="show pycocotools' own output")


def format_table(metrics: dict[str, float]) -> str:
    """Two aligned columns, metric and value; -1 (no ground truth in that area range) is shown as such."""
    width = max(len("metric"), *(len(name) for name in metrics))
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{name:<{width}}  {value:6.3f}" for name, value in metrics.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from poselib.evaluation import EvaluationInputError, evaluate_boxes, evaluate_keypoints

    evaluate = evaluate_keypoints if args.iou_type == "keypoints" else evaluate_boxes
    try:
        metrics = evaluate(args.gt, args.results, verbose=args.verbose)
    except EvaluationInputError as error:
        print(f"poselib eval: {error}", file=sys.stderr)
        return 2
    print(format_table(metrics))
    print(json.dumps(metrics))
    return 0
