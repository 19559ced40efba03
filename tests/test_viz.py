"""Tests for poselib.viz: figures draw what they claim, where they claim."""

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from poselib import viz  # noqa: E402
from poselib.geometry import heatmap_to_image  # noqa: E402
from poselib.imaging import to_tensor  # noqa: E402
from poselib.keypoints import FLIP_PAIRS, KEYPOINT_NAMES, SKELETON  # noqa: E402

LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, LEFT_WRIST = 5, 6, 7, 9


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _pose(points: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """A (17, 3) pose with v = 0 everywhere except ``points``."""
    pose = np.zeros((17, 3))
    for k, xyv in points.items():
        pose[k] = xyv
    return pose


def _by_gid(ax: Axes, gid: str):
    found = [c for c in ax.collections if c.get_gid() == gid]
    return found[0] if found else None


# --------------------------------------------------------------------------------------------- draw_poses


def test_draw_poses_draws_only_limbs_between_present_keypoints():
    image = np.zeros((64, 64, 3), np.uint8)
    pose = _pose(
        {LEFT_SHOULDER: (10, 20, 2), LEFT_ELBOW: (20, 40, 2), LEFT_WRIST: (30, 60, 0), RIGHT_SHOULDER: (40, 20, 2)}
    )
    ax = viz.draw_poses(image, pose)
    assert isinstance(ax, Axes)
    segments = _by_gid(ax, "limbs").get_segments()
    drawn = {tuple(map(tuple, np.round(s, 3))) for s in segments}
    # shoulder-elbow and shoulder-shoulder; elbow-wrist is gone with the v=0 wrist
    assert drawn == {((10, 20), (20, 40)), ((10, 20), (40, 20))}
    assert len(_by_gid(ax, "keypoints").get_offsets()) == 3
    assert not ax.axison


def test_draw_poses_colours_left_warm_right_cool():
    pose = _pose({5: (10, 10, 2), 7: (10, 30, 2), 6: (40, 10, 2), 8: (40, 30, 2)})
    ax = viz.draw_poses(np.zeros((48, 48, 3), np.uint8), pose)
    limbs = _by_gid(ax, "limbs")
    colors = {tuple(map(tuple, np.round(s, 3))): c[:3] for s, c in zip(limbs.get_segments(), limbs.get_colors())}
    left_arm, right_arm = colors[((10, 10), (10, 30))], colors[((40, 10), (40, 30))]
    shoulders = colors[((10, 10), (40, 10))]
    assert left_arm[0] > left_arm[2]  # warm: more red than blue
    assert right_arm[2] > right_arm[0]  # cool
    assert len({tuple(left_arm), tuple(right_arm), tuple(shoulders)}) == 3


def test_draw_poses_person_colours_differ_between_people():
    pose = _pose({5: (10, 10, 2), 7: (10, 30, 2), 6: (20, 10, 2)})
    ax = viz.draw_poses(np.zeros((48, 48, 3), np.uint8), np.stack([pose, pose + [20, 0, 0]]), colors="person")
    colors = _by_gid(ax, "limbs").get_colors()[:, :3]
    assert len(colors) == 4
    np.testing.assert_allclose(colors[0], colors[1])  # one colour within a person
    assert not np.allclose(colors[0], colors[2])


def test_ground_truth_occluded_hollow_and_hidden_on_request():
    pose = _pose({5: (10, 10, 2), 7: (10, 30, 1)})
    ax = viz.draw_poses(np.zeros((48, 48, 3), np.uint8), pose)
    hollow = _by_gid(ax, "occluded")
    np.testing.assert_allclose(hollow.get_offsets(), [[10, 30]])
    assert hollow.get_facecolors().size == 0 or np.all(hollow.get_facecolors()[:, 3] == 0)
    ax = viz.draw_poses(np.zeros((48, 48, 3), np.uint8), pose, show_occluded=False)
    assert _by_gid(ax, "occluded") is None and _by_gid(ax, "limbs") is None


def test_prediction_scores_use_min_score_not_visibility():
    pose = _pose({5: (10, 10, 0.9), 7: (10, 30, 1.0), 9: (10, 40, 0.2)})
    present, occluded = viz.keypoint_states(pose[None], min_score=0.3)
    assert present[0].nonzero()[0].tolist() == [5, 7]
    assert not occluded.any()  # score 1.0 is a confident prediction, not an occluded label
    present, occluded = viz.keypoint_states(pose[None], ground_truth=True)
    assert occluded[0].nonzero()[0].tolist() == [7]


def test_draw_poses_accepts_normalised_chw_tensor():
    colour = np.array([200, 30, 90], np.uint8)
    image = np.broadcast_to(colour, (8, 12, 3)).copy()
    ax = viz.draw_poses(to_tensor(image), torch.tensor(_pose({0: (3, 3, 2)}), dtype=torch.float32))
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (8, 12, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown, image)


def test_draw_poses_boxes_and_scores():
    fig, ax = plt.subplots()
    out = viz.draw_poses(np.zeros((48, 48, 3), np.uint8), None, ax, boxes=[[4, 6, 20, 30]], scores=[0.875], title="t")
    assert out is ax
    (box,) = ax.patches
    assert box.get_xy() == (3.5, 5.5) and (box.get_width(), box.get_height()) == (20, 30)
    assert "0.88" in [t.get_text() for t in ax.texts]


def test_draw_box_with_label():
    fig, ax = plt.subplots()
    assert viz.draw_box(ax, np.array([1, 2, 3, 4]), label="person") is None
    assert len(ax.patches) == 1 and ax.texts[0].get_text() == "person"


# ------------------------------------------------------------------------------------------ draw_poses_cv2


def test_draw_poses_cv2_draws_limbs_and_skips_absent_keypoints():
    image = np.zeros((64, 64, 3), np.uint8)
    pose = _pose({LEFT_SHOULDER: (10, 32, 2), LEFT_ELBOW: (50, 32, 2), LEFT_WRIST: (50, 60, 0)})
    out = viz.draw_poses_cv2(image, pose, thickness=3)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert not image.any()  # drew on a copy
    assert all(out[32, x].any() for x in range(14, 47))  # along the shoulder-elbow limb
    assert not out[0:16, :].any()  # far above the limb
    assert not out[44:, :].any()  # the elbow-wrist limb and the v=0 wrist are not drawn
    np.testing.assert_array_equal(out[32, 30], viz._rgb255(viz.LEFT_COLOR))  # the left arm's colour, exactly


def test_draw_poses_cv2_prediction_threshold_and_boxes():
    image = np.zeros((64, 64, 3), np.uint8)
    pose = _pose({LEFT_SHOULDER: (10, 32, 0.9), LEFT_ELBOW: (50, 32, 0.2)})
    out = viz.draw_poses_cv2(image, pose, min_score=0.5)
    assert not out[32, 30].any()  # the limb needs both ends above min_score
    assert out[32, 10].any()  # the confident keypoint is drawn
    out = viz.draw_poses_cv2(image, None, boxes=[[10, 10, 40, 40]], scores=[0.5])
    assert out[49, 30].any() and not out[30, 30].any()  # bottom edge drawn, inside empty


# ------------------------------------------------------------------------------------------------- heatmaps


@pytest.mark.parametrize("stride", [4, 2.5])
def test_heatmap_overlay_cells_centre_on_stride_convention(stride):
    h, w = 6, 8
    height, width = int(h * stride), int(w * stride)
    heatmaps = torch.zeros(3, h, w)
    heatmaps[1, 2, 5] = 1.0  # one hot cell at column 5, row 2
    ax = viz.heatmap_overlay(np.zeros((height, width, 3), np.uint8), heatmaps)
    image_artist, heatmap_artist = ax.images
    assert heatmap_artist.get_extent() == image_artist.get_extent()
    np.testing.assert_array_equal(heatmap_artist.get_array(), heatmaps.max(0).values.numpy())
    left, right, bottom, top = heatmap_artist.get_extent()
    cell_w, cell_h = (right - left) / w, (bottom - top) / h
    x_centre = left + (5 + 0.5) * cell_w
    y_centre = top + (2 + 0.5) * cell_h
    assert x_centre == pytest.approx(float(heatmap_to_image(5.0, stride)))
    assert y_centre == pytest.approx(float(heatmap_to_image(2.0, stride)))


def test_heatmap_overlay_fade_makes_cold_cells_transparent():
    heatmap = np.zeros((4, 4))
    heatmap[1, 2] = 2.0
    ax = viz.heatmap_overlay(np.zeros((8, 8, 3), np.uint8), heatmap, alpha=0.5, fade=True, title="hm")
    alpha = ax.images[1].get_alpha()
    assert alpha[1, 2] == pytest.approx(0.5) and alpha[0, 0] == 0.0


def test_heatmap_grid_one_titled_panel_per_channel():
    fig = viz.heatmap_grid(np.random.default_rng(0).random((17, 8, 6)), image=np.zeros((32, 24, 3), np.uint8))
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 17 and len(fig.axes) == 18
    assert visible[5].get_title() == KEYPOINT_NAMES[5].replace("_", " ")
    fig = viz.heatmap_grid(np.zeros((3, 8, 8)), names=None)
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["0", "1", "2"]


def test_image_grid_hides_unused_panels():
    blank = np.zeros((16, 24, 3), np.uint8)
    images = [blank, to_tensor(blank), blank]
    poses = [_pose({5: (3, 3, 2), 6: (9, 3, 2)})[None], None, np.zeros((0, 17, 3))]
    fig = viz.image_grid(images, poses, ncols=2, titles=["a", "b", "c"])
    assert isinstance(fig, Figure)
    assert [ax.get_visible() for ax in fig.axes] == [True, True, True, False]
    assert fig.axes[0].get_title() == "a" and _by_gid(fig.axes[0], "limbs") is not None


# --------------------------------------------------------------------------------------------------- curves


def test_plot_curves_reads_jsonl_and_skips_records_missing_a_key(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": 0, "loss": 1.0, "lr": 0.1}, {"step": 5, "lr": 0.05}, {"step": 10, "loss": 0.5}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    ax = viz.plot_curves(path, keys=("loss", "lr"))
    assert isinstance(ax, Axes)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_array_equal(lines["loss"].get_xdata(), [0, 10])
    np.testing.assert_array_equal(lines["lr"].get_xdata(), [0, 5])
    assert ax.get_xlabel() == "step"


def test_plot_curves_several_runs_with_smoothing():
    runs = {"a": [{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.0}], "b": [{"loss": 2.0}]}
    ax = viz.plot_curves(runs, smooth=0.5, logy=False, title="runs")
    labelled = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(labelled) == {"a", "b"}
    # bias-corrected EMA: 1, then (0.5*0.5*1 + 0.5*0) / (1 - 0.25)
    np.testing.assert_allclose(labelled["a"].get_ydata(), [1.0, 1.0 / 3.0])
    np.testing.assert_array_equal(labelled["b"].get_xdata(), [0])  # no "step": record position


def test_plot_curves_names_bad_jsonl_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"step": 0}\n{oops\n')
    with pytest.raises(ValueError, match="line 2"):
        viz.plot_curves(path)


# ----------------------------------------------------------------------------------------------------- bars


def test_bar_compare_groups_errors_and_value_labels():
    table = [
        {"method": "SimplePose", "source": "paper", "AP": 72.3},
        {"method": "SimplePose", "source": "ours", "AP": 70.06, "spread": 0.4},
        {"method": "MSPN", "source": "ours", "AP": 75.0, "spread": 0.2},
    ]
    ax = viz.bar_compare(table, value="AP", label="method", group="source", errors="spread", title="AP")
    assert isinstance(ax, Axes)
    assert sorted(round(p.get_height(), 2) for p in ax.patches) == [70.06, 72.3, 75.0]  # no paper MSPN bar
    texts = {t.get_text() for t in ax.texts}
    assert {"72.3", "70.1", "75.0"} <= texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SimplePose", "MSPN"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["paper", "ours"]


def test_bar_compare_rejects_duplicate_rows():
    import pandas as pd

    table = pd.DataFrame({"m": ["a", "a"], "AP": [1.0, 2.0]})
    with pytest.raises(ValueError, match="several rows"):
        viz.bar_compare(table, value="AP", label="m")


# ------------------------------------------------------------------------------------------------- skeleton


def test_skeleton_diagram_front_facing_with_names():
    ax = viz.skeleton_diagram()
    assert isinstance(ax, Axes)
    for left, right in FLIP_PAIRS:  # the person's left is on the image right
        assert viz.CANONICAL_POSE[left, 0] > viz.CANONICAL_POSE[right, 0]
    texts = {t.get_text() for t in ax.texts}
    assert all(f"{k} {name}" in texts for k, name in enumerate(KEYPOINT_NAMES))
    assert len(ax.collections[0].get_segments()) == len(SKELETON)
    left_label = next(t for t in ax.texts if t.get_text() == "5 left_shoulder")
    assert to_rgb(left_label.get_color()) == to_rgb(viz.LEFT_COLOR)
