"""The COCO person keypoint definition shared by data, codecs, evaluation and figures.

Indices are 0-based everywhere in poselib (COCO's JSON ``skeleton`` is 1-based; :data:`COCO_SKELETON_1BASED`
keeps that form for writing annotation files).
"""

from __future__ import annotations

import numpy as np

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_KEYPOINTS: int = len(KEYPOINT_NAMES)

#: Limbs as 0-based keypoint index pairs (COCO's 19 skeleton edges).
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
COCO_SKELETON_1BASED: list[list[int]] = [[a + 1, b + 1] for a, b in SKELETON]

#: Left/right pairs swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def _flip_index() -> tuple[int, ...]:
    index = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS:
        index[a], index[b] = b, a
    return tuple(index)


#: ``FLIP_INDEX[k]`` is the keypoint that keypoint ``k`` becomes after a horizontal flip.
FLIP_INDEX: tuple[int, ...] = _flip_index()

#: Per-keypoint OKS constants from the COCO keypoint evaluation (pycocotools ``kpt_oks_sigmas``).
COCO_SIGMAS: np.ndarray = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0

UPPER_BODY: tuple[int, ...] = tuple(range(0, 11))
LOWER_BODY: tuple[int, ...] = tuple(range(11, 17))

#: Colours for drawing, one per limb group: left side, right side, centre/face.
LEFT_KEYPOINTS: tuple[int, ...] = (1, 3, 5, 7, 9, 11, 13, 15)
RIGHT_KEYPOINTS: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16)

#: The COCO ``categories`` entry for people, as written into annotation files.
PERSON_CATEGORY: dict = {
    "id": 1,
    "name": "person",
    "supercategory": "person",
    "keypoints": list(KEYPOINT_NAMES),
    "skeleton": COCO_SKELETON_1BASED,
}
