"""COCO evaluation wrapper, OKS and OKS-NMS, results files and ``poselib eval``, on a small hand-made ground truth."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval

from poselib import cli
from poselib.evaluation import (
    BOX_METRICS,
    KEYPOINT_METRICS,
    EvaluationInputError,
    boxes_to_coco_results,
    evaluate_boxes,
    evaluate_keypoints,
    ground_truth_as_results,
    load_ground_truth,
    oks_nms,
    pairwise_oks,
    poses_to_coco_results,
    write_results,
)
from poselib.evaluation.oks import matched_oks, oks
from poselib.keypoints import COCO_SIGMAS, NUM_KEYPOINTS, PERSON_CATEGORY

# a standing person in a unit box, (x, y) per COCO keypoint
TEMPLATE = np.array(
    [[0.5, 0.08], [0.55, 0.06], [0.45, 0.06], [0.6, 0.08], [0.4, 0.08], [0.7, 0.22], [0.3, 0.22], [0.8, 0.38],
     [0.2, 0.38], [0.85, 0.52], [0.15, 0.52], [0.62, 0.55], [0.38, 0.55], [0.63, 0.76], [0.37, 0.76], [0.64, 0.97],
     [0.36, 0.97]]
)


def _person(ann_id, image_id, box, area, labelled=None, iscrowd=0):
    x, y, w, h = box
    xy = TEMPLATE * [w, h] + [x, y]
    v = np.full(NUM_KEYPOINTS, 2.0)
    if labelled is not None:
        v[:] = 0
        v[list(labelled)] = 2
    kpts = np.concatenate([xy * (v[:, None] > 0), v[:, None]], 1)  # unlabelled keypoints are (0, 0, 0)
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "bbox": list(map(float, box)), "area": float(area),
        "iscrowd": iscrowd, "keypoints": np.round(kpts, 2).ravel().tolist(), "num_keypoints": int((v > 0).sum()),
    }


def _ground_truth() -> dict:
    """Three images: large, medium and small people, one with few labelled keypoints, a crowd region, a person
    without keypoints, and a small person overlapping a medium one."""
    annotations = [
        _person(1, 1, (100, 50, 110, 220), 18000),  # large
        _person(2, 1, (300, 80, 40, 90), 2500),  # medium
        _person(3, 1, (400, 100, 150, 150), 12000, labelled=[], iscrowd=1),  # crowd region
        _person(4, 2, (20, 30, 15, 35), 400),  # small
        _person(5, 2, (200, 40, 60, 120), 5000, labelled=[]),  # a person with no labelled keypoint
        _person(6, 2, (320, 60, 120, 260), 24000, labelled=[0, 5, 6, 7, 9, 11, 12, 13, 15]),  # large, partial
        _person(7, 3, (50, 50, 50, 100), 3500, labelled=[5, 6, 11, 12, 0]),  # medium, five keypoints
        _person(8, 2, (504, 300, 40, 80), 900),  # small, almost on top of the next (medium) person
        _person(9, 2, (500, 300, 40, 80), 3000),
    ]
    images = [{"id": i, "file_name": f"{i:06d}.png", "width": 640, "height": 480} for i in (1, 2, 3)]
    return {"images": images, "annotations": annotations, "categories": [dict(PERSON_CATEGORY)]}


@pytest.fixture
def gt() -> dict:
    return _ground_truth()


@pytest.fixture
def gt_file(tmp_path, gt):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


# ---------------------------------------------------------------- COCO metrics


def test_ground_truth_submitted_as_results_scores_one(gt, gt_file):
    results = ground_truth_as_results(gt_file)
    assert sorted(r["image_id"] for r in results) == [1, 1, 2, 2, 2, 2, 3]  # no crowd, no keypoint-less person
    metrics = evaluate_keypoints(gt_file, results)
    assert list(metrics) == list(KEYPOINT_METRICS)
    assert all(value == pytest.approx(1.0) for value in metrics.values()), metrics
    assert gt == _ground_truth()  # the caller's dict is not modified
    # the overlapping pair matters: with equal scores the small person's detection claims the medium one
    tied = [{**r, "score": 1.0} for r in results]
    assert evaluate_keypoints(gt, tied)["APm"] < 0.99


def test_boxes_of_ground_truth_score_one_and_empty_results_score_zero(gt):
    results = ground_truth_as_results(gt, iou_type="bbox")
    assert len(results) == 8  # every person but the crowd region, with or without keypoints
    metrics = evaluate_boxes(gt, results)
    assert list(metrics) == list(BOX_METRICS)
    # AR1 allows one detection per image: three images, eight people
    assert metrics.pop("AR1") == pytest.approx(3 / 8)
    assert all(value == pytest.approx(1.0) for value in metrics.values()), metrics
    assert all(value == 0.0 for value in evaluate_boxes(gt, []).values())


def test_empty_results_give_zeros_not_a_crash(gt):
    metrics = evaluate_keypoints(gt, [])
    assert metrics == {name: 0.0 for name in KEYPOINT_METRICS}


def test_area_range_without_ground_truth_reports_minus_one(gt):
    # image 3 holds one medium person only: no large ground truth there
    metrics = evaluate_keypoints(gt, ground_truth_as_results(gt), image_ids=[3])
    assert metrics["APm"] == pytest.approx(1.0)
    assert metrics["APl"] == -1.0 and metrics["ARl"] == -1.0


def test_image_subset(gt):
    only_image_1 = [r for r in ground_truth_as_results(gt) if r["image_id"] == 1]
    assert evaluate_keypoints(gt, only_image_1, image_ids=[1])["AP"] == pytest.approx(1.0)
    everywhere = evaluate_keypoints(gt, only_image_1)
    assert everywhere["AR"] == pytest.approx(2 / 7)  # two of seven evaluated people found
    with pytest.raises(EvaluationInputError, match="99"):
        evaluate_keypoints(gt, only_image_1, image_ids=[1, 99])


def test_known_oks_gives_known_ap(gt):
    """Every keypoint displaced so that each pose's OKS is exactly 0.72: matched at thresholds 0.50..0.70 only."""
    target = 0.72
    results = []
    rng = np.random.default_rng(0)
    for ann in gt["annotations"]:
        if ann["iscrowd"] or ann["num_keypoints"] == 0:
            continue
        kpts = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        distance = np.sqrt(-np.log(target) * 2 * ann["area"] * (2 * COCO_SIGMAS) ** 2)
        angle = rng.uniform(0, 2 * np.pi, NUM_KEYPOINTS)
        kpts[:, 0] += distance * np.cos(angle)
        kpts[:, 1] += distance * np.sin(angle)
        assert oks(np.array(ann["keypoints"]).reshape(1, -1, 3), [ann["area"]], kpts[None])[0, 0] == pytest.approx(target)
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kpts.ravel().tolist(), "score": 0.9})
    metrics = evaluate_keypoints(gt, results)
    assert metrics["AP"] == pytest.approx(0.5)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == 0.0
    assert metrics["AR"] == pytest.approx(0.5)


