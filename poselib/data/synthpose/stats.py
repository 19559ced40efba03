"""What a keypoint file contains, measured: people per image, visibility per keypoint, person sizes, crowds.

Works on any COCO person keypoint file (SynthPose or COCO itself), so the two can be compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike

import numpy as np

from poselib.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS


@dataclass(frozen=True)
class SplitStatistics:
    """Counts of one keypoint file.

    Attributes:
        num_images: images in the file.
        people_per_image: ``(num_images,)`` non-crowd person annotations per image.
        crowd_regions_per_image: ``(num_images,)`` crowd (``iscrowd=1``) annotations per image.
        visibility: ``(17, 3)`` fraction of non-crowd people whose keypoint ``k`` has ``v = 0, 1, 2``.
        person_heights: ``(P,)`` box height of each non-crowd person divided by its image's height.
        with_keypoints: fraction of non-crowd people with at least one labelled keypoint.
    """

    num_images: int
    people_per_image: np.ndarray
    crowd_regions_per_image: np.ndarray
    visibility: np.ndarray
    person_heights: np.ndarray
    with_keypoints: float

    def visibility_table(self):
        """``visibility`` as a pandas DataFrame indexed by keypoint name, columns ``v=0, v=1, v=2``."""
        import pandas as pd

        return pd.DataFrame(self.visibility, index=list(KEYPOINT_NAMES), columns=["v=0", "v=1", "v=2"])


def visible_share(keypoints) -> np.ndarray:
    """Share of each person's labelled keypoints that are visible (``v = 2`` among ``v > 0``).

    ``keypoints``: ``(P, 17, 3)`` or COCO's flat ``(P, 51)``. Returns ``(P,)``; NaN for a person with no labelled
    keypoint.
    """
    v = np.asarray(keypoints, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)[..., 2]
    labelled = (v > 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(labelled > 0, (v == 2).sum(axis=1) / labelled, np.nan)


def split_statistics(ann_path: str | PathLike) -> SplitStatistics:
    """Measure the COCO person keypoint file ``ann_path``."""
    data = json.loads(open(ann_path).read())
    images = {im["id"]: i for i, im in enumerate(data["images"])}
    heights = np.array([im["height"] for im in data["images"]], dtype=np.float64)
    people = np.zeros(len(images), dtype=np.int64)
    crowds = np.zeros(len(images), dtype=np.int64)
    visibility, person_heights = [], []
    for ann in data["annotations"]:
        index = images[ann["image_id"]]
        if ann.get("iscrowd", 0):
            crowds[index] += 1
            continue
        people[index] += 1
        visibility.append(np.asarray(ann["keypoints"]).reshape(NUM_KEYPOINTS, 3)[:, 2])
        person_heights.append(ann["bbox"][3] / heights[index])
    v = np.array(visibility, dtype=np.int64).reshape(-1, NUM_KEYPOINTS)
    fractions = np.stack([(v == j).mean(axis=0) if len(v) else np.zeros(NUM_KEYPOINTS) for j in range(3)], axis=1)
    return SplitStatistics(
        num_images=len(images),
        people_per_image=people,
        crowd_regions_per_image=crowds,
        visibility=fractions,
        person_heights=np.asarray(person_heights),
        with_keypoints=float((v > 0).any(axis=1).mean()) if len(v) else 0.0,
    )
