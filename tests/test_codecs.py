"""Heatmap targets and decoders: known answers on hand-made maps, and encode->decode round trips."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from poselib.codecs import (
    DECODERS,
    HeatmapSpec,
    decode_argmax,
    decode_quarter_offset,
    decode_taylor,
    decode_top2_average,
    encode_gaussian_levels,
    encode_heatmaps,
    encode_multi_person,
    encode_multi_resolution,
    find_peaks,
    flip_average,
    flip_back,
    gaussian_blur,
    gaussian_sigma_from_kernel,
    heatmap_coords_to_image,
    resize_mask,
)
from poselib.codecs import benchmark
from poselib.geometry import apply_affine, crop_affine, heatmap_to_image, image_to_heatmap, invert_affine
from poselib.keypoints import FLIP_INDEX, NUM_KEYPOINTS


def _one_keypoint(x: float, y: float, v: float = 2.0) -> np.ndarray:
    return np.array([[[x, y, v]]], dtype=np.float64)


# ---------------------------------------------------------------- stride convention


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_keypoint_on_cell_centre_peaks_exactly_on_that_cell(stride):
    h, w = 12, 10
    for i, j in [(0, 0), (3, 7), (h - 1, w - 1)]:
        x, y = stride * j + (stride - 1) / 2, stride * i + (stride - 1) / 2
        maps, weights = encode_heatmaps(_one_keypoint(x, y), (h, w), stride, 1.5)
        assert weights.item() == 1.0
        assert maps[0, 0, i, j].item() == 1.0
        assert int(maps[0, 0].argmax()) == i * w + j
        # and the way back lands on the input coordinate
        coords, _ = decode_argmax(maps)
        np.testing.assert_allclose(heatmap_coords_to_image(coords, stride)[0, 0].numpy(), [x, y])


def test_geometry_stride_mapping_round_trips():
    xy = np.array([[0.0, 0.0], [13.25, 7.5], [-0.5, 255.5]])
    for stride in (4, 8):
        np.testing.assert_allclose(heatmap_to_image(image_to_heatmap(xy, stride), stride), xy)
        # cell 0 covers input pixels 0..s-1: its centre is (s-1)/2, its left edge -0.5 maps to cell -0.5
        assert image_to_heatmap(np.array((stride - 1) / 2), stride) == 0.0
        assert image_to_heatmap(np.array(-0.5), stride) == -0.5


# ---------------------------------------------------------------- targets


def test_gaussian_target_values_and_per_keypoint_sigma():
    stride = 4
    kpts = np.array([[[stride * 5 + 1.5, stride * 6 + 1.5, 1], [stride * 5 + 1.5, stride * 6 + 1.5, 1]]])
    maps, _ = encode_heatmaps(kpts, (16, 12), stride, torch.tensor([1.0, 2.0]))
    for k, sigma in enumerate((1.0, 2.0)):
        assert maps[0, k, 6, 6].item() == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
        assert maps[0, k, 7, 7].item() == pytest.approx(math.exp(-5 / (2 * sigma**2)), rel=1e-6)


def test_gaussian_target_is_centred_on_the_sub_cell_position():
    # keypoint 0.3 cells right of cell 4's centre: cells 4 and 5 are 0.3 and 0.7 away
    x = 4 * 4 + 1.5 + 0.3 * 4
    maps, _ = encode_heatmaps(_one_keypoint(x, 1.5), (4, 10), 4, 2.0)
    row = maps[0, 0, 0]
    assert row[4].item() == pytest.approx(math.exp(-0.09 / 8), rel=1e-6)
    assert row[5].item() == pytest.approx(math.exp(-0.49 / 8), rel=1e-6)


def test_unlabelled_or_outside_keypoints_get_zero_weight_and_empty_maps():
    stride, (h, w) = 4, (16, 12)
    kpts = np.array(
        [
            [
                [20.0, 20.0, 0.0],  # inside but not labelled
                [20.0, 20.0, 2.0],  # labelled inside
                [-3.0, 20.0, 2.0],  # left of the area the cells cover (x < -0.5)
                [w * stride - 0.5, 20.0, 1.0],  # exactly on the right edge: outside
                [-0.5, h * stride - 0.51, 1.0],  # on the left edge and just inside the bottom: inside
            ]
        ]
    )
    maps, weights = encode_heatmaps(kpts, (h, w), stride, 2.0)
    assert weights.tolist() == [[0.0, 1.0, 0.0, 0.0, 1.0]]
    assert maps[0, 0].abs().sum() == 0 and maps[0, 2].abs().sum() == 0 and maps[0, 3].abs().sum() == 0
    assert maps[0, 1].max() > 0.9


@pytest.mark.parametrize("kernel_size", [3, 7, 11, 15])
def test_kernel_target_matches_opencv_blur_of_an_impulse(kernel_size):
    h, w, stride = 32, 24, 4
    cells = [(0, 0), (1, 2), (10, 12), (23, 31), (22, 30)]  # (x, y), some next to the border
    kpts = np.array([[[stride * x + 1.5 + 0.4, stride * y + 1.5 - 0.4, 1] for x, y in cells]])
    maps, _ = encode_heatmaps(kpts, (h, w), stride, kernel_size=kernel_size)
    for k, (x, y) in enumerate(cells):
        impulse = np.zeros((h, w), np.float32)
        impulse[y, x] = 1
        expected = cv2.GaussianBlur(impulse, (kernel_size, kernel_size), 0)
        np.testing.assert_allclose(maps[0, k].numpy(), expected / expected.max(), atol=1e-6)
        assert maps[0, k].max().item() == pytest.approx(1.0)


def test_sigma_from_kernel_follows_opencv():
    assert gaussian_sigma_from_kernel(7) == pytest.approx(1.4)
    assert gaussian_sigma_from_kernel(11) == pytest.approx(2.0)
    assert gaussian_sigma_from_kernel(15) == pytest.approx(2.6)
    with pytest.raises(ValueError, match="odd"):
        gaussian_sigma_from_kernel(4)


def test_multi_person_is_the_maximum_over_people():
    people = np.array([[[10.0, 10.0, 1]], [[30.0, 10.0, 1]], [[30.0, 10.0, 0]]])
    combined = encode_multi_person(people, (8, 12), 4, 1.0)
    single, _ = encode_heatmaps(people, (8, 12), 4, 1.0)
    assert combined.shape == (1, 8, 12)
    torch.testing.assert_close(combined, torch.maximum(single[0], single[1]))
    assert combined.max().item() <= 1.0
    assert encode_multi_person(np.zeros((0, 17, 3)), (8, 12), 4).shape == (17, 8, 12)


def test_multi_resolution_equals_separate_encodings():
    rng = np.random.default_rng(0)
    kpts = np.concatenate([rng.uniform(0, 60, (2, 17, 2)), np.ones((2, 17, 1))], -1)
    specs = [((16, 16), 4, 2.0), HeatmapSpec((8, 8), 8, 1.0), HeatmapSpec((16, 16), 4, kernel_size=7)]
    out = encode_multi_resolution(kpts, specs)
    assert [m.shape for m, _ in out] == [(2, 17, 16, 16), (2, 17, 8, 8), (2, 17, 16, 16)]
    torch.testing.assert_close(out[1][0], encode_heatmaps(kpts, (8, 8), 8, 1.0)[0])
    torch.testing.assert_close(out[2][0], encode_heatmaps(kpts, (16, 16), 4, kernel_size=7)[0])


def test_gaussian_levels_equal_one_encoding_per_sigma():
    rng = np.random.default_rng(1)
    kpts = np.concatenate([rng.uniform(-8, 70, (3, 17, 2)), rng.integers(0, 3, (3, 17, 1))], -1)
    per_keypoint = np.linspace(1.0, 3.0, 17)
    sigmas = [3.5, 2.0, per_keypoint, 0.8]
    maps, weights = encode_gaussian_levels(kpts, (16, 12), 4, sigmas)
    assert maps.shape == (3, 4, 17, 16, 12) and maps.dtype == torch.float32
    # against the formula on the full grid, written out independently of the encoder
    u, v = image_to_heatmap(kpts[..., 0], 4), image_to_heatmap(kpts[..., 1], 4)
    inside = (u >= -0.5) & (u < 11.5) & (v >= -0.5) & (v < 15.5) & (kpts[..., 2] > 0)
    ys, xs = np.mgrid[0:16, 0:12]
    for level, sigma in enumerate(sigmas):
        s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (17,))[None, :, None, None]
        d2 = (xs - u[..., None, None]) ** 2 + (ys - v[..., None, None]) ** 2
        expected = np.exp(-d2 / (2 * s**2)) * inside[..., None, None]
        np.testing.assert_allclose(maps[:, level].numpy(), expected, atol=1e-5)
        torch.testing.assert_close(maps[:, level], encode_heatmaps(kpts, (16, 12), 4, sigma)[0])
    np.testing.assert_array_equal(weights.numpy(), inside.astype(np.float32))
    # keypoints outside the map or unlabelled get all-zero maps at every level
    assert torch.all(maps.flatten(3).amax(-1)[weights[:, None].expand(-1, 4, -1) == 0] == 0)


def test_gaussian_levels_keep_tensor_input_and_reject_bad_sigma():
    kpts = torch.tensor([[[13.3, 21.7, 1.0], [40.2, 9.9, 1.0]]], dtype=torch.float64)
    maps, weights = encode_gaussian_levels(kpts, (16, 12), 4, [2.0, 1.0])
    assert maps.dtype == weights.dtype == torch.float32 and maps.device == kpts.device
    # the value at the nearest cell is exp(-d^2 / (2 sigma^2)) with d the sub-cell distance
    u, v = image_to_heatmap(np.array([13.3, 21.7]), 4)
    cu, cv = int(round(u)), int(round(v))
    assert maps[0, 1, 0, cv, cu].item() == pytest.approx(math.exp(-((cu - u) ** 2 + (cv - v) ** 2) / 2), rel=1e-5)
    with pytest.raises(ValueError, match="sigma must be positive"):
        encode_gaussian_levels(kpts, (16, 12), 4, [2.0, 0.0])
    with pytest.raises(ValueError, match="at least one sigma"):
        encode_gaussian_levels(kpts, (16, 12), 4, [])


def test_resize_mask_area_and_max():
    mask = np.zeros((6, 5), np.float32)
    mask[0, 0] = 1  # one pixel of cell (0, 0)
    mask[2:4, 2:4] = 1  # all of cell (1, 1)
    mask[4:6, 4] = 1  # the two in-image pixels of the corner cell (2, 2); its other two lie outside
    area = resize_mask(mask, 2, "area")
    expected = np.array([[0.25, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    np.testing.assert_allclose(area.numpy(), expected)
    np.testing.assert_allclose(resize_mask(mask, 2, "max").numpy(), (expected > 0).astype(np.float32))
    batched = resize_mask(np.stack([mask, 1 - mask]), 2, "area")
    np.testing.assert_allclose(batched[1].numpy(), 1 - expected)
    with pytest.raises(ValueError, match="mode"):
        resize_mask(mask, 2, "mean")


# ---------------------------------------------------------------- decoders on hand-made maps


def _blank(h: int = 6, w: int = 8) -> torch.Tensor:
    return torch.zeros(1, 1, h, w)


def test_quarter_offset_moves_a_quarter_cell_towards_the_higher_neighbour():
    hm = _blank()
    hm[0, 0, 2, 3] = 1.0
    hm[0, 0, 2, 4] = 0.6  # right higher than left (0.5)
    hm[0, 0, 2, 2] = 0.5
    hm[0, 0, 1, 3] = 0.7  # up higher than down (0.2)
    hm[0, 0, 3, 3] = 0.2
    coords, scores = decode_quarter_offset(hm)
    assert coords[0, 0].tolist() == [3.25, 1.75]
    assert scores.item() == 1.0
    # at the border there is no neighbour on one side: no move on that axis
    hm = _blank()
    hm[0, 0, 3, 0] = 1.0
    hm[0, 0, 3, 1] = 0.9
    hm[0, 0, 4, 0] = 0.5
    assert decode_quarter_offset(hm)[0][0, 0].tolist() == [0.0, 3.25]


def test_quarter_offset_second_max_moves_along_the_direction_of_the_second_peak():
    hm = _blank()
    hm[0, 0, 2, 3] = 1.0
    hm[0, 0, 3, 4] = 0.8  # diagonal neighbour
    hm[0, 0, 2, 2] = 0.7
    coords, _ = decode_quarter_offset(hm, mode="second_max")
    step = 0.25 / math.sqrt(2)
    np.testing.assert_allclose(coords[0, 0].numpy(), [3 + step, 2 + step], rtol=1e-6)
    # a 3x3 suppression window hides both neighbours; the next maximum is 2 cells up
    hm[0, 0, 0, 3] = 0.3
    coords, _ = decode_quarter_offset(hm, mode="second_max", suppress=3)
    np.testing.assert_allclose(coords[0, 0].numpy(), [3.0, 1.75])


def test_top2_average_weights_the_two_highest_cells_by_score():
    hm = _blank()
    hm[0, 0, 2, 2] = 0.8
    hm[0, 0, 3, 3] = 0.2
    hm[0, 0, 5, 7] = 0.1
    coords, scores = decode_top2_average(hm)
    np.testing.assert_allclose(coords[0, 0].numpy(), [2.2, 2.2], rtol=1e-6)
    assert scores.item() == pytest.approx(0.8)
    # a map with no positive value falls back to its argmax
    assert decode_top2_average(-torch.ones(1, 1, 3, 3))[0][0, 0].tolist() == [0.0, 0.0]


def test_taylor_recovers_sub_cell_centre_and_falls_back_at_the_border():
    stride = 4
    inner = heatmap_to_image(np.array([6.3, 5.8]), stride)
    edge = heatmap_to_image(np.array([0.3, 5.8]), stride)
    kpts = np.array([[[*inner, 1], [*edge, 1]]])
    maps, _ = encode_heatmaps(kpts, (12, 10), stride, 2.0)
    coords, _ = decode_taylor(maps)
    np.testing.assert_allclose(coords[0, 0].numpy(), [6.3, 5.8], atol=1e-4)
    # within two cells of the left border the derivatives are undefined: the argmax cell stands
    assert coords[0, 1].tolist() == [0.0, 6.0]


# ---------------------------------------------------------------- encode -> decode round trips


def _round_trip_errors(stride: int, sigma: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-axis and Euclidean errors in image pixels of each decoder, through a rotated crop."""
    h, w = 256 // stride, 192 // stride
    rng = np.random.default_rng(seed)
    n = 64
    center, size = np.array([300.0, 200.0]), np.array([192.0, 256.0])  # crop at scale 1
    crop = crop_affine(center, size, (192, 256), rotation_deg=30.0)
    # keypoints at least 3 cells inside the crop so every decoder sees a whole peak
    margin = 3 * stride
    in_crop = np.stack([rng.uniform(margin, 192 - margin, (n, 17)), rng.uniform(margin, 256 - margin, (n, 17))], -1)
    image_xy = apply_affine(in_crop, invert_affine(crop))
    kpts = np.concatenate([apply_affine(image_xy, crop), np.ones((n, 17, 1))], -1)
    maps, _ = encode_heatmaps(kpts, (h, w), stride, sigma)
    crop_to_image = np.repeat(invert_affine(crop)[None], n, axis=0)
    errors = {}
    for name, decoder in DECODERS.items():
        coords, _ = decoder(maps)
        back = heatmap_coords_to_image(coords.double(), stride, crop_to_image).numpy()
        errors[name] = np.linalg.norm(back - image_xy, axis=-1)
        # per-axis error in the crop frame (the crop is rotated relative to the image)
        errors[name + "_axis"] = np.abs(heatmap_to_image(coords.double().numpy(), stride) - in_crop).max(-1)
    return errors


