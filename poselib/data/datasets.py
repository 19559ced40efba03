"""Torch data sets for the two families of multi-person pose estimation.

:class:`TopDownDataset` gives one sample per person: a crop around its box (ground truth or a detector's),
warped to a fixed input size. :class:`BottomUpDataset` gives one sample per image: the whole image fitted into
a square input with every person's keypoints and the masks the losses need.

Both draw each sample's randomness from ``numpy.random.default_rng((seed, epoch, index))``, never from a
global generator, so a sample depends only on those three numbers and resumed training is exact; call
``set_epoch`` at the start of each epoch. An optional ``encoder`` (a method's target builder) runs on the
finished sample inside the loader's worker processes.

A missing or corrupt image raises :class:`~poselib.data.errors.DataError` naming the image file, the image id
and the annotation file. With ``skip_bad=True`` the data set instead logs one warning per bad file, serves the
next sample in its place and counts the substitution in ``skipped`` (per process: each loader worker counts
its own).

Decoded images stay in memory up to ``image_cache_mb`` per data set (and per loader process), so the images of
the ``cpu`` preset's data are decoded once per run rather than once per person and epoch.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from poselib.data.coco import CocoIndex, keypoints_array, load_coco_keypoints, segmentation_mask
from poselib.data.errors import DataError
from poselib.data.transforms import (
    AugmentConfig,
    augmented_affine,
    half_body_box,
    sample_augmentation,
    warp_image,
    warp_keypoints,
    warp_mask,
)
from poselib.geometry import apply_affine, box_to_center_size, invert_affine
from poselib.imaging import to_tensor
from poselib.keypoints import NUM_KEYPOINTS

logger = logging.getLogger(__name__)

Encoder = Callable[[dict], dict]

#: Default memory budget for decoded images a data set keeps (per process: each loader worker has its own).
IMAGE_CACHE_MB: float = 512.0


class _PoseDataset(Dataset):
    """Shared plumbing: the annotation index, epochs, per-sample generators, bad-sample policy, encoder."""

    def __init__(
        self,
        ann_path: str | PathLike,
        image_dir: str | PathLike,
        *,
        augment: AugmentConfig | None,
        encoder: Encoder | None,
        seed: int,
        skip_bad: bool,
        image_cache_mb: float = IMAGE_CACHE_MB,
    ) -> None:
        self.ann_path = Path(ann_path)
        self.image_dir = Path(image_dir)
        self.augment = augment
        self.encoder = encoder
        self.seed = int(seed)
        self.skip_bad = skip_bad
        self.epoch = 0
        self.skipped = 0
        self._warned: set[str] = set()
        self.image_cache_bytes = int(image_cache_mb * 2**20)
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self.coco: CocoIndex = load_coco_keypoints(self.ann_path, self.image_dir, strict=not skip_bad)
        fatal = [p for p in self.coco.problems if p.fatal]
        if fatal:
            logger.warning("%s: skipped %d bad record(s) (skip_bad=True); first: %s", self.ann_path, len(fatal), fatal[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random augmentation ``__getitem__`` reproduces."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The generator behind sample ``index`` of the current epoch."""
        return np.random.default_rng((self.seed, self.epoch, index))

    def read_image(self, image_id: int) -> np.ndarray:
        """The decoded RGB ``uint8 (H, W, 3)`` image, read-only; kept in memory (least recently used out first)
        while the decoded images fit ``image_cache_mb``: a top-down epoch reads each image once per person, and
        decoding costs about a quarter of a sample's loading time."""
        image = self._images.get(image_id)
        if image is not None:
            self._images.move_to_end(image_id)
            return image
        image = self.coco.read_image(image_id)
        image.flags.writeable = False
        if image.nbytes <= self.image_cache_bytes:
            self._images[image_id] = image
            self._cached_bytes += image.nbytes
            while self._cached_bytes > self.image_cache_bytes:
                _, evicted = self._images.popitem(last=False)
                self._cached_bytes -= evicted.nbytes
        return image

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index {index} out of range for a data set of {length} samples")
        index %= length
        for attempt in range(length):
            current = (index + attempt) % length
            try:
                sample = self._load(current, self.sample_rng(current))
            except DataError as exc:
                if not self.skip_bad:
                    raise
                self.skipped += 1
                key = exc.path or str(exc)
                if key not in self._warned:
                    self._warned.add(key)
                    logger.warning("%s; serving the next sample instead (skip_bad=True)", exc)
                continue
            return self.encoder(sample) if self.encoder is not None else sample
        raise DataError(f"{self.ann_path}: every sample failed to load; see the warnings above", path=self.ann_path)


# ------------------------------------------------------------------------------------------------ top-down


