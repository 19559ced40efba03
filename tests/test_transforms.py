"""The affine augmentation: sampling, and images, keypoints and masks staying in register."""

from __future__ import annotations

import numpy as np
import pytest

from poselib.data.transforms import (
    AugmentConfig,
    augmented_affine,
    half_body_box,
    sample_augmentation,
    warp_image,
    warp_keypoints,
    warp_mask,
)
from poselib.geometry import apply_affine, crop_affine, invert_affine
from poselib.keypoints import FLIP_INDEX


def person(rng: np.random.Generator, center=(60.0, 50.0), spread=20.0) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, :2] = np.asarray(center) + rng.uniform(-spread, spread, (17, 2))
    kp[:, 2] = rng.choice([1, 2], 17)
    return kp


def test_default_sampling_matches_simple_baselines():
    rng = np.random.default_rng(0)
    draws = [sample_augmentation(rng, AugmentConfig()) for _ in range(4000)]
    scale = np.array([d["scale"] for d in draws])
    rotation = np.array([d["rotation"] for d in draws])
    assert scale.min() >= 0.65 and scale.max() <= 1.35
    assert np.isclose(scale.mean(), 1.0, atol=0.02)
    assert np.mean(scale == 0.65) > 0.05  # the normal is clipped, so the ends collect mass (P(N < -1) = 16%)
    rotated = rotation != 0
    assert np.isclose(rotated.mean(), 0.6, atol=0.03)
    # clipping N(0, 45) at two standard deviations leaves a standard deviation of 0.9595 * 45
    assert np.abs(rotation).max() == 90.0 and np.isclose(rotation[rotated].std(), 45.0 * 0.9595, rtol=0.04)
    assert np.isclose(np.mean([d["flip"] for d in draws]), 0.5, atol=0.03)
    assert np.isclose(np.mean([d["half_body"] for d in draws]), 0.3, atol=0.03)
    assert all(np.array_equal(d["translate"], [0.0, 0.0]) for d in draws)


def test_sampling_is_deterministic_and_bottom_up_is_uniform():
    a = sample_augmentation(np.random.default_rng((3, 1, 7)), AugmentConfig())
    b = sample_augmentation(np.random.default_rng((3, 1, 7)), AugmentConfig())
    assert a["scale"] == b["scale"] and a["rotation"] == b["rotation"] and a["flip"] == b["flip"]

    rng = np.random.default_rng(1)
    draws = [sample_augmentation(rng, AugmentConfig.bottom_up()) for _ in range(2000)]
    rotation = np.array([d["rotation"] for d in draws])
    translate = np.array([d["translate"] for d in draws])
    scale = np.array([d["scale"] for d in draws])
    assert np.abs(rotation).max() <= 30.0 and np.isclose(rotation.std(), 30.0 / np.sqrt(3), rtol=0.05)
    assert np.abs(translate).max() <= 40 / 512 and np.abs(translate).max() > 0.07
    assert 0.75 <= scale.min() and scale.max() <= 1.5 and np.isclose(scale.mean(), 1.125, atol=0.02)
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)


@pytest.mark.parametrize("seed", range(5))
def test_augment_then_invert_returns_original_keypoints(seed):
    rng = np.random.default_rng(seed)
    keypoints = person(rng)
    params = sample_augmentation(rng, AugmentConfig(scale_range=(1.2, 1.35), translate=0.05))
    matrix = augmented_affine(np.array([60.0, 50.0]), np.array([90.0, 120.0]), (64, 48), params)
    warped = warp_keypoints(keypoints, matrix, (64, 48), flip=params["flip"])
    assert (warped[:, 2] > 0).all(), "the region is large enough to keep everyone inside"
    back = apply_affine(warped[:, :2].astype(np.float64), invert_affine(matrix))
    original = keypoints[list(FLIP_INDEX)] if params["flip"] else keypoints
    np.testing.assert_allclose(back, original[:, :2], atol=1e-4)
    np.testing.assert_array_equal(warped[:, 2], original[:, 2])


def test_full_image_flip_mirrors_x_and_swaps_sides():
    height, width = 30, 40
    matrix = crop_affine(((width - 1) / 2, (height - 1) / 2), (width, height), (width, height), flip=True)
    keypoints = np.zeros((17, 3))
    keypoints[:, 0] = np.arange(17) * 2.0 + 0.25
    keypoints[:, 1] = np.arange(17) + 1.0
    keypoints[:, 2] = 2
    flipped = warp_keypoints(keypoints, matrix, (height, width), flip=True)
    # channel 1 (left eye) now holds the mirrored right eye (channel 2), and so on
    np.testing.assert_allclose(flipped[:, 0], width - 1 - keypoints[list(FLIP_INDEX), 0], atol=1e-5)
    np.testing.assert_allclose(flipped[:, 1], keypoints[list(FLIP_INDEX), 1], atol=1e-5)
    assert flipped[1, 0] == pytest.approx(width - 1 - keypoints[2, 0])
    assert flipped[0, 0] == pytest.approx(width - 1 - keypoints[0, 0])  # the nose stays the nose

    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_image(image, matrix, (height, width)), image[:, ::-1])
    np.testing.assert_array_equal(warp_mask(image[..., 0], matrix, (height, width), mode="nearest"), image[:, ::-1, 0])


