"""COCO results files: predictions as the list of dicts ``COCOeval`` reads, and back from ground truth.

A keypoint result is ``{"image_id", "category_id", "keypoints": [x1, y1, s1, ...] (51 numbers), "score"}`` and a
box result ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, coordinates in image pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from poselib.evaluation.coco_eval import load_ground_truth_dict
from poselib.keypoints import NUM_KEYPOINTS

PERSON_CATEGORY_ID = 1


def _rows(name: str, value, shape_tail: tuple[int, ...], count: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape[1:] != shape_tail or arr.ndim != 1 + len(shape_tail):
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, shape_tail))}), got {arr.shape}")
    if count is not None and arr.shape[0] != count:
        raise ValueError(f"{name} has {arr.shape[0]} rows but image_ids has {count}")
    return arr


def poses_to_coco_results(
    image_ids, poses, scores, *, category_id: int = PERSON_CATEGORY_ID, decimals: int = 2
) -> list[dict]:
    """Predicted poses as COCO keypoint results.

    ``image_ids (N,)``; ``poses (N, 17, 3)`` ``[x, y, keypoint score]`` in image pixels; ``scores (N,)`` person
    scores. A pose whose keypoint scores are all zero carries no prediction and is left out, so it can never
    rank as a confident detection. Coordinates are rounded to ``decimals`` (sub-pixel, as the files are read
    with float tolerance anyway).
    """
    ids = np.asarray(image_ids).reshape(-1)
    p = _rows("poses", poses, (NUM_KEYPOINTS, 3), ids.size)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size != ids.size:
        raise ValueError(f"scores has {s.size} values but image_ids has {ids.size}")
    if not np.isfinite(p).all() or not np.isfinite(s).all():
        bad = int(np.flatnonzero(~np.isfinite(p).all((1, 2)) | ~np.isfinite(s))[0])
        raise ValueError(f"pose {bad} (image_id {ids[bad]}) has non-finite coordinates or scores")
    emitted = np.flatnonzero((p[..., 2] != 0).any(-1))
    flat = np.round(p.reshape(ids.size, NUM_KEYPOINTS * 3), decimals)
    return [
        {
            "image_id": int(ids[i]),
            "category_id": int(category_id),
            "keypoints": flat[i].tolist(),
            "score": float(s[i]),
        }
        for i in emitted
    ]


def boxes_to_coco_results(
    image_ids, boxes, scores, *, category_id: int = PERSON_CATEGORY_ID, decimals: int = 2
) -> list[dict]:
    """Predicted boxes ``(N, 4)`` COCO ``[x, y, w, h]`` in image pixels with ``scores (N,)`` as COCO box results.

    Boxes with a non-positive width or height are left out (they cannot overlap anything).
    """
    ids = np.asarray(image_ids).reshape(-1)
    b = _rows("boxes", boxes, (4,), ids.size)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size != ids.size:
        raise ValueError(f"scores has {s.size} values but image_ids has {ids.size}")
    emitted = np.flatnonzero((b[:, 2] > 0) & (b[:, 3] > 0))
    b = np.round(b, decimals)
    return [
        {"image_id": int(ids[i]), "category_id": int(category_id), "bbox": b[i].tolist(), "score": float(s[i])}
        for i in emitted
    ]


def write_results(path: str | Path, results: list[dict]) -> Path:
    """Write results as JSON (creating parent folders) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, default=_json_default))
    return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to a results file")


def ground_truth_as_results(gt, iou_type: str = "keypoints") -> list[dict]:
    """The ground truth of an annotation file (path, dict or ``COCO``) written as if it were predictions.

    Crowd regions are never emitted, nor (for keypoints) people without a labelled keypoint: COCOeval ignores
    both, so this is the perfect submission and scores AP 1.0; useful to check a pipeline end to end.

    Scores are ``(1 + area / max_area) / 2``, larger people first. With equal scores, COCOeval's per-area-range
    matching lets a small person's detection, ranked early, claim an overlapping medium person (it prefers
    people inside the range), leaving that person's own detection a false positive: APm would fall below 1.
    Ranking by area makes each in-range person's own detection come before any smaller one.
    """
    if iou_type not in ("keypoints", "bbox"):
        raise ValueError(f"iou_type must be 'keypoints' or 'bbox', got {iou_type!r}")
    data = load_ground_truth_dict(gt, iou_type)
    people = [
        ann for ann in data["annotations"]
        if not ann.get("iscrowd", 0) and (iou_type == "bbox" or _num_labelled(ann) > 0)
    ]
    areas = np.array([float(ann["area"]) for ann in people])
    largest = areas.max() if areas.size and areas.max() > 0 else 1.0
    out = []
    for ann, area in zip(people, areas):
        field = "keypoints" if iou_type == "keypoints" else "bbox"
        out.append({
            "image_id": ann["image_id"],
            "category_id": ann["category_id"],
            field: list(ann[field]),
            "score": float((1.0 + max(area, 0.0) / largest) / 2),
        })
    return out


def _num_labelled(ann: dict) -> int:
    """COCOeval's count of labelled keypoints: the ``num_keypoints`` field, else the ``v > 0`` entries."""
    if "num_keypoints" in ann:
        return int(ann["num_keypoints"])
    return int((np.asarray(ann.get("keypoints", []), dtype=np.float64)[2::3] > 0).sum())
