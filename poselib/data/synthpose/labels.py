"""COCO labels of a drawn scene, read off its label map.

A keypoint inside the image is visible (``v=2``) when the label-map pixel under it belongs to the same person
and to a body part adjacent to that keypoint (an elbow to the upper arm or forearm, an eye to the head), and,
for face features and for shoulders and hips covered by their own torso, when the point faces the camera.
Otherwise it is occluded (``v=1``): by another person, by a foreground object, or by the person's own body.
Keypoints outside the image are unlabelled (``v=0``, ``x=y=0``). Masks, boxes and areas are the person's
visible pixels in the label map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pycocotools import mask as mask_utils

from poselib.data.synthpose.figure import FACE_VISIBLE_MIN, SIDE_VISIBLE_MIN
from poselib.data.synthpose.render import PART, PART_BITS, PART_MASK, FigureDrawing
from poselib.keypoints import NUM_KEYPOINTS, PERSON_CATEGORY

if TYPE_CHECKING:
    from poselib.data.synthpose.scene import SceneSpec


def _allowed_parts() -> np.ndarray:
    """``(17, PART_MASK + 1)`` bool: which label-map parts may show each keypoint."""
    table = np.zeros((NUM_KEYPOINTS, PART_MASK + 1), dtype=bool)
    torso = ("chest", "chest_mark")
    for k in range(5):
        table[k, PART["head"]] = True
    for side, (sh, el, wr, hip, knee, ankle) in (("left", (5, 7, 9, 11, 13, 15)), ("right", (6, 8, 10, 12, 14, 16))):
        for k, parts in (
            (sh, (*torso, f"{side}_upper_arm")),
            (el, (f"{side}_upper_arm", f"{side}_forearm")),
            (wr, (f"{side}_forearm", f"{side}_hand")),
            (hip, ("hips", "chest", f"{side}_thigh")),
            (knee, (f"{side}_thigh", f"{side}_shank")),
            (ankle, (f"{side}_shank", f"{side}_foot")),
        ):
            table[k, [PART[p] for p in parts]] = True
    return table


ALLOWED_PARTS: np.ndarray = _allowed_parts()
_TORSO_PARTS = np.zeros(PART_MASK + 1, dtype=bool)
_TORSO_PARTS[[PART["chest"], PART["chest_mark"], PART["hips"]]] = True
_FACING_MIN = np.full(NUM_KEYPOINTS, -np.inf)
_FACING_MIN[:5] = FACE_VISIBLE_MIN


def keypoint_visibility(label_map: np.ndarray, person_ids: np.ndarray, keypoints: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """COCO visibility ``(P, 17)`` (0, 1 or 2) of people ``person_ids (P,)`` with pixel positions
    ``keypoints (P, 17, 2)`` and camera facing ``facing (P, 17)`` (see the module docstring)."""
    h, w = label_map.shape
    x, y = keypoints[..., 0], keypoints[..., 1]
    inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    xi = np.clip(np.floor(x + 0.5).astype(np.int64), 0, w - 1)
    yi = np.clip(np.floor(y + 0.5).astype(np.int64), 0, h - 1)
    lab = label_map[yi, xi].astype(np.int64)
    part = lab & PART_MASK
    own = (lab >> PART_BITS) == np.asarray(person_ids)[:, None]
    allowed = ALLOWED_PARTS[np.arange(NUM_KEYPOINTS)[None, :], part]
    turned_away = facing <= _FACING_MIN
    side = np.zeros(NUM_KEYPOINTS, dtype=bool)
    side[[5, 6, 11, 12]] = True
    # a shoulder or hip can sit on its own torso's pixels yet lie on the far side of the body
    hidden_by_torso = side & _TORSO_PARTS[part] & (facing < SIDE_VISIBLE_MIN)
    visible = own & allowed & ~turned_away & ~hidden_by_torso
    return np.where(inside, np.where(visible, 2, 1), 0).astype(np.int64)


def _rle_masks(label_map: np.ndarray, ids: list[int]) -> list[dict]:
    """COCO RLEs of the pixels owned by each of ``ids``."""
    owner = label_map >> PART_BITS
    # column-major, as pycocotools wants it, filled one contiguous slice per id
    masks = np.empty(label_map.shape + (len(ids),), dtype=np.uint8, order="F")
    for j, gid in enumerate(ids):
        np.equal(owner, gid, out=masks[:, :, j], casting="unsafe")
    return mask_utils.encode(masks)


def annotate(label_map: np.ndarray, spec: "SceneSpec", drawings: list[FigureDrawing]) -> list[dict]:
    """COCO annotations (without ``id`` and ``image_id``) of a drawn scene, in drawing order.

    One annotation per visible person, and one crowd region (``iscrowd=1``, no keypoints) per crowd group or
    per person marked ``crowd`` (shorter than the config's ``crowd_height``). A person whose visible pixels fall
    below ``spec.min_visible_fraction`` of the pixels they had when drawn keeps a mask but gets no keypoints.
    People with no visible pixel get no annotation.
    """
    ids: list[int] = []
    crowd_of: dict[int, bool] = {}
    for person in spec.people:
        if person.group not in crowd_of:
            ids.append(person.group)
            crowd_of[person.group] = person.crowd
    if not ids:
        return []
    rles = _rle_masks(label_map, ids)
    areas = mask_utils.area(rles)
    boxes = mask_utils.toBbox(rles)

    individuals = [(p, d) for p, d in zip(spec.people, drawings) if not p.crowd]
    visibility = {}
    if individuals:
        v = keypoint_visibility(
            label_map,
            np.array([p.group for p, _ in individuals]),
            np.stack([d.keypoints for _, d in individuals]),
            np.stack([d.facing for _, d in individuals]),
        )
        visibility = {p.group: (d, v[j]) for j, (p, d) in enumerate(individuals)}

    out = []
    for gid, rle, area, box in zip(ids, rles, areas, boxes):
        if area == 0:
            continue
        keypoints = np.zeros((NUM_KEYPOINTS, 3))
        if not crowd_of[gid]:
            drawing, vis = visibility[gid]
            if area >= spec.min_visible_fraction * drawing.pixels:
                keypoints[:, :2] = np.where(vis[:, None] > 0, np.round(drawing.keypoints, 2), 0.0)
                keypoints[:, 2] = vis
        flat = [int(value) if i % 3 == 2 else value for i, value in enumerate(keypoints.ravel().tolist())]
        out.append({
            "category_id": PERSON_CATEGORY["id"],
            "iscrowd": int(crowd_of[gid]),
            "num_keypoints": int(np.count_nonzero(keypoints[:, 2])),
            "keypoints": flat,
            "bbox": [float(b) for b in box],
            "area": float(area),
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        })
    return out
