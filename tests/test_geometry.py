import numpy as np
import pytest
import torch

from poselib import geometry
from poselib.keypoints import FLIP_INDEX, FLIP_PAIRS, KEYPOINT_NAMES, SKELETON


def test_stride_mapping_round_trip_and_cell_centres():
    # cell i at stride 4 covers input pixels 4i..4i+3, whose centre is 4i+1.5
    assert geometry.heatmap_to_image(np.array([0.0, 2.0]), 4).tolist() == [1.5, 9.5]
    x = np.array([0.0, 7.3, 100.0])
    np.testing.assert_allclose(geometry.heatmap_to_image(geometry.image_to_heatmap(x, 8), 8), x)
    assert geometry.image_to_heatmap(torch.tensor([1.5]), 4).item() == 0.0


def test_box_to_center_size_keeps_aspect_and_never_shrinks():
    center, size = geometry.box_to_center_size([10, 20, 30, 100], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(center, [10 + 14.5, 20 + 49.5])
    np.testing.assert_allclose(size, [75.0, 100.0])  # widened to 3:4
    _, size = geometry.box_to_center_size([0, 0, 90, 60], aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(size, [90 * 1.25, 120 * 1.25])  # heightened to 3:4, then padded


def test_crop_affine_maps_region_edges_to_crop_edges_and_inverts():
    m = geometry.crop_affine(center=[50, 40], size=[40, 60], output_size=(48, 64))
    edges = geometry.apply_affine(np.array([[30.0, 10.0], [70.0, 70.0]]) - 0.5, m)
    np.testing.assert_allclose(edges, [[-0.5 - 0.5 * 48 / 40, -0.5 - 0.5 * 64 / 60], [47.5 - 0.5 * 48 / 40, 63.5 - 0.5 * 64 / 60]])
    centre = geometry.apply_affine(np.array([[50.0, 40.0]]), m)
    np.testing.assert_allclose(centre, [[23.5, 31.5]])
    points = np.random.default_rng(0).uniform(0, 100, (5, 2))
    back = geometry.apply_affine(geometry.apply_affine(points, m), geometry.invert_affine(m))
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_crop_affine_flip_and_rotation():
    m = geometry.crop_affine([10, 10], [20, 20], (20, 20), flip=True)
    # a point left of the centre lands right of the crop centre
    out = geometry.apply_affine(np.array([[5.0, 10.0]]), m)[0]
    assert out[0] == pytest.approx(9.5 + 5) and out[1] == pytest.approx(9.5)
    r = geometry.crop_affine([0, 0], [10, 10], (10, 10), rotation_deg=90)
    # rotating the image content 90 degrees counter-clockwise moves a point right of centre to above it
    out = geometry.apply_affine(np.array([[1.0, 0.0]]), r)[0]
    np.testing.assert_allclose(out, [4.5, 4.5 - 1.0], atol=1e-9)


def test_apply_affine_torch_batched_matches_numpy():
    mats = np.stack([geometry.crop_affine([5, 5], [10, 10], (20, 20)), geometry.crop_affine([8, 3], [4, 8], (6, 12), 30)])
    pts = np.random.default_rng(1).uniform(0, 10, (2, 17, 2))
    np.testing.assert_allclose(geometry.apply_affine(torch.tensor(pts), torch.tensor(mats)).numpy(), geometry.apply_affine(pts, mats), atol=1e-9)


def test_keypoint_definition_is_consistent():
    assert len(KEYPOINT_NAMES) == 17 and len(SKELETON) == 19
    for a, b in FLIP_PAIRS:
        assert KEYPOINT_NAMES[a].replace("left", "right") == KEYPOINT_NAMES[b]
    assert all(FLIP_INDEX[FLIP_INDEX[k]] == k for k in range(17))
    assert FLIP_INDEX[0] == 0 and FLIP_INDEX[5] == 6
