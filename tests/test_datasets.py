"""Top-down and bottom-up data sets on a tiny COCO keypoint file written here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from poselib.data.datasets import BottomUpDataset, TopDownDataset, collate_bottomup
from poselib.data.errors import DataError
from poselib.data.transforms import AugmentConfig
from poselib.geometry import apply_affine
from poselib.imaging import to_uint8
from poselib.keypoints import FLIP_INDEX


def gradient_image(height: int, width: int) -> np.ndarray:
    """RGB image whose red channel is ``2x`` and green ``2y``: bilinear sampling of it is exact."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([2 * xs, 2 * ys, np.full_like(xs, 128)], axis=-1).astype(np.uint8)


def write_dataset(folder: Path) -> tuple[Path, Path, dict]:
    """Image 1 (120x90): person 11 (17 keypoints), person 12 (no keypoints), crowd 13 (compressed RLE).
    Image 2 (60x100): person 21 (5 keypoints, no segmentation)."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True)
    for name, (h, w) in {"one.png": (90, 120), "two.png": (100, 60)}.items():
        cv2.imwrite(str(image_dir / name), cv2.cvtColor(gradient_image(h, w), cv2.COLOR_RGB2BGR))

    rng = np.random.default_rng(0)
    kp11 = np.zeros((17, 3))
    kp11[:, 0] = rng.uniform(25, 65, 17)
    kp11[:, 1] = rng.uniform(15, 75, 17)
    kp11[:, 2] = 2
    kp11[[3, 4], 2] = 1
    kp21 = np.zeros((17, 3))
    kp21[:5] = [[30, 20, 2], [28, 18, 2], [32, 18, 2], [26, 19, 1], [34, 19, 2]]
    crowd = np.zeros((90, 120), np.uint8)
    crowd[10:31, 90:111] = 1
    rle = mask_utils.encode(np.asfortranarray(crowd))
    data = {
        "images": [
            {"id": 1, "file_name": "one.png", "width": 120, "height": 90},
            {"id": 2, "file_name": "two.png", "width": 60, "height": 100},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [20, 10, 50, 70], "area": 2500.0,
             "num_keypoints": 17, "keypoints": kp11.ravel().tolist(), "segmentation": [[20, 10, 70, 10, 70, 80, 20, 80]]},
            {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [80, 50, 20, 20], "area": 400.0,
             "num_keypoints": 0, "keypoints": [0] * 51, "segmentation": [[80, 50, 100, 50, 100, 70, 80, 70]]},
            {"id": 13, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [90, 10, 21, 21], "area": 441.0,
             "num_keypoints": 0, "keypoints": [0] * 51,
             "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}},
            {"id": 21, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [20, 10, 20, 40], "area": 800.0,
             "num_keypoints": 5, "keypoints": kp21.ravel().tolist()},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    ann_path = folder / "ann.json"
    ann_path.write_text(json.dumps(data))
    return ann_path, image_dir, data


@pytest.fixture()
def tiny(tmp_path):
    return write_dataset(tmp_path)


def annotation_keypoints(data: dict, ann_id: int) -> np.ndarray:
    ann = next(a for a in data["annotations"] if a["id"] == ann_id)
    return np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)


# ------------------------------------------------------------------------------------------------ top-down


def test_top_down_samples_and_default_collate(tiny):
    ann_path, image_dir, _ = tiny
    dataset = TopDownDataset(ann_path, image_dir, input_size=(64, 48))
    assert len(dataset) == 2  # person 12 has no keypoints, the crowd is not a sample
    assert dataset.ann_path == ann_path and sorted(dataset.coco.images) == [1, 2]
    sample = dataset[0]
    assert sample["image"].shape == (3, 64, 48) and sample["image"].dtype == torch.float32
    assert sample["keypoints"].shape == (17, 3) and sample["keypoints"].dtype == torch.float32
    assert sample["crop_to_image"].shape == (2, 3) and sample["box"].shape == (4,)
    assert (sample["image_id"], sample["ann_id"], sample["score"], sample["area"]) == (1, 11, 1.0, 2500.0)
    assert set(sample["keypoints"][:, 2].tolist()) == {1.0, 2.0}
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, 64, 48) and batch["ann_id"].tolist() == [11, 21]

    assert len(TopDownDataset(ann_path, image_dir, input_size=(64, 48), min_keypoints=6)) == 1


@pytest.mark.parametrize("epoch", range(4))
def test_crop_to_image_maps_crop_keypoints_and_pixels_back(tiny, epoch):
    ann_path, image_dir, data = tiny
    config = AugmentConfig(scale_range=(1.3, 1.35), flip_prob=0.5, half_body_prob=0.0)
    dataset = TopDownDataset(ann_path, image_dir, input_size=(64, 48), augment=config, seed=1)
    dataset.set_epoch(epoch)
    for index in range(len(dataset)):
        sample = dataset[index]
        matrix = sample["crop_to_image"].double().numpy()
        flipped = np.linalg.det(matrix[:, :2]) < 0
        original = annotation_keypoints(data, sample["ann_id"])
        if flipped:
            original = original[list(FLIP_INDEX)]
        crop_kp = sample["keypoints"].double().numpy()
        kept = crop_kp[:, 2] > 0
        assert kept.sum() == (original[:, 2] > 0).sum(), "the enlarged region keeps every keypoint"
        np.testing.assert_allclose(apply_affine(crop_kp[kept, :2], matrix), original[kept, :2], atol=1e-3)
        np.testing.assert_array_equal(crop_kp[kept, 2], original[kept, 2])

        # the crop's pixels come from where crop_to_image says (red = 2x, green = 2y in the image)
        crop = to_uint8(sample["image"]).astype(np.float64)
        rows, cols = np.mgrid[0:64:7, 0:48:7]
        image_xy = apply_affine(np.stack([cols.ravel(), rows.ravel()], -1).astype(np.float64), matrix)
        height, width = (90, 120) if sample["image_id"] == 1 else (100, 60)
        inside = (image_xy[:, 0] > 0) & (image_xy[:, 0] < width - 1) & (image_xy[:, 1] > 0) & (image_xy[:, 1] < height - 1)
        assert inside.sum() > 10
        np.testing.assert_allclose(crop[rows.ravel(), cols.ravel(), 0][inside], 2 * image_xy[inside, 0], atol=1.6)
        np.testing.assert_allclose(crop[rows.ravel(), cols.ravel(), 1][inside], 2 * image_xy[inside, 1], atol=1.6)


def test_samples_depend_only_on_seed_epoch_and_index(tiny):
    ann_path, image_dir, _ = tiny

    def make(seed):
        return TopDownDataset(ann_path, image_dir, input_size=(64, 48), augment=AugmentConfig(), seed=seed)

    a, b = make(5), make(5)
    first = a[1]
    a[0]  # other samples drawn in between change nothing
    for key in ("image", "keypoints", "crop_to_image"):
        assert torch.equal(first[key], b[1][key])
        assert torch.equal(first[key], a[1][key])
    matrices = []
    for epoch in range(4):
        a.set_epoch(epoch)
        matrices.append(a[1]["crop_to_image"])
    assert all(not torch.equal(matrices[0], m) for m in matrices[1:])
    assert not torch.equal(make(6)[1]["crop_to_image"], first["crop_to_image"])
    a.set_epoch(0)
    assert torch.equal(a[1]["image"], first["image"])  # resuming at an epoch reproduces it


def test_image_cache_serves_the_same_pixels_within_its_budget(tiny):
    ann_path, image_dir, _ = tiny
    cached = TopDownDataset(ann_path, image_dir, input_size=(64, 48), augment=AugmentConfig())
    uncached = TopDownDataset(ann_path, image_dir, input_size=(64, 48), augment=AugmentConfig(), image_cache_mb=0)
    for epoch in range(2):
        for ds in (cached, uncached):
            ds.set_epoch(epoch)
        for i in range(len(cached)):
            assert torch.equal(cached[i]["image"], uncached[i]["image"])
    assert sorted(cached._images) == [1, 2] and not uncached._images
    image = cached.read_image(1)
    assert image is cached.read_image(1)  # decoded once
    with pytest.raises(ValueError):
        image[0, 0, 0] = 0  # shared by later samples, so read-only

    one_image = 90 * 120 * 3 / 2**20  # image 1 fits, image 1 and 2 together do not
    small = TopDownDataset(ann_path, image_dir, input_size=(64, 48), image_cache_mb=one_image)
    small.read_image(1)
    small.read_image(2)
    assert list(small._images) == [2] and small._cached_bytes == 100 * 60 * 3


def test_detections_as_boxes(tiny, tmp_path):
    ann_path, image_dir, _ = tiny
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [22.0, 12.0, 40.0, 60.0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.1},  # below the threshold
        {"image_id": 2, "category_id": 3, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.8},  # not a person
        {"image_id": 2, "category_id": 1, "bbox": [50.0, 90.0, 30.0, 30.0], "score": 0.7},  # clipped to 10x10
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(detections))
    dataset = TopDownDataset(ann_path, image_dir, input_size=(64, 48), boxes=path, score_threshold=0.5)
    assert len(dataset) == 2
    sample = dataset[0]
    assert (sample["ann_id"], sample["score"], sample["area"]) == (-1, 0.9, 2400.0)
    assert sample["box"].tolist() == [22.0, 12.0, 40.0, 60.0]
    assert torch.count_nonzero(sample["keypoints"]) == 0
    assert dataset[1]["box"].tolist() == [50.0, 90.0, 10.0, 10.0]

    detections.append({"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9})
    path.write_text(json.dumps(detections))
    with pytest.raises(DataError, match=r"dets\.json: detection #4 \(image 99\): image id 99 is not in .*ann\.json"):
        TopDownDataset(ann_path, image_dir, boxes=path)
    assert len(TopDownDataset(ann_path, image_dir, boxes=path, score_threshold=0.5, skip_bad=True)) == 2


def test_missing_image_names_file_and_can_be_skipped(tiny, caplog):
    ann_path, image_dir, _ = tiny
    (image_dir / "one.png").unlink()
    dataset = TopDownDataset(ann_path, image_dir, input_size=(64, 48))
    with pytest.raises(DataError) as raised:
        dataset[0]
    message = str(raised.value)
    assert str(image_dir / "one.png") in message and "image 1" in message and str(ann_path) in message

    tolerant = TopDownDataset(ann_path, image_dir, input_size=(64, 48), skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="poselib.data.datasets"):
        assert tolerant[0]["ann_id"] == 21  # the next sample stands in
        assert tolerant[0]["ann_id"] == 21
    assert tolerant.skipped == 2
    warnings = [r for r in caplog.records if "one.png" in r.getMessage()]
    assert len(warnings) == 1  # one warning per bad file


def test_corrupt_image_raises(tiny):
    ann_path, image_dir, _ = tiny
    (image_dir / "two.png").write_bytes(b"not an image at all")
    dataset = BottomUpDataset(ann_path, image_dir, input_size=64)
    with pytest.raises(DataError, match=r"two\.png: cannot decode image \(image 2 of .*ann\.json\)"):
        dataset[1]


def test_encoder_runs_last(tiny):
    ann_path, image_dir, _ = tiny

    def encoder(sample):
        sample["visible"] = (sample["keypoints"][:, 2] > 0).sum()
        return sample

    dataset = TopDownDataset(ann_path, image_dir, input_size=(64, 48), encoder=encoder)
    assert dataset[0]["visible"] == 17 and dataset[1]["visible"] == 5


# ----------------------------------------------------------------------------------------------- bottom-up


def test_bottom_up_sample_without_augmentation(tiny):
    ann_path, image_dir, data = tiny
    dataset = BottomUpDataset(ann_path, image_dir, input_size=64, with_instance_masks=True)
    assert len(dataset) == 2
    sample = dataset[0]
    assert sample["image"].shape == (3, 64, 64) and sample["image_id"] == 1
    assert sample["keypoints"].shape == (2, 17, 3) and sample["boxes"].shape == (2, 4)
    assert sample["instance_masks"].shape == (2, 64, 64) and sample["instance_masks"].dtype == torch.uint8
    assert sample["ignore_mask"].dtype == torch.float32 and sample["person_mask"].shape == (64, 64)

    # letterbox: 120x90 fits 64 wide, centred vertically
    to_image = sample["input_to_image"].double().numpy()
    scale = 120 / 64
    np.testing.assert_allclose(to_image[:, :2], np.eye(2) * scale, atol=1e-6)
    to_input = lambda xy: (np.asarray(xy, float) + 0.5) / scale - 0.5 + np.array([0, (64 - 90 / scale) / 2])  # noqa: E731
    kp = sample["keypoints"][0].double().numpy()
    np.testing.assert_allclose(kp[:, :2], to_input(annotation_keypoints(data, 11)[:, :2]), atol=1e-4)
    assert torch.count_nonzero(sample["keypoints"][1]) == 0  # person 12 has no keypoints
    np.testing.assert_allclose(sample["boxes"][0].numpy(), [*to_input([20, 10]), 50 / scale, 70 / scale], atol=1e-4)

    def at(mask, xy):
        col, row = np.round(to_input(xy)).astype(int)
        return float(mask[row, col])

    ignore, people = sample["ignore_mask"], sample["person_mask"]
    assert at(ignore, [100, 20]) == 1.0  # the crowd region
    assert at(ignore, [90, 60]) == 1.0  # person 12 has no keypoints: ignored, not background
    assert at(ignore, [45, 45]) == 0.0 and at(ignore, [10, 85]) == 0.0
    assert at(people, [45, 45]) == 1.0 and at(people, [90, 60]) == 1.0 and at(people, [100, 20]) == 0.0
    assert at(sample["instance_masks"][0], [45, 45]) == 1 and at(sample["instance_masks"][1], [45, 45]) == 0
    # crowd area 21x21 pixels of the image, shrunk by 120/64 per side
    assert float(ignore.sum()) == pytest.approx(21 * 21 / scale**2 + 21 * 21 / scale**2, rel=0.15)


@pytest.mark.parametrize("epoch", range(3))
def test_bottom_up_augmentation_keeps_masks_and_keypoints_together(tiny, epoch):
    ann_path, image_dir, data = tiny
    dataset = BottomUpDataset(ann_path, image_dir, input_size=96, augment=AugmentConfig.bottom_up(), seed=3)
    dataset.set_epoch(epoch)
    sample = dataset[0]
    to_image = sample["input_to_image"].double().numpy()
    to_input = np.linalg.inv(np.vstack([to_image, [0, 0, 1]]))[:2]
    flipped = np.linalg.det(to_image[:, :2]) < 0
    original = annotation_keypoints(data, 11)
    if flipped:
        original = original[list(FLIP_INDEX)]
    kp = sample["keypoints"][0].double().numpy()
    kept = kp[:, 2] > 0
    np.testing.assert_allclose(apply_affine(kp[kept, :2], to_image), original[kept, :2], atol=1e-3)
    col, row = np.round(apply_affine(np.array([[100.0, 20.0]]), to_input)[0]).astype(int)
    if 0 <= row < 96 and 0 <= col < 96:
        assert sample["ignore_mask"][row, col] == 1.0
    for x, y, _ in kp[kept]:
        assert sample["person_mask"][int(round(y)), int(round(x))] == 1.0  # keypoints lie on their person
    assert torch.equal(dataset[0]["image"], sample["image"])


def test_collate_bottomup_pads_people(tiny):
    ann_path, image_dir, _ = tiny
    dataset = BottomUpDataset(ann_path, image_dir, input_size=64, with_instance_masks=True)
    batch = collate_bottomup([dataset[1], dataset[0]])
    assert batch["num_people"].tolist() == [1, 2]
    assert batch["image"].shape == (2, 3, 64, 64) and batch["ignore_mask"].shape == (2, 64, 64)
    assert batch["keypoints"].shape == (2, 2, 17, 3) and batch["boxes"].shape == (2, 2, 4)
    assert batch["instance_masks"].shape == (2, 2, 64, 64)
    assert torch.count_nonzero(batch["keypoints"][0, 1]) == 0 and torch.count_nonzero(batch["boxes"][0, 1]) == 0
    assert torch.equal(batch["keypoints"][1], dataset[0]["keypoints"])
    assert batch["image_id"].tolist() == [2, 1] and batch["input_to_image"].shape == (2, 2, 3)
    # person 21 has no segmentation: its box stands in for the person mask
    assert batch["person_mask"][0].sum() > 0


def test_bottom_up_image_without_people(tiny):
    ann_path, image_dir, data = tiny
    data["images"].append({"id": 3, "file_name": "three.png", "width": 50, "height": 50})
    cv2.imwrite(str(image_dir / "three.png"), np.zeros((50, 50, 3), np.uint8))
    ann_path.write_text(json.dumps(data))
    dataset = BottomUpDataset(ann_path, image_dir, input_size=32, with_instance_masks=True)
    assert len(dataset) == 3 and len(BottomUpDataset(ann_path, image_dir, skip_empty=True)) == 2
    sample = dataset[2]
    assert sample["keypoints"].shape == (0, 17, 3) and sample["boxes"].shape == (0, 4)
    assert sample["instance_masks"].shape == (0, 32, 32)
    assert float(sample["ignore_mask"].sum()) == 0.0 and float(sample["person_mask"].sum()) == 0.0
    batch = collate_bottomup([sample, dataset[1]])
    assert batch["num_people"].tolist() == [0, 1] and batch["keypoints"].shape == (2, 1, 17, 3)