@dataclass(frozen=True)
class _Person:
    image_id: int
    ann_id: int
    box: np.ndarray  # (4,) xywh, clipped to the image
    score: float
    area: float
    keypoints: np.ndarray  # (17, 3) float32 image coordinates


def _clip_box(box: Sequence[float], width: int, height: int) -> np.ndarray | None:
    """Clip an ``[x, y, w, h]`` box, taken as covering pixel indices ``x .. x+w-1``, to the image; None if
    nothing is left (Simple Baselines' box cleaning)."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(width - 1.0, x + max(0.0, w - 1.0)), min(height - 1.0, y + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1 + 1.0, y2 - y1 + 1.0], dtype=np.float32)


class TopDownDataset(_PoseDataset):
    """One sample per person, cropped around its box and warped to ``input_size = (H, W)``.

    ``boxes="gt"`` uses the non-crowd people with at least ``min_keypoints`` labelled keypoints; a path uses a
    COCO detections file (``[{image_id, category_id, bbox, score}, ...]``), keeping person boxes scoring at least
    ``score_threshold``. Boxes are clipped to their image; one left empty is dropped. The region is the box
    widened to ``aspect_ratio`` (w/h, default ``W/H``) times ``padding``, then augmented by ``augment``.

    A sample is a dict: ``image`` float32 ``(3, H, W)`` (ImageNet-normalised); ``keypoints`` float32 ``(17, 3)``
    in crop pixels, ``v`` in {0, 1, 2} (zeros for detections); ``crop_to_image`` float32 ``(2, 3)`` mapping crop
    coordinates to original image coordinates; ``image_id``; ``ann_id`` (-1 for detections); ``box`` float32
    ``(4,)`` xywh in the image; ``score`` (1.0 for ground truth); ``area`` (the annotation's area, or ``w*h`` of
    a detection). The default torch collate stacks it.
    """

    def __init__(
        self,
        ann_path: str | PathLike,
        image_dir: str | PathLike,
        *,
        input_size: tuple[int, int] = (256, 192),
        boxes: str | PathLike = "gt",
        aspect_ratio: float | None = None,
        padding: float = 1.25,
        augment: AugmentConfig | None = None,
        encoder: Encoder | None = None,
        seed: int = 0,
        min_keypoints: int = 1,
        score_threshold: float = 0.0,
        skip_bad: bool = False,
        image_cache_mb: float = IMAGE_CACHE_MB,
    ) -> None:
        super().__init__(
            ann_path, image_dir, augment=augment, encoder=encoder, seed=seed, skip_bad=skip_bad, image_cache_mb=image_cache_mb
        )
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.aspect_ratio = float(aspect_ratio) if aspect_ratio is not None else self.input_size[1] / self.input_size[0]
        self.padding = float(padding)
        if isinstance(boxes, str) and boxes == "gt":
            self.people = self._ground_truth(min_keypoints)
        else:
            self.people = self._detections(Path(boxes), score_threshold)

    def _ground_truth(self, min_keypoints: int) -> list[_Person]:
        people = []
        for image_id in self.coco.image_ids:
            image = self.coco.images[image_id]
            for ann in self.coco.people[image_id]:
                keypoints = keypoints_array(ann)
                if int((keypoints[:, 2] > 0).sum()) < min_keypoints:
                    continue
                box = _clip_box(ann["bbox"], image["width"], image["height"])
                if box is None:
                    continue
                area = float(ann.get("area", box[2] * box[3]))
                people.append(_Person(image_id, int(ann["id"]), box, 1.0, area, keypoints))
        return people

    def _detections(self, path: Path, score_threshold: float) -> list[_Person]:
        try:
            detections = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: detections file not found", path=path) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}", path=path) from None
        if not isinstance(detections, list):
            raise DataError(f"{path}: expected a JSON list of detections, found a {type(detections).__name__}", path=path)
        empty = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
        people, bad = [], []
        for i, det in enumerate(detections):
            problem = self._detection_problem(det)
            if problem is not None:
                image_id = det.get("image_id") if isinstance(det, dict) else None
                error = DataError(f"{path}: detection #{i} (image {image_id}): {problem}", path=path, image_id=image_id)
                if not self.skip_bad:
                    raise error
                bad.append(error)
                continue
            if det["category_id"] != self.coco.person_category_id or det["score"] < score_threshold:
                continue
            image = self.coco.images[det["image_id"]]
            box = _clip_box(det["bbox"], image["width"], image["height"])
            if box is not None:
                people.append(_Person(det["image_id"], -1, box, float(det["score"]), float(box[2] * box[3]), empty))
        if bad:
            logger.warning("%s: skipped %d bad detection(s) (skip_bad=True); first: %s", path, len(bad), bad[0])
        return people

    def _detection_problem(self, det: object) -> str | None:
        if not isinstance(det, dict):
            return f"is a {type(det).__name__}, expected an object"
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if missing:
            return f"missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
        if det["image_id"] not in self.coco.images:
            return f"image id {det['image_id']!r} is not in {self.ann_path}"
        box = det["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            return f"bbox must be 4 numbers [x, y, w, h], found {box!r}"
        if not (np.isfinite(box).all() and box[2] > 0 and box[3] > 0):
            return f"bbox {box} has zero, negative or non-finite size"
        if not isinstance(det["score"], (int, float)) or not np.isfinite(det["score"]):
            return f"score must be a finite number, found {det['score']!r}"
        return None

    def __len__(self) -> int:
        return len(self.people)

    def _load(self, index: int, rng: np.random.Generator) -> dict:
        person = self.people[index]
        image = self.read_image(person.image_id)
        center, size = box_to_center_size(person.box, self.aspect_ratio, self.padding)
        params = None
        if self.augment is not None:
            params = sample_augmentation(rng, self.augment)
            labelled = int((person.keypoints[:, 2] > 0).sum())
            if params["half_body"] and labelled > self.augment.half_body_min_keypoints:
                half = half_body_box(person.keypoints, rng, self.aspect_ratio)
                if half is not None:
                    center, size = half
        matrix = augmented_affine(center, size, self.input_size, params)
        flip = bool(params is not None and params["flip"])
        crop = warp_image(image, matrix, self.input_size)
        keypoints = warp_keypoints(person.keypoints, matrix, self.input_size, flip=flip)
        return {
            "image": to_tensor(crop),
            "keypoints": torch.from_numpy(keypoints),
            "crop_to_image": torch.from_numpy(invert_affine(matrix).astype(np.float32)),
            "image_id": person.image_id,
            "ann_id": person.ann_id,
            "box": torch.from_numpy(person.box.copy()),
            "score": person.score,
            "area": person.area,
        }


# ----------------------------------------------------------------------------------------------- bottom-up


class BottomUpDataset(_PoseDataset):
    """One sample per image, the whole image fitted into a square ``input_size`` x ``input_size`` input,
    keeping its aspect ratio (centred, zero padding), then augmented by ``augment`` (scale, rotation, flip,
    translation; see :meth:`AugmentConfig.bottom_up`).

    A sample is a dict: ``image`` float32 ``(3, S, S)``; ``keypoints`` float32 ``(P, 17, 3)`` in input pixels for
    the ``P >= 0`` non-crowd people (those without labelled keypoints included, all ``v = 0``); ``boxes`` float32
    ``(P, 4)`` xywh, the box's corners moved as points and clipped to the input; ``ignore_mask`` float32
    ``(S, S)``, 1 over crowd regions and over people without labelled keypoints (the loss must not call those
    pixels background); ``person_mask`` float32 ``(S, S)``, the union of the non-crowd people's segmentations;
    ``instance_masks`` uint8 ``(P, S, S)`` with ``with_instance_masks``; ``input_to_image`` float32 ``(2, 3)``;
    ``image_id``. Segmentations may be polygons or RLE; a person without one is covered by its box. Batch
    samples with :func:`collate_bottomup`. ``skip_empty`` leaves out images with no annotation at all.
    """

    def __init__(
        self,
        ann_path: str | PathLike,
        image_dir: str | PathLike,
        *,
        input_size: int = 512,
        augment: AugmentConfig | None = None,
        encoder: Encoder | None = None,
        seed: int = 0,
        with_instance_masks: bool = False,
        skip_bad: bool = False,
        skip_empty: bool = False,
        image_cache_mb: float = IMAGE_CACHE_MB,
    ) -> None:
        super().__init__(
            ann_path, image_dir, augment=augment, encoder=encoder, seed=seed, skip_bad=skip_bad, image_cache_mb=image_cache_mb
        )
        self.input_size = int(input_size)
        self.with_instance_masks = with_instance_masks
        self.image_ids = [
            i for i in self.coco.image_ids if not skip_empty or self.coco.people[i] or self.coco.crowds[i]
        ]

    def __len__(self) -> int:
        return len(self.image_ids)

    def _load(self, index: int, rng: np.random.Generator) -> dict:
        image_id = self.image_ids[index]
        record = self.coco.images[image_id]
        image = self.read_image(image_id)
        height, width = image.shape[:2]
        if (width, height) != (record["width"], record["height"]):
            raise DataError(
                f"{self.coco.image_path(image_id)}: image {image_id} of {self.ann_path}: the file is {width}x{height} "
                f"(WxH) but the record says {record['width']}x{record['height']}",
                path=self.coco.image_path(image_id),
                image_id=image_id,
            )
        side = self.input_size
        people = self.coco.people[image_id]
        params = sample_augmentation(rng, self.augment) if self.augment is not None else None
        center = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        matrix = augmented_affine(center, np.array([max(width, height)] * 2, dtype=np.float64), (side, side), params)
        flip = bool(params is not None and params["flip"])

        keypoints = np.zeros((len(people), NUM_KEYPOINTS, 3), dtype=np.float32)
        for i, ann in enumerate(people):
            keypoints[i] = keypoints_array(ann)
        instance = [_person_mask(a, height, width) for a in people]
        unlabelled = [m for m, k in zip(instance, keypoints) if not (k[:, 2] > 0).any()]
        crowd = [_person_mask(a, height, width) for a in self.coco.crowds[image_id]]
        masks = np.zeros((height, width, 2), dtype=np.uint8)
        for m in crowd + unlabelled:
            masks[..., 0] |= m
        for m in instance:
            masks[..., 1] |= m
        warped = warp_mask(masks, matrix, (side, side), mode="area") > 0.5

        sample = {
            "image": to_tensor(warp_image(image, matrix, (side, side))),
            "keypoints": torch.from_numpy(warp_keypoints(keypoints, matrix, (side, side), flip=flip)),
            "boxes": torch.from_numpy(_warp_boxes([a["bbox"] for a in people], matrix, side)),
            "ignore_mask": torch.from_numpy(warped[..., 0].astype(np.float32)),
            "person_mask": torch.from_numpy(warped[..., 1].astype(np.float32)),
            "input_to_image": torch.from_numpy(invert_affine(matrix).astype(np.float32)),
            "image_id": image_id,
        }
        if self.with_instance_masks:
            if instance:
                stacked = warp_mask(np.stack(instance, axis=-1), matrix, (side, side), mode="nearest")
                sample["instance_masks"] = torch.from_numpy(np.ascontiguousarray(stacked.transpose(2, 0, 1)))
            else:
                sample["instance_masks"] = torch.zeros((0, side, side), dtype=torch.uint8)
        return sample


def _person_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """An annotation's ``uint8 (H, W)`` mask: its segmentation, or its box when it has none."""
    segmentation = ann.get("segmentation")
    if segmentation:
        return segmentation_mask(segmentation, height, width)
    mask = np.zeros((height, width), dtype=np.uint8)
    x, y, w, h = ann["bbox"]
    x1, y1 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x2, y2 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    mask[y1:y2, x1:x2] = 1
    return mask