@pytest.mark.parametrize("stride", [4, 8])
def test_encode_decode_errors_are_sub_cell_and_ordered(stride):
    e = _round_trip_errors(stride, sigma=2.0)
    tol = 1e-3
    # bounds per axis, in input pixels: argmax half a cell, quarter offset a quarter cell
    assert e["argmax_axis"].max() <= stride / 2 + tol
    assert e["quarter_offset_axis"].max() <= stride / 4 + tol
    # uniform sub-cell offsets: argmax's mean Euclidean error is ~0.38 cell; measured on this sample
    # 0.38 (argmax), 0.19 (quarter), 0.26 (top-2), 0.22 (second max), ~0 (Taylor) cells
    mean = {name: e[name].mean() / stride for name in DECODERS}
    assert 0.30 < mean["argmax"] < 0.45
    assert mean["quarter_offset"] < 0.6 * mean["argmax"]
    assert mean["top2_average"] < 0.8 * mean["argmax"]
    assert mean["quarter_second_max"] < 0.8 * mean["argmax"]
    assert mean["taylor"] < 1e-3
    assert mean["taylor"] < mean["quarter_offset"] < mean["top2_average"] < mean["argmax"]


def test_heatmap_coords_to_image_applies_the_crop_inverse():
    center, size = np.array([100.0, 50.0]), np.array([96.0, 128.0])
    crop = crop_affine(center, size, (48, 64))  # half scale: one crop pixel is 2 image pixels
    crop_to_image = invert_affine(crop)
    coords = torch.tensor([[[0.0, 0.0], [5.5, 7.0]]], dtype=torch.float64)
    out = heatmap_coords_to_image(coords, 4, crop_to_image[None])
    expected = apply_affine(heatmap_to_image(coords.numpy(), 4), crop_to_image)
    np.testing.assert_allclose(out.numpy(), expected)
    # the crop's centre pixel maps to the box centre
    centre_cell = image_to_heatmap(np.array([[[23.5, 31.5]]]), 4)
    np.testing.assert_allclose(heatmap_coords_to_image(centre_cell, 4, crop_to_image)[0, 0], center)