def test_keypoints_outside_the_output_become_invisible():
    keypoints = np.zeros((2, 17, 3))
    keypoints[..., 2] = 2
    keypoints[0, :, :2] = [10.0, 10.0]
    keypoints[1, :, :2] = [10.0, 10.0]
    keypoints[1, 5, :2] = [47.6, 10.0]  # beyond the last column's edge at 47.5
    keypoints[1, 6, :2] = [10.0, -0.6]
    keypoints[1, 7, 2] = 0  # unlabelled stays unlabelled, and is zeroed
    keypoints[1, 8, :2] = [47.4, 63.4]  # inside, just
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    out = warp_keypoints(keypoints, identity, (64, 48))
    assert out.dtype == np.float32 and out.shape == (2, 17, 3)
    for k in (5, 6, 7):
        np.testing.assert_array_equal(out[1, k], [0, 0, 0])
    np.testing.assert_allclose(out[1, 8], [47.4, 63.4, 2], atol=1e-5)
    np.testing.assert_allclose(out[0, :, :2], 10.0)


def test_masks_and_image_move_with_keypoints():
    rng = np.random.default_rng(4)
    height, width = 90, 120
    keypoints = person(rng, center=(60, 45), spread=30)
    mask = np.zeros((height, width), np.uint8)
    image = np.zeros((height, width, 3), np.uint8)
    for x, y, _ in keypoints:
        cx, cy = int(round(x)), int(round(y))
        mask[cy - 2 : cy + 3, cx - 2 : cx + 3] = 1
        image[cy - 2 : cy + 3, cx - 2 : cx + 3] = 255
    config = AugmentConfig(scale_range=(1.3, 1.35), rotation_prob=1.0, rotation_std=None, rotation_limit=40)
    for _ in range(5):
        params = sample_augmentation(rng, config)
        matrix = augmented_affine(np.array([60.0, 45.0]), np.array([100.0, 100.0]), (96, 96), params)
        warped = warp_keypoints(keypoints, matrix, (96, 96), flip=params["flip"])
        nearest = warp_mask(mask, matrix, (96, 96), mode="nearest")
        area = warp_mask(mask, matrix, (96, 96), mode="area")
        crop = warp_image(image, matrix, (96, 96))
        for x, y, v in warped:
            assert v > 0
            col, row = int(round(x)), int(round(y))
            assert nearest[row, col] == 1 and area[row, col] > 0.5 and crop[row, col, 0] > 127


def test_area_mode_keeps_thin_structures_when_shrinking():
    mask = np.zeros((400, 400), np.uint8)
    mask[:, 201] = 1  # a one-pixel line
    matrix = crop_affine((199.5, 199.5), (400, 400), (50, 50))  # shrink 8x
    area = warp_mask(mask, matrix, (50, 50), mode="area")
    assert area.dtype == np.float32 and 0.0 <= area.min() and area.max() <= 1.0
    # coverage is preserved: 400 pixels of line over 64 input pixels per output pixel
    assert area.sum() == pytest.approx(400 / 64, rel=0.02)
    assert (area.max(axis=1) > 0.1).all()  # every row still sees the line
    assert area[:, 25].sum() == pytest.approx(50 / 8, rel=0.05)


def test_warp_image_handles_many_channels():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 2, (12, 10, 600), dtype=np.uint8)
    matrix = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])  # shift right 2, up 1
    out = warp_image(masks, matrix, (12, 10), interpolation="nearest")
    assert out.shape == (12, 10, 600)
    np.testing.assert_array_equal(out[:11, 2:], masks[1:, :8])
    assert warp_image(masks[..., :1], matrix, (12, 10), interpolation="nearest").shape == (12, 10, 1)


def test_half_body_box():
    keypoints = np.zeros((17, 3))
    keypoints[5:11, :2] = [[10, 20], [30, 20], [8, 40], [32, 40], [6, 60], [34, 60]]  # shoulders, elbows, wrists
    keypoints[5:11, 2] = 2
    center, size = half_body_box(keypoints, np.random.default_rng(0), aspect_ratio=0.75)
    # only the upper body is labelled, so it is chosen whatever the coin says
    np.testing.assert_allclose(center, [20.0, 40.0])
    np.testing.assert_allclose(size, [40 * 0.75 * 1.5, 40 * 1.5])  # height 40 rules; widened to 3:4, padded 1.5
    assert size[0] / size[1] == pytest.approx(0.75)

    keypoints[11:17, :2] = np.column_stack([np.linspace(0, 50, 6), np.full(6, 100.0)])
    keypoints[11:17, 2] = 1
    centers = {tuple(half_body_box(keypoints, np.random.default_rng(s), 0.75)[0]) for s in range(20)}
    assert centers == {(20.0, 40.0), (25.0, 100.0)}  # both halves get picked

    sparse = np.zeros((17, 3))
    sparse[0] = [5, 5, 2]
    assert half_body_box(sparse, np.random.default_rng(0), 0.75) is None


def test_area_mode_shrinking_stays_in_register():
    mask = np.zeros((300, 360), np.float32)
    mask[100:124, 200:224] = 1  # a 24-pixel square centred on (211.5, 111.5)
    matrix = crop_affine((179.5, 149.5), (360, 360), (48, 48), rotation_deg=30.0)  # 7.5x smaller, turned
    area = warp_mask(mask, matrix, (48, 48), mode="area")
    rows, cols = np.mgrid[0:48, 0:48]
    centroid = np.array([(area * cols).sum(), (area * rows).sum()]) / area.sum()
    expected = apply_affine(np.array([[211.5, 111.5]]), matrix)[0]
    np.testing.assert_allclose(centroid, expected, atol=0.15)
    assert area.sum() == pytest.approx(24 * 24 / 7.5**2, rel=0.03)