def _warp_boxes(boxes: list, matrix: np.ndarray, side: int) -> np.ndarray:
    """Move ``[x, y, w, h]`` boxes by ``matrix``: the axis-aligned box around the four moved corners, clipped to
    the input's span ``[-0.5, side-0.5]``. Returns float32 ``(P, 4)``."""
    if not boxes:
        return np.zeros((0, 4), dtype=np.float32)
    b = np.asarray(boxes, dtype=np.float64)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    corners = np.stack([np.stack(c, axis=-1) for c in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))], axis=1)
    moved = np.clip(apply_affine(corners, matrix), -0.5, side - 0.5)
    low, high = moved.min(axis=1), moved.max(axis=1)
    return np.concatenate([low, high - low], axis=1).astype(np.float32)


def collate_bottomup(
    samples: list[dict],
    pad_keys: Sequence[str] = ("keypoints", "boxes", "instance_masks"),
) -> dict:
    """Batch :class:`BottomUpDataset` samples.

    Per-person tensors (``pad_keys``, first dimension ``P``) are padded with zeros to the largest ``P`` in the
    batch, giving ``(B, P_max, ...)``; everything else goes through torch's default collate (images ``(B, 3, S,
    S)``, masks ``(B, S, S)``, ...). Adds ``num_people`` int64 ``(B,)`` (the real ``P`` of each sample).
    """
    if not samples:
        raise ValueError("collate_bottomup needs at least one sample")
    counts = [int(s["keypoints"].shape[0]) for s in samples]
    most = max(counts)
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in pad_keys:
            padded = values[0].new_zeros((len(values), most, *values[0].shape[1:]))
            for i, value in enumerate(values):
                padded[i, : value.shape[0]] = value
            batch[key] = padded
        else:
            batch[key] = default_collate(values)
    batch["num_people"] = torch.tensor(counts, dtype=torch.int64)
    return batch


__all__ = ["BottomUpDataset", "Encoder", "TopDownDataset", "collate_bottomup"]