# ---------------------------------------------------------------- flip, blur, peaks


def test_flip_back_mirrors_and_swaps_left_right_channels():
    hm = torch.zeros(1, NUM_KEYPOINTS, 4, 6)
    hm[0, 1, 1, 0] = 1.0  # left eye, left column of the flipped input
    hm[0, 0, 2, 1] = 0.5  # nose
    back = flip_back(hm)
    assert back[0, 2, 1, 5] == 1.0 and back[0, 2].sum() == 1.0  # right eye, right column
    assert back[0, 1].sum() == 0
    assert back[0, 0, 2, 4] == 0.5
    shifted = flip_back(hm, shift=True)
    assert shifted[0, 0, 2, 5] == 0.5


def test_flip_back_of_mirrored_input_targets_equals_the_original_targets():
    stride, (h, w) = 4, (16, 12)
    rng = np.random.default_rng(1)
    kpts = np.concatenate([rng.uniform(0, w * stride - 1, (3, 17, 1)), rng.uniform(0, h * stride - 1, (3, 17, 1)),
                           np.ones((3, 17, 1))], -1)
    mirrored = kpts[:, list(FLIP_INDEX)].copy()
    mirrored[..., 0] = w * stride - 1 - mirrored[..., 0]  # x -> W-1-x mirrors pixel centres
    original, _ = encode_heatmaps(kpts, (h, w), stride, 2.0)
    of_mirror, _ = encode_heatmaps(mirrored, (h, w), stride, 2.0)
    torch.testing.assert_close(flip_back(of_mirror), original, atol=1e-6, rtol=0)
    torch.testing.assert_close(flip_average(original, of_mirror), original, atol=1e-6, rtol=0)