def test_sigmas_change_the_score(gt):
    results = ground_truth_as_results(gt)
    for r in results:
        r["keypoints"] = [v + 3.0 if i % 3 < 2 else v for i, v in enumerate(r["keypoints"])]
    default = evaluate_keypoints(gt, results)["AP"]
    loose = evaluate_keypoints(gt, results, sigmas=COCO_SIGMAS * 4)["AP"]
    assert loose > default


# ---------------------------------------------------------------- OKS


def test_oks_matches_pycocotools_compute_oks(gt):
    rng = np.random.default_rng(3)
    results = []
    for ann in gt["annotations"]:
        for _ in range(2):
            kpts = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            x, y, w, h = ann["bbox"]
            if ann["num_keypoints"] == 0:  # guess somewhere around (and partly outside) the box
                kpts[:, :2] = rng.uniform([x - 2 * w, y - 2 * h], [x + 3 * w, y + 3 * h], (NUM_KEYPOINTS, 2))
            kpts[:, :2] += rng.normal(0, 0.05 * np.sqrt(ann["area"]), (NUM_KEYPOINTS, 2))
            kpts[:, 2] = rng.uniform(0, 1, NUM_KEYPOINTS)
            results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kpts.ravel().tolist(),
                            "score": float(rng.uniform())})
    coco_gt = load_ground_truth(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "keypoints")
        evaluator.evaluate()
    checked_unlabelled = False
    for image_id in (1, 2, 3):
        gts = evaluator._gts[image_id, 1]
        dts = sorted(evaluator._dts[image_id, 1], key=lambda d: -d["score"])
        expected = evaluator.ious[image_id, 1]
        got = oks(
            np.array([g["keypoints"] for g in gts]).reshape(len(gts), -1, 3),
            [g["area"] for g in gts],
            np.array([d["keypoints"] for d in dts]).reshape(len(dts), -1, 3),
            gt_boxes=[g["bbox"] for g in gts],
        )
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
        checked_unlabelled |= any(g["num_keypoints"] == 0 for g in gts)
        assert (expected > 0.01).any() and (expected < 0.99).any()  # a meaningful comparison
    assert checked_unlabelled


def test_matched_oks_is_the_diagonal_of_oks():
    rng = np.random.default_rng(5)
    gt = np.concatenate([TEMPLATE * [60, 160] + [100, 100], np.full((NUM_KEYPOINTS, 1), 2.0)], 1)
    gts = np.stack([gt + [40 * i, 0, 0] for i in range(4)])
    gts[1, :6, 2] = 0  # partly labelled
    gts[3, :, 2] = 0  # nothing labelled: 0, as oks() without boxes
    areas = rng.uniform(2000, 6000, 4)
    dts = gts + np.concatenate([rng.normal(0, 3, (4, NUM_KEYPOINTS, 2)), np.zeros((4, NUM_KEYPOINTS, 1))], -1)
    expected = np.diag(oks(gts, areas, dts))
    np.testing.assert_allclose(matched_oks(gts, areas, dts), expected, rtol=1e-12)
    assert 0.2 < expected[:3].min() and expected[:3].max() < 1.0 and expected[3] == 0.0
    with pytest.raises(ValueError, match="one ground truth per detection"):
        matched_oks(gts, areas, dts[:3])


