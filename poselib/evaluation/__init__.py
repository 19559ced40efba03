"""Evaluation without a model: COCO keypoint/box metrics, OKS and OKS-NMS, and COCO results files.

``poselib.evaluation.oks`` is the module (``from poselib.evaluation import oks; oks.oks(...)``); the function is
:func:`poselib.evaluation.oks.oks`. Re-exporting the function here would hide the module of the same name.
"""

from poselib.evaluation.coco_eval import (
    BOX_METRICS,
    KEYPOINT_METRICS,
    EvaluationInputError,
    evaluate_boxes,
    evaluate_keypoints,
    load_ground_truth,
    load_ground_truth_dict,
    load_results,
)
from poselib.evaluation import oks
from poselib.evaluation.oks import matched_oks, oks_nms, pairwise_oks
from poselib.evaluation.results import (
    boxes_to_coco_results,
    ground_truth_as_results,
    poses_to_coco_results,
    write_results,
)

__all__ = [
    "BOX_METRICS",
    "KEYPOINT_METRICS",
    "EvaluationInputError",
    "boxes_to_coco_results",
    "evaluate_boxes",
    "evaluate_keypoints",
    "ground_truth_as_results",
    "load_ground_truth",
    "load_ground_truth_dict",
    "load_results",
    "matched_oks",
    "oks",
    "oks_nms",
    "pairwise_oks",
    "poses_to_coco_results",
    "write_results",
]
