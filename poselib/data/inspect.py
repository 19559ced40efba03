"""Counts and problems of a COCO keypoint file and its images (``poselib data inspect``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from poselib.data.coco import Problem, check_image_files, keypoints_array, load_coco_keypoints


@dataclass
class InspectReport:
    """What :func:`inspect_coco` found.

    Counts describe the records that passed validation: ``people`` are non-crowd person annotations,
    ``crowd_regions`` crowd annotations, ``people_with_keypoints`` people with at least one labelled keypoint,
    ``keypoints_by_visibility`` the number of the people's keypoints with ``v = 0, 1, 2``.
    ``images_checked`` is how many image files were opened (0 without an image folder).
    """

    ann_path: Path
    image_dir: Path | None
    images: int
    images_with_people: int
    people: int
    crowd_regions: int
    people_with_keypoints: int
    keypoints_by_visibility: dict[int, int]
    images_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def format(self, max_problems: int | None = 50) -> str:
        """The report as text: counts, problems by kind, then every problem (at most ``max_problems``)."""
        v = self.keypoints_by_visibility
        lines = [
            f"{self.ann_path}",
            f"  images                 {self.images}",
            f"  images with people     {self.images_with_people}",
            f"  people (non-crowd)     {self.people}",
            f"  crowd regions          {self.crowd_regions}",
            f"  people with keypoints  {self.people_with_keypoints}",
            f"  keypoints v=2 visible  {v[2]}",
            f"  keypoints v=1 occluded {v[1]}",
            f"  keypoints v=0 absent   {v[0]}",
        ]
        if self.image_dir is not None:
            lines.append(f"  image files checked    {self.images_checked} in {self.image_dir}")
        if self.ok:
            lines.append("no problems found")
            return "\n".join(lines)
        fatal = sum(p.fatal for p in self.problems)
        lines.append(f"{len(self.problems)} problem(s), {fatal} making a record unusable:")
        for kind, count in sorted(Counter(p.kind for p in self.problems).items()):
            lines.append(f"  {kind:<18} {count}")
        shown = self.problems if max_problems is None else self.problems[:max_problems]
        lines.extend(f"{'error' if p.fatal else 'warning'}: {p}" for p in shown)
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


def inspect_coco(
    ann_path: str | PathLike,
    image_dir: str | PathLike | None = None,
    *,
    decode: bool = True,
    progress: bool = True,
) -> InspectReport:
    """Validate a keypoint file and, given ``image_dir``, every image it lists (opened and decoded when
    ``decode``, else only checked for existence), with a tqdm bar when ``progress``.

    Malformed JSON or a file that is not a COCO file raises :class:`~poselib.data.errors.DataError`; every
    other problem is collected in the report.
    """
    index = load_coco_keypoints(ann_path, image_dir, strict=False)
    people = [a for anns in index.people.values() for a in anns]
    visibility = np.zeros(3, dtype=np.int64)
    with_keypoints = 0
    for ann in people:
        v = keypoints_array(ann)[:, 2].astype(np.int64)
        visibility += np.bincount(v, minlength=3)[:3]
        with_keypoints += int((v > 0).any())
    report = InspectReport(
        ann_path=index.path,
        image_dir=index.image_dir,
        images=len(index.images),
        images_with_people=sum(1 for anns in index.people.values() if anns),
        people=len(people),
        crowd_regions=sum(len(anns) for anns in index.crowds.values()),
        people_with_keypoints=with_keypoints,
        keypoints_by_visibility={k: int(visibility[k]) for k in range(3)},
        problems=list(index.problems),
    )
    if index.image_dir is not None:
        report.problems.extend(check_image_files(index, decode=decode, progress=progress))
        report.images_checked = len(index.images)
    return report


__all__ = ["InspectReport", "inspect_coco"]
