"""COCO keypoint and box evaluation: a quiet, validating wrapper around pycocotools' ``COCOeval``.

Ground truth is a COCO annotation file (path), its parsed dict, or a ``pycocotools.coco.COCO`` (reuse one to
evaluate many result sets quickly). Results are a results file (path) or a list of result dicts
(:mod:`poselib.evaluation.results`). Bad input raises :class:`EvaluationInputError` naming the file, the record
and the problem.

Metrics follow ``COCOeval.summarize``: AP averaged over OKS (or IoU) thresholds 0.50:0.05:0.95, AP50/AP75 at one
threshold, and per area range; an area range holding no ground truth reports -1.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from poselib.keypoints import COCO_SIGMAS

#: ``COCOeval.stats`` order for ``iouType="keypoints"``.
KEYPOINT_METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: ``COCOeval.stats`` order for ``iouType="bbox"``.
BOX_METRICS: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
IOU_TYPES: tuple[str, ...] = ("keypoints", "bbox")


class EvaluationInputError(ValueError):
    """A ground-truth or results file (or object) that cannot be evaluated; the message says where and why."""


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise EvaluationInputError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EvaluationInputError(f"{what} file {path} is not valid JSON: {error}") from None


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "<in-memory ground truth>"


def load_ground_truth_dict(gt, iou_type: str = "keypoints") -> dict:
    """The annotation dict of ``gt`` (path, dict or ``COCO``), checked for what ``COCOeval`` reads.

    Checks the top-level lists, unique image and annotation ids, that annotations refer to known images, and
    each annotation's ``bbox``, ``area``, and for keypoints its ``keypoints`` (3 numbers per keypoint) and
    ``num_keypoints``.
    """
    if isinstance(gt, COCO):
        return gt.dataset
    source = _describe(gt)
    data = _read_json(Path(gt), "ground-truth") if isinstance(gt, (str, Path)) else gt
    if not isinstance(data, dict):
        raise EvaluationInputError(f"ground truth {source}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise EvaluationInputError(f"ground truth {source}: missing or non-list {key!r}")
    image_ids = [img.get("id") if isinstance(img, dict) else None for img in data["images"]]
    if None in image_ids:
        raise EvaluationInputError(f"ground truth {source}: image record {image_ids.index(None)} has no 'id'")
    if len(set(image_ids)) != len(image_ids):
        raise EvaluationInputError(f"ground truth {source}: duplicate image ids")
    known_images = set(image_ids)
    seen_ids: set = set()
    for index, ann in enumerate(data["annotations"]):
        where = f"ground truth {source}: annotation {index} (id {ann.get('id') if isinstance(ann, dict) else '?'}"
        if not isinstance(ann, dict):
            raise EvaluationInputError(f"{where}) is not an object")
        where += f", image_id {ann.get('image_id')})"
        for key in ("id", "image_id", "category_id", "bbox", "area"):
            if key not in ann:
                raise EvaluationInputError(f"{where} has no {key!r}")
        if ann["id"] in seen_ids:
            raise EvaluationInputError(f"{where}: duplicate annotation id")
        seen_ids.add(ann["id"])
        if ann["image_id"] not in known_images:
            raise EvaluationInputError(f"{where} refers to an image that is not in 'images'")
        if not isinstance(ann["bbox"], (list, tuple)) or len(ann["bbox"]) != 4:
            raise EvaluationInputError(f"{where}: 'bbox' must be [x, y, w, h]")
        if iou_type == "keypoints":
            keypoints = ann.get("keypoints")
            if not isinstance(keypoints, (list, tuple)) or len(keypoints) % 3 or not keypoints:
                raise EvaluationInputError(f"{where}: 'keypoints' must be a list of [x, y, v] triples")
            if "num_keypoints" not in ann:
                raise EvaluationInputError(f"{where} has no 'num_keypoints'")
    return data


def load_ground_truth(gt, iou_type: str = "keypoints") -> COCO:
    """A pycocotools ``COCO`` for ``gt`` (path, dict or ``COCO``), validated and built without printing."""
    if isinstance(gt, COCO):
        return gt
    data = load_ground_truth_dict(gt, iou_type)
    coco = COCO()
    # COCOeval reads 'iscrowd' directly for boxes; a missing flag means "not a crowd"
    annotations = [ann if "iscrowd" in ann else {**ann, "iscrowd": 0} for ann in data["annotations"]]
    coco.dataset = {**data, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_results(results, gt: COCO, iou_type: str = "keypoints") -> list[dict]:
    """Result dicts from a path or list, checked against ``gt``; returns shallow copies (pycocotools edits
    the dicts it is given)."""
    source = str(results) if isinstance(results, (str, Path)) else "<in-memory results>"
    records = _read_json(Path(results), "results") if isinstance(results, (str, Path)) else results
    if not isinstance(records, (list, tuple)):
        raise EvaluationInputError(f"results {source}: expected a JSON list of results, got {type(records).__name__}")
    known_images = set(gt.getImgIds())
    field = "keypoints" if iou_type == "keypoints" else "bbox"
    num_values = _keypoint_values(gt) if iou_type == "keypoints" else 4
    out = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise EvaluationInputError(f"results {source}: record {index} is not an object")
        where = f"results {source}: record {index} (image_id {record.get('image_id')})"
        for key in ("image_id", "category_id", field, "score"):
            if key not in record:
                raise EvaluationInputError(f"{where} has no {key!r}")
        if record["image_id"] not in known_images:
            raise EvaluationInputError(f"{where} refers to an image that is not in the ground truth")
        values = record[field]
        if not isinstance(values, (list, tuple, np.ndarray)) or (num_values is not None and len(values) != num_values):
            raise EvaluationInputError(f"{where}: {field!r} must hold {num_values} numbers, got {_length(values)}")
        try:
            finite = all(math.isfinite(float(v)) for v in values) and math.isfinite(float(record["score"]))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise EvaluationInputError(f"{where}: {field!r} and 'score' must be finite numbers")
        out.append(dict(record))
    return out


def _keypoint_values(gt: COCO) -> int | None:
    """Numbers per keypoint result: 3 per keypoint named by the person category or used by the annotations."""
    for category in gt.dataset["categories"]:
        if isinstance(category, dict) and category.get("keypoints"):
            return 3 * len(category["keypoints"])
    annotations = gt.dataset["annotations"]
    return len(annotations[0]["keypoints"]) if annotations else None


def _length(values) -> str:
    return str(len(values)) if hasattr(values, "__len__") else type(values).__name__


def _empty_results(gt: COCO) -> COCO:
    """A results ``COCO`` with no detections (``COCO.loadRes`` cannot build one from an empty list)."""
    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]), "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def _evaluate(
    gt,
    results,
    iou_type: str,
    names: Sequence[str],
    image_ids: Iterable[int] | None,
    sigmas,
    verbose: bool,
) -> dict[str, float]:
    coco_gt = load_ground_truth(gt, iou_type)
    records = load_results(results, coco_gt, iou_type)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_dt = coco_gt.loadRes(records) if records else _empty_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            ids = [int(i) for i in image_ids]
            unknown = sorted(set(ids) - set(coco_gt.getImgIds()))
            if unknown:
                raise EvaluationInputError(f"image_ids not in the ground truth: {unknown[:10]}")
            evaluator.params.imgIds = sorted(set(ids))
        if iou_type == "keypoints":
            evaluator.params.kpt_oks_sigmas = np.asarray(COCO_SIGMAS if sigmas is None else sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(names, evaluator.stats)}


def evaluate_keypoints(
    gt,
    results,
    *,
    image_ids: Iterable[int] | None = None,
    sigmas=None,
    verbose: bool = False,
) -> dict[str, float]:
    """COCO keypoint AP/AR (``COCOeval`` with ``iouType="keypoints"``).

    Args:
        gt: annotation file path, dict or ``COCO``.
        results: results file path or list of ``{"image_id", "category_id", "keypoints", "score"}``.
        image_ids: evaluate only these images (results on other images are ignored).
        sigmas: per-keypoint OKS constants (default :data:`poselib.keypoints.COCO_SIGMAS`).
        verbose: let pycocotools print its progress and summary.

    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}`` as floats in ``[0, 1]``,
        or -1 for an area range without ground truth. Empty results score 0 wherever there is ground truth.
    """
    return _evaluate(gt, results, "keypoints", KEYPOINT_METRICS, image_ids, sigmas, verbose)


def evaluate_boxes(
    gt,
    results,
    *,
    image_ids: Iterable[int] | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """COCO box AP/AR (``iouType="bbox"``); results are ``{"image_id", "category_id", "bbox", "score"}``.

    Returns ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}``.
    """
    return _evaluate(gt, results, "bbox", BOX_METRICS, image_ids, None, verbose)