def test_oks_nms_keeps_the_best_of_each_cluster():
    base = np.concatenate([TEMPLATE * [60, 160] + [100, 100], np.ones((NUM_KEYPOINTS, 1))], 1)
    other = base + [200, 0, 0]
    near = base + [1.0, -1.0, 0]
    poses = np.stack([near, base, other, other + [0.5, 0.5, 0]])
    scores = np.array([0.8, 0.9, 0.7, 0.75])
    areas = np.full(4, 60 * 160.0)
    np.testing.assert_allclose(np.diag(pairwise_oks(poses, areas)), 1.0)
    assert oks_nms(poses, scores, areas, threshold=0.9).tolist() == [1, 3]
    # a strict enough threshold keeps everything, in score order
    assert oks_nms(poses, scores, areas, threshold=1.0).tolist() == [1, 0, 3, 2]
    assert oks_nms(np.zeros((0, 17, 3)), np.zeros(0), np.zeros(0)).tolist() == []


# ---------------------------------------------------------------- results files


def test_poses_to_coco_results_skips_poses_with_no_scored_keypoint(tmp_path):
    poses = np.zeros((3, NUM_KEYPOINTS, 3))
    poses[0, :, :2] = 10.123
    poses[0, :, 2] = 0.5
    poses[2, 4] = [3.0, 4.0, 0.25]
    results = poses_to_coco_results(np.array([7, 8, 9], dtype=np.int64), poses, np.float32([0.9, 0.8, 0.7]))
    assert [r["image_id"] for r in results] == [7, 9]
    assert len(results[0]["keypoints"]) == 51 and results[0]["keypoints"][:3] == [10.12, 10.12, 0.5]
    assert results[1]["score"] == pytest.approx(0.7)
    path = write_results(tmp_path / "sub" / "res.json", results)
    assert json.loads(path.read_text()) == results
    with pytest.raises(ValueError, match="image_ids has 2"):
        poses_to_coco_results([1, 2], poses, [0.1, 0.2, 0.3])
    boxes = boxes_to_coco_results([1, 2], np.array([[1, 2, 3, 4], [1, 2, 0, 4]]), [0.5, 0.6])
    assert boxes == [{"image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}]


def test_poses_to_coco_results_of_no_poses_is_empty():
    # an image set where nothing was predicted (a model early in training) gives no results, not a crash
    assert poses_to_coco_results(np.zeros(0, dtype=np.int64), np.zeros((0, NUM_KEYPOINTS, 3)), np.zeros(0)) == []


# ---------------------------------------------------------------- bad input


def test_errors_name_the_file_and_the_record(tmp_path, gt, gt_file):
    with pytest.raises(EvaluationInputError, match="missing.json"):
        evaluate_keypoints(tmp_path / "missing.json", [])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(EvaluationInputError, match="broken.json"):
        evaluate_keypoints(gt_file, broken)
    results = ground_truth_as_results(gt)
    results[2]["keypoints"] = results[2]["keypoints"][:48]
    res_file = write_results(tmp_path / "res.json", results)
    with pytest.raises(EvaluationInputError, match=r"res\.json: record 2 \(image_id 2\).*51 numbers, got 48"):
        evaluate_keypoints(gt_file, res_file)
    with pytest.raises(EvaluationInputError, match="record 0 .*not in the ground truth"):
        evaluate_keypoints(gt, [{**ground_truth_as_results(gt)[0], "image_id": 42}])
    bad_gt = _ground_truth()
    del bad_gt["annotations"][3]["num_keypoints"]
    with pytest.raises(EvaluationInputError, match=r"annotation 3 \(id 4, image_id 2\) has no 'num_keypoints'"):
        evaluate_keypoints(bad_gt, [])


# ---------------------------------------------------------------- poselib eval


def _run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_table_then_json(tmp_path, gt, gt_file, capsys):
    res = write_results(tmp_path / "res.json", ground_truth_as_results(gt))
    code, out, _ = _run_cli(["eval", "--gt", str(gt_file), "--results", str(res)], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    metrics = json.loads(lines[-1])
    assert list(metrics) == list(KEYPOINT_METRICS) and metrics["AP"] == pytest.approx(1.0)
    assert any(line.split()[:1] == ["APm"] for line in lines[:-1])

    boxes = write_results(tmp_path / "boxes.json", ground_truth_as_results(gt, iou_type="bbox"))
    code, out, _ = _run_cli(["eval", "--gt", str(gt_file), "--results", str(boxes), "--iou-type", "bbox"], capsys)
    assert code == 0 and list(json.loads(out.strip().splitlines()[-1])) == list(BOX_METRICS)


def test_cli_names_a_missing_file(tmp_path, gt_file, capsys):
    code, _, err = _run_cli(["eval", "--gt", str(gt_file), "--results", str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "nope.json" in err
