"""SynthPose: determinism, COCO validity, visibility semantics, crowds, left/right cues, knobs, caching, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from poselib.data.synthpose import writer
from poselib.data.synthpose.config import NAMED_CONFIGS, SynthConfig
from poselib.data.synthpose.figure import NEUTRAL, pose_figure
from poselib.data.synthpose.render import PART, PART_BITS, PART_MASK, Appearance, draw_figure
from poselib.data.synthpose.scene import PersonSpec, SceneSpec, render_example, render_scene
from poselib.keypoints import KEYPOINT_NAMES, PERSON_CATEGORY

K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
SMALL = SynthConfig(image_size=(96, 96), people=(1, 4), scale=(0.35, 0.9), crowd_height=10.0)

SKIN, HAIR, EMBLEM = (225.0, 180.0, 140.0), (20.0, 15.0, 10.0), (250.0, 250.0, 40.0)


def look(**changes) -> Appearance:
    """A plain, high-contrast outfit so that tests can find parts by colour."""
    base = dict(
        skin=SKIN, hair=HAIR, shirt=(40.0, 60.0, 200.0), trousers=(90.0, 90.0, 90.0), shoes=(10.0, 10.0, 10.0),
        emblem=EMBLEM, long_sleeves=True, long_trousers=True, hairline=-0.25, shirt_texture="plain",
        trousers_texture="plain", stripe_period=0.05, stripe_angle=0.0, texture_seed=0,
    )
    return Appearance(**(base | changes))


def person(x: float, y: float, height: float = 150.0, yaw: float = 0.0, angles=NEUTRAL) -> PersonSpec:
    return PersonSpec(
        angles=np.asarray(angles, float), appearance=look(), height_px=height, origin=np.array([x, y]), yaw=yaw
    )


def scene(people: list[PersonSpec], size=(200, 200), **kwargs) -> SceneSpec:
    for group, p in enumerate(people, start=1):
        p.group = group
    return SceneSpec(image_size=size, people=people, **kwargs)


def keypoints(annotation: dict) -> np.ndarray:
    return np.asarray(annotation["keypoints"], dtype=float).reshape(17, 3)


# ----------------------------------------------------------------------------------------------------------------
# files


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return writer.generate(tmp_path_factory.mktemp("synth") / "small", 8, 3, SMALL, progress=False)


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(tmp_path, small_set):
    again = writer.generate(tmp_path / "again", 8, 3, SMALL, progress=False)
    first, second = _files(small_set), _files(again)
    assert first.keys() == second.keys() and len(first) == 8 + 2
    assert first == second
    other = _files(writer.generate(tmp_path / "other", 8, 4, SMALL, progress=False))
    images = [name for name in first if name.suffix == ".jpg"]
    assert all(first[name] != other[name] for name in images)
    assert first[Path("annotations.json")] != other[Path("annotations.json")]


def test_images_depend_only_on_seed_and_index(tmp_path, small_set):
    prefix = writer.generate(tmp_path / "prefix", 3, 3, SMALL, progress=False)
    for name in ("000000000001.jpg", "000000000003.jpg"):
        assert (prefix / "images" / name).read_bytes() == (small_set / "images" / name).read_bytes()


def test_annotation_file_is_valid_coco(small_set):
    coco = COCO(str(small_set / "annotations.json"))
    data = json.loads((small_set / "annotations.json").read_text())
    assert data["categories"] == [PERSON_CATEGORY]
    assert data["info"]["seed"] == 3 and SynthConfig.from_dict(data["info"]["config"]) == SMALL
    image_ids = [im["id"] for im in data["images"]]
    ann_ids = [a["id"] for a in data["annotations"]]
    assert min(image_ids) >= 1 and len(set(image_ids)) == len(image_ids) == 8
    assert min(ann_ids) >= 1 and len(set(ann_ids)) == len(ann_ids) > 8
    import cv2

    for im in data["images"]:
        pixels = cv2.imread(str(small_set / "images" / im["file_name"]))
        assert pixels.shape == (im["height"], im["width"], 3) == (96, 96, 3)
    for ann in coco.loadAnns(coco.getAnnIds()):
        rle = ann["segmentation"]
        assert isinstance(rle["counts"], str) and rle["size"] == [96, 96]
        assert ann["area"] == float(mask_utils.area(rle)) > 0
        np.testing.assert_allclose(ann["bbox"], mask_utils.toBbox(rle))
        kp = keypoints(ann)
        assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert set(np.unique(kp[:, 2])) <= {0, 1, 2}
        assert np.all(kp[kp[:, 2] == 0, :2] == 0)
        labelled = kp[kp[:, 2] > 0]
        assert np.all((labelled[:, :2] >= -0.5) & (labelled[:, :2] <= 95.5))
        if ann["iscrowd"]:
            assert ann["num_keypoints"] == 0


def test_ground_truth_scores_perfect_coco_keypoint_ap(small_set):
    coco = COCO(str(small_set / "annotations.json"))
    results = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in coco.loadAnns(coco.getAnnIds()) if not a["iscrowd"] and a["num_keypoints"] > 0
    ]
    evaluation = COCOeval(coco, coco.loadRes(results), "keypoints")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(config, seed, index):
        calls.append(index)
        if index == 2:
            raise RuntimeError("boom")
        return render_example(config, seed, index)

    monkeypatch.setattr(writer, "render_example", failing)
    with pytest.raises(RuntimeError, match="boom"):
        writer.generate(tmp_path / "broken", 5, 0, SMALL, progress=False)
    assert calls == [0, 1, 2]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------------------
# labels


def test_keypoint_covered_by_a_nearer_person_is_occluded():
    back = person(100, 100)
    left_elbow = pose_figure(NEUTRAL).keypoints[K["left_elbow"], :2] * 150 + back.origin
    # the nearer person's chest (body height -0.2) covers the far person's left elbow
    front = person(left_elbow[0], left_elbow[1] + 0.2 * 150)
    rendered = render_scene(scene([back, front]))
    far, near = (keypoints(a) for a in rendered.annotations)
    assert far[K["left_elbow"], 2] == 1 and far[K["left_wrist"], 2] == 1
    for name in ("right_elbow", "right_wrist", "nose", "right_knee"):
        assert far[K[name], 2] == 2
    assert np.all(near[:, 2] == 2)
    # the label map agrees: the occluded elbow's pixel belongs to the nearer person
    x, y = np.round(far[K["left_elbow"], :2]).astype(int)
    assert rendered.label_map[y, x] >> PART_BITS == 2


def test_keypoints_hidden_by_the_own_body_in_profile():
    # yaw 90 shows the person's left side: the right eye, shoulder and hip lie on the far side
    kp = keypoints(render_scene(scene([person(100, 100, yaw=90.0)])).annotations[0])
    assert kp[K["left_eye"], 2] == 2 and kp[K["right_eye"], 2] == 1
    assert kp[K["left_shoulder"], 2] == 2 and kp[K["right_shoulder"], 2] == 1
    assert kp[K["left_ear"], 2] == 2 and kp[K["right_ear"], 2] == 1


def test_keypoints_outside_the_image_are_unlabelled():
    # the pelvis sits 10 px below the bottom edge (the image spans y in [-0.5, 199.5])
    ann = render_scene(scene([person(100, 209.5)], size=(200, 200))).annotations[0]
    kp = keypoints(ann)
    y = 209.5 + 150 * pose_figure(NEUTRAL).keypoints[:, 1]
    outside = y >= 199.5
    assert {KEYPOINT_NAMES[k] for k in np.flatnonzero(outside)} >= {"left_hip", "right_knee", "left_ankle", "right_wrist"}
    assert np.all(kp[outside] == 0)
    assert np.all(kp[~outside, 2] > 0)
    assert np.all(kp[[K["nose"], K["left_shoulder"], K["right_elbow"]], 2] == 2)
    assert ann["num_keypoints"] == int((~outside).sum())


def test_almost_fully_hidden_person_keeps_a_mask_but_no_keypoints():
    back, front = person(100, 100, height=80.0), person(100, 110, height=180.0)
    anns = render_scene(scene([back, front])).annotations
    assert len(anns) == 2
    assert anns[0]["num_keypoints"] == 0 and anns[0]["area"] > 0 and not anns[0]["iscrowd"]
    assert np.all(keypoints(anns[0]) == 0)


def test_tiny_people_become_crowd_regions():
    tiny = SynthConfig(image_size=(96, 96), people=(2, 3), scale=(0.05, 0.12), crowd_height=16.0, crowd_prob=0.0)
    anns = [a for i in range(4) for a in render_example(tiny, 0, i).annotations]
    assert anns and all(a["iscrowd"] == 1 and a["num_keypoints"] == 0 for a in anns)
    assert all(a["area"] > 0 and not any(a["keypoints"]) for a in anns)
    # a background crowd is one region covering several tiny people
    crowded = SynthConfig(image_size=(128, 128), people=(1, 1), crowd_prob=1.0, crowd_height=20.0, crowd_size=(5, 5))
    for i in range(3):
        rendered = render_example(crowded, 0, i)
        members = [p for p in rendered.spec.people if p.crowd]
        assert len(members) == 5 and len({p.group for p in members}) == 1
        regions = [a for a in rendered.annotations if a["iscrowd"]]
        assert len(regions) >= 1


# ----------------------------------------------------------------------------------------------------------------
# left and right


def _draw_alone(yaw: float):
    image = np.full((220, 140, 3), 128, np.uint8)
    label = np.zeros((220, 140), np.uint16)
    drawing = draw_figure(image, label, pose_figure(NEUTRAL, yaw), np.array([70.0, 100.0]), 200.0, look(), 1)
    return image, label, drawing


def _pixels_near(image, mask, colour, tolerance=30.0) -> int:
    return int((np.abs(image[mask].astype(float) - colour).max(axis=1) < tolerance).sum())


def test_left_side_appears_on_the_image_right_when_facing_the_camera():
    front, back = pose_figure(NEUTRAL, 0.0).keypoints, pose_figure(NEUTRAL, 180.0).keypoints
    for left, right in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_eye", "right_eye")):
        assert front[K[left], 0] > front[K[right], 0]
        assert back[K[left], 0] < back[K[right], 0]


def test_face_and_shirt_front_show_only_from_the_front():
    front_image, front_label, _ = _draw_alone(0.0)
    back_image, back_label, _ = _draw_alone(180.0)
    head = lambda label: (label & PART_MASK) == PART["head"]  # noqa: E731
    chest = lambda label: np.isin(label & PART_MASK, [PART["chest"], PART["chest_mark"]])  # noqa: E731
    front_skin = _pixels_near(front_image, head(front_label), SKIN)
    back_skin = _pixels_near(back_image, head(back_label), SKIN)
    front_hair = _pixels_near(front_image, head(front_label), HAIR)
    back_hair = _pixels_near(back_image, head(back_label), HAIR)
    assert front_skin > 3 * back_skin and back_hair > 2 * front_hair
    assert _pixels_near(front_image, chest(front_label), EMBLEM) > 20
    assert _pixels_near(back_image, chest(back_label), EMBLEM) == 0


def test_near_arm_is_drawn_over_the_torso_and_far_arm_behind_it():
    # an arm reaching across the body: seen from the front it covers the chest, from the back the chest hides it
    angles = NEUTRAL.copy()
    from poselib.data.synthpose.figure import ANGLE_INDEX

    angles[ANGLE_INDEX["l_shoulder_flex"]] = 80.0
    angles[ANGLE_INDEX["l_shoulder_abd"]] = -10.0
    angles[ANGLE_INDEX["l_elbow"]] = 100.0
    angles[ANGLE_INDEX["l_shoulder_twist"]] = 80.0
    counts = {}
    for yaw in (0.0, 180.0):
        image = np.full((220, 140, 3), 128, np.uint8)
        label = np.zeros((220, 140), np.uint16)
        draw_figure(image, label, pose_figure(angles, yaw), np.array([70.0, 100.0]), 200.0, look(long_sleeves=False), 1)
        counts[yaw] = int(((label & PART_MASK) == PART["left_forearm"]).sum())
    assert counts[0.0] > 100 and counts[180.0] < counts[0.0] / 3


# ----------------------------------------------------------------------------------------------------------------
# knobs


def _mean_over(config: SynthConfig, measure, n: int = 10) -> float:
    return float(np.mean([measure(render_example(config, 7, i)) for i in range(n)]))


def _occluded_fraction(rendered) -> float:
    kp = np.array([keypoints(a) for a in rendered.annotations if not a["iscrowd"]]).reshape(-1, 3)
    labelled = kp[kp[:, 2] > 0]
    return float((labelled[:, 2] == 1).mean()) if len(labelled) else 0.0


def test_more_occlusion_hides_more_keypoints():
    # keypoints are kept however hidden a person is: otherwise the most occluded people drop out of the measure
    base = SMALL.replace(people=(3, 4), crowd_prob=0.0, min_visible_fraction=0.0)
    fractions = [_mean_over(base.replace(occlusion=o), _occluded_fraction) for o in (0.0, 0.5, 1.0)]
    assert fractions[0] < fractions[1] < fractions[2]


def test_more_clutter_adds_background_structure():
    def background_edges(rendered) -> float:
        grey = rendered.image.astype(float).mean(axis=2)
        edges = np.abs(np.diff(grey, axis=1)) > 20
        return float(edges[rendered.label_map[:, 1:] == 0].mean())

    base = SMALL.replace(people=(1, 1), crowd_prob=0.0, occlusion=0.0)
    low, high = (_mean_over(base.replace(clutter=c), background_edges, 6) for c in (0.0, 1.0))
    assert high > 2 * low


def test_scale_and_people_knobs():
    def person_heights(rendered) -> float:
        return float(np.mean([a["bbox"][3] for a in rendered.annotations if not a["iscrowd"]] or [0.0]))

    base = SMALL.replace(crowd_prob=0.0, occlusion=0.0)
    big = _mean_over(base.replace(scale=(0.5, 0.6)), person_heights, 6)
    small = _mean_over(base.replace(scale=(0.25, 0.3)), person_heights, 6)
    assert big > 1.5 * small
    counts = [sum(not p.crowd for p in render_example(base.replace(people=(3, 3)), 1, i).spec.people) for i in range(4)]
    assert counts == [3, 3, 3, 3]


def test_config_rejects_bad_knobs_and_round_trips():
    with pytest.raises(ValueError, match="occlusion"):
        SynthConfig(occlusion=1.5)
    with pytest.raises(ValueError, match="pose_mix"):
        SynthConfig(pose_mix=(("dancing", 1.0),))
    assert SynthConfig.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
    for named in NAMED_CONFIGS.values():
        assert named.splits["train"].seed != named.splits["val"].seed


# ----------------------------------------------------------------------------------------------------------------
# named splits, command line


def test_ensure_split_generates_once_and_regenerates_when_stale(tmp_path, monkeypatch):
    folder = writer.ensure_split("synthpose-mini", "val", root=tmp_path, progress=False)
    assert folder == tmp_path / "synthpose" / "synthpose-mini" / "val"
    data = json.loads((folder / "annotations.json").read_text())
    assert len(data["images"]) == NAMED_CONFIGS["synthpose-mini"].splits["val"].num_images

    calls = []
    real_generate = writer.generate
    monkeypatch.setattr(writer, "generate", lambda *a, **k: calls.append(a) or real_generate(*a, **k))
    assert writer.ensure_split("synthpose-mini", "val", root=tmp_path) == folder
    assert calls == []
    stamp = json.loads((folder / writer.STAMP_NAME).read_text())
    (folder / writer.STAMP_NAME).write_text(json.dumps(stamp | {"seed": -1}))
    writer.ensure_split("synthpose-mini", "val", root=tmp_path, progress=False)
    assert len(calls) == 1


def test_ensure_split_rejects_unknown_names_and_splits(tmp_path):
    with pytest.raises(ValueError, match="synthpose-mini"):
        writer.ensure_split("synthpose-huge", "train", root=tmp_path)
    with pytest.raises(ValueError, match="train"):
        writer.ensure_split("synthpose-mini", "test", root=tmp_path)


def test_cli_and_benchmark(tmp_path, capsys, monkeypatch):
    from poselib.cli import main
    from poselib.data.synthpose import benchmark

    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--num-images", "3", "--seed", "5", "--size", "64x80",
                 "--people", "2,2", "--occlusion", "0.2", "--quiet"]) == 0
    data = json.loads((out / "annotations.json").read_text())
    assert [(im["height"], im["width"]) for im in data["images"]] == [(64, 80)] * 3
    assert data["info"]["config"]["people"] == [2, 2] and data["info"]["seed"] == 5
    assert main(["synth", "--out", str(tmp_path / "bad"), "--clutter", "3", "--quiet"]) == 2
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "bad"), "--people", "3"])

    monkeypatch.setattr(benchmark, "_one_thread", lambda: None)  # keep torch out of this test
    capsys.readouterr()
    assert benchmark.main(["--num-images", "3", "--size", "64x64"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "synth" and result["images_per_s"] > 0 and result["size"] == [64, 64]


def test_split_statistics_known_counts(tmp_path):
    from poselib.data.synthpose.stats import split_statistics

    kp = np.zeros((17, 3))
    kp[:5] = [10, 10, 2]
    kp[5:7] = [10, 10, 1]
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 100, "height": 200}],
        "annotations": [
            {"id": 1, "image_id": 1, "iscrowd": 0, "keypoints": kp.ravel().tolist(), "bbox": [0, 0, 20, 50]},
            {"id": 2, "image_id": 1, "iscrowd": 1, "keypoints": [0] * 51, "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": 2, "iscrowd": 0, "keypoints": [0] * 51, "bbox": [0, 0, 30, 100]},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    stats = split_statistics(path)
    assert stats.num_images == 2
    assert stats.people_per_image.tolist() == [1, 1] and stats.crowd_regions_per_image.tolist() == [1, 0]
    np.testing.assert_allclose(stats.visibility[0], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(stats.visibility[6], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(stats.visibility[16], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(stats.person_heights, [0.5, 0.5])
    assert stats.with_keypoints == 0.5
    assert list(stats.visibility_table().columns) == ["v=0", "v=1", "v=2"]


def test_visible_share_counts_visible_among_labelled_keypoints():
    from poselib.data.synthpose.stats import visible_share

    kp = np.zeros((3, 17, 3))
    kp[0, :5, 2] = 2
    kp[0, 5:9, 2] = 1  # 5 of 9 labelled keypoints visible
    kp[1, :, 2] = 2
    shares = visible_share(kp.reshape(3, 51))  # COCO's flat rows
    np.testing.assert_allclose(shares[:2], [5 / 9, 1.0])
    assert np.isnan(shares[2])  # nothing labelled


def test_render_figure_centres_one_labelled_person():
    from poselib.data.synthpose.scene import render_figure

    rendered = render_figure(NEUTRAL, 0.0, size=(160, 120))
    (ann,) = rendered.annotations
    x, y, w, h = ann["bbox"]
    assert ann["num_keypoints"] == 17 and 0.75 * 160 < h < 0.9 * 160
    assert abs((x + w / 2) - 60) < 3 and abs((y + h / 2) - 80) < 3


def test_rotation_conventions():
    from poselib.data.synthpose.figure import rotation, rotations

    # right-handed, and with y pointing down a positive z rotation turns the image x axis toward the bottom
    np.testing.assert_allclose(rotation("z", 90.0) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(rotation("x", 90.0) @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-12)
    batch = rotations(np.array([0, 1, 2]), np.array([30.0, -50.0, 170.0]))
    for matrix, axis, angle in zip(batch, "xyz", (30.0, -50.0, 170.0)):
        np.testing.assert_allclose(matrix, rotation(axis, angle), atol=1e-12)