def test_gaussian_blur_matches_opencv_shape_and_keeps_maxima():
    rng = np.random.default_rng(2)
    maps = torch.from_numpy(rng.uniform(0, 1, (2, 3, 20, 16)).astype(np.float32))
    blurred = gaussian_blur(maps, 5)
    torch.testing.assert_close(blurred.amax((-2, -1)), maps.amax((-2, -1)))
    # zero beyond the border: compare with OpenCV on a zero-padded copy
    padded = np.pad(maps[1, 2].numpy(), 2)
    reference = cv2.GaussianBlur(padded, (5, 5), 0)[2:-2, 2:-2]
    reference *= maps[1, 2].max().item() / reference.max()
    np.testing.assert_allclose(blurred[1, 2].numpy(), reference, atol=1e-5)


def test_find_peaks_finds_hand_placed_peaks_and_rejects_their_neighbours():
    hm = torch.zeros(1, 2, 10, 12)
    hm[0, 0, 2, 3] = 0.9
    hm[0, 0, 2, 4] = 0.8  # neighbour of a higher peak: not a peak
    hm[0, 0, 7, 9] = 0.5
    hm[0, 0, 7, 1] = 0.05  # below threshold
    hm[0, 0, 4, 5] = 0.4  # two cells from (2, 3): a separate peak
    coords, scores, valid = find_peaks(hm, threshold=0.1, max_peaks=5)
    assert coords.shape == (1, 2, 5, 2) and scores.shape == (1, 2, 5) and valid.shape == (1, 2, 5)
    assert valid[0, 0].tolist() == [True, True, True, False, False]
    assert coords[0, 0, :3].tolist() == [[3.0, 2.0], [9.0, 7.0], [5.0, 4.0]]
    np.testing.assert_allclose(scores[0, 0].numpy(), [0.9, 0.5, 0.4, 0, 0])
    assert not valid[0, 1].any()
    # fewer cells than max_peaks: padded
    coords, scores, valid = find_peaks(torch.ones(1, 1, 1, 2) * torch.tensor([0.2, 0.9]), max_peaks=4)
    assert valid[0, 0].tolist() == [True, False, False, False]


def test_find_peaks_on_a_two_person_map():
    people = np.array([[[20.0, 20.0, 1]], [[60.0, 36.0, 1]]])
    combined = encode_multi_person(people, (16, 24), 4, 1.5)[None]
    coords, _, valid = find_peaks(combined, threshold=0.5)
    found = heatmap_coords_to_image(coords[0, 0][valid[0, 0]], 4)
    expected = np.round(image_to_heatmap(people[:, 0, :2], 4))
    assert sorted(coords[0, 0][valid[0, 0]].tolist()) == sorted(expected.tolist())
    assert found.shape == (2, 2)


# ---------------------------------------------------------------- inputs, devices, benchmark


def test_numpy_input_and_shape_errors():
    maps = np.zeros((1, 1, 3, 4), np.float32)
    maps[0, 0, 1, 2] = 1
    coords, _ = decode_argmax(maps)
    assert isinstance(coords, torch.Tensor) and coords[0, 0].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"\(N, K, h, w\)"):
        decode_argmax(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        encode_heatmaps(np.zeros((2, 17)), (8, 8), 4)
    with pytest.raises(ValueError, match="sigma has 2 values"):
        encode_heatmaps(np.zeros((1, 3, 3)), (8, 8), 4, [1.0, 2.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    kpts = torch.tensor([[[13.3, 21.7, 1.0], [40.2, 9.9, 1.0]]])
    maps, _ = encode_heatmaps(kpts, (16, 12), 4, 2.0)
    maps_gpu, _ = encode_heatmaps(kpts.cuda(), (16, 12), 4, 2.0)
    torch.testing.assert_close(maps_gpu.cpu(), maps)
    for decoder in DECODERS.values():
        torch.testing.assert_close(decoder(maps_gpu)[0].cpu(), decoder(maps)[0])


def test_benchmark_prints_json_last(capsys):
    assert benchmark.main(["--batch", "2", "--keypoints", "3", "--size", "8x6", "--repeats", "1", "--device", "cpu"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["shape"] == [2, 3, 8, 6]
    assert set(summary["ms_per_batch"]) >= set(DECODERS)


def test_encode_benchmark_prints_json_last(capsys):
    assert benchmark.encode_main(["--size", "8x6", "--kernels", "5,3", "--repeats", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["benchmark"] == "encode" and summary["levels"] == 2
    assert all(us > 0 for us in summary["us_per_sample"].values())
