"""MSA R-CNN as a method: detection targets from COCO files, the coordinate round trip, the ladder, the cost helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poselib.methods import msa_rcnn as M
from poselib.methods.splits import dataset_split


@pytest.fixture(scope="module")
def mini():
    ann, images = dataset_split("synthpose-mini", "val")
    return M.DetectionDataset(ann, images)


def test_targets_are_torchvision_detection_targets(mini):
    image, target = mini[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1
    m = len(target["boxes"])
    assert target["boxes"].shape == (m, 4) and target["labels"].tolist() == [1] * m
    assert target["keypoints"].shape == (m, 17, 3) and target["keypoints"].dtype == torch.float32
    assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()


def test_keypoints_move_half_a_pixel_into_continuous_coordinates(mini):
    image_id = mini.image_ids[0]
    anns = [a for a in mini.coco.people[image_id] if a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
    target = mini.target(image_id)
    raw = np.asarray(anns[0]["keypoints"], dtype=np.float32).reshape(17, 3)
    labelled = raw[:, 2] > 0
    np.testing.assert_allclose(target["keypoints"][0, labelled, :2].numpy(), raw[labelled, :2] + 0.5)
    np.testing.assert_allclose(target["keypoints"][0, ~labelled, :2].numpy(), raw[~labelled, :2])


def test_flip_mirrors_boxes_and_swaps_keypoint_sides():
    ann, images = dataset_split("synthpose-mini", "train")
    plain = M.DetectionDataset(ann, images, train=True, flip_prob=0.0)
    flipped = M.DetectionDataset(ann, images, train=True, flip_prob=1.0)
    (img_a, a), (img_b, b) = plain[0], flipped[0]
    width = img_a.shape[-1]
    torch.testing.assert_close(img_b, img_a.flip(-1))
    torch.testing.assert_close(b["boxes"][:, [0, 2]], width - a["boxes"][:, [2, 0]])
    # left shoulder (5) of the flipped person is the mirrored right shoulder (6) of the original
    vis = a["keypoints"][:, 6, 2] > 0
    torch.testing.assert_close(b["keypoints"][vis, 5, 0], width - a["keypoints"][vis, 6, 0])
    assert all(len(plain.coco.people[i]) for i in plain.image_ids)  # training skips images without people


def test_ground_truth_as_predictions_scores_perfect_ap(mini):
    """The coordinate round trip: targets -> (model's convention) -> predict's output convention -> AP 1."""
    ids, boxes, scores, poses = [], [], [], []
    for image_id in mini.image_ids:
        t = mini.target(image_id)
        kept = [a for a in mini.coco.people[image_id] if a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
        for box, kps, ann in zip(t["boxes"], t["keypoints"], kept):
            ids.append(image_id)
            boxes.append(torch.cat([box[:2], box[2:] - box[:2]]).numpy())
            xy = torch.where(kps[:, 2:] > 0, kps[:, :2] - 0.5, kps[:, :2])  # what predict() undoes
            # a person without labelled keypoints gets all-zero scores: no pose result (it is no keypoint target)
            poses.append(torch.cat([xy, (kps[:, 2:] > 0).float()], -1).numpy())
            scores.append(1.0)
    preds = {"image_ids": np.array(ids), "boxes": np.stack(boxes), "scores": np.array(scores), "poses": np.stack(poses)}
    metrics = M.evaluate_predictions(preds, mini.ann_path)
    assert metrics["keypoints"]["AP"] == pytest.approx(1.0)
    assert metrics["boxes"]["AP"] == pytest.approx(1.0)


def test_predict_and_evaluate_an_untrained_model(mini):
    recipe = M.recipe("smoke", "msroialign")
    torch.manual_seed(0)
    model = M.build(recipe)
    subset = M.DetectionDataset(mini.ann_path, mini.image_dir)
    subset.image_ids = subset.image_ids[:3]
    preds = M.predict(model, subset, progress=False)
    assert preds["poses"].shape[1:] == (17, 3) and len(preds["boxes"]) == len(preds["scores"]) == len(preds["image_ids"])
    metrics = M.evaluate_predictions(preds, mini.ann_path)
    assert set(metrics) == {"keypoints", "boxes"} and 0 <= metrics["keypoints"]["AP"] <= 1


def test_ladder_is_cumulative_and_marks_what_runs():
    rungs = {r.key: r for r in M.ladder("cpu")}
    assert [r.key for r in M.ladder("cpu")] == [k for k, _, _ in M.LADDER]
    assert rungs["baseline"].recipe.model.get("keypoint_head", "convs") == "convs"
    kps = rungs["mskpsnet"].recipe.model
    assert (kps["keypoint_levels"], kps["output"], kps["keypoint_head"]) == ("p2", "deconv_1x1", "mskpsnet")
    assert rungs["msroialign"].recipe.model["ms_roialign"] == "sum"
    assert [k for k, r in rungs.items() if r.run] == ["baseline", "msroialign", "top2", "tta"]
    assert rungs["msroialign"].recipe.model["keypoint_head"] == "mskpsnet"  # folded rungs pass their switches on
    # test-time rungs reuse the trained model: same training key, other decoder / scales
    top2, tta = rungs["top2"].recipe, rungs["tta"].recipe
    assert top2.training_key() == rungs["msroialign"].recipe.training_key() == tta.training_key()
    assert (top2.decoder, tta.tta_scales) == ("top2", (0.75, 1.0, 1.25))
    # "longer" is dropped at cpu scale and kept at gpu scale
    assert rungs["msroialign"].recipe.train["epochs"] == rungs["baseline"].recipe.train["epochs"]
    gpu = {r.key: r for r in M.ladder("gpu")}
    assert all(r.run for r in gpu.values())
    assert gpu["longer"].recipe.train["epochs"] == round(gpu["baseline"].recipe.train["epochs"] * 1.44)


def test_recipe_overrides_and_concat_variant():
    r = M.recipe("cpu", "concat", train={"epochs": 1})
    assert r.model["ms_roialign"] == "concat" and r.train["epochs"] == 1 and "lr" in r.train
    with pytest.raises(ValueError, match="unknown step"):
        M.recipe("cpu", "nope")


def test_training_memory_and_complexity_of_a_small_model():
    recipe = M.recipe("smoke", "msroialign")
    torch.manual_seed(0)
    model = M.build(recipe)
    ann, images = dataset_split("synthpose-mini", "train")
    data = M.DetectionDataset(ann, images, train=True)
    imgs, targets = M.collate_detection([data[0], data[1]])
    memory = M.training_memory_mb(model, M.detection_loss_fn(imgs, targets))
    assert memory["activations"] > 0 and memory["total"] == pytest.approx(memory["activations"] + memory["weights"])
    parts = M.complexity(model)
    assert parts["total"] == pytest.approx(parts["backbone_rpn"] + parts["box"] + parts["keypoint"])


def test_train_and_predict_commands(tmp_path, monkeypatch, capsys):
    """`poselib train --method msarcnn` trains, evaluates and records; `poselib predict` finds people itself."""
    import json

    from poselib.cli import main

    monkeypatch.setenv("POSELIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("POSELIB_RESULTS", str(tmp_path / "results"))
    smoke_schedule = M._train_preset
    monkeypatch.setattr(M, "_train_preset", lambda preset: {**smoke_schedule(preset), "max_steps": 2})
    assert main(["train", "--method", "msarcnn", "--preset", "smoke", "--epochs", "1", "--no-progress"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["method"] == "msarcnn" and {"AP", "box_AP"} <= set(last)
    record = json.loads((tmp_path / "results" / "smoke" / "msarcnn-seed0.json").read_text())
    assert record["metrics"]["kp_AP"] == last["AP"]
    run = next((tmp_path / "cache" / "runs").glob("msarcnn-msroialign-*"))
    model, recipe = M.load_trained(run)
    assert recipe.decoder == "top2" and model.roi_heads.decoder == "top2"
    ann, images = dataset_split("synthpose-mini", "val")
    data = M.DetectionDataset(ann, images)
    image = data.coco.image_path(data.image_ids[0])
    out = tmp_path / "out"
    assert main(["predict", "--method", "msarcnn", "--checkpoint", str(run), str(image), "--out", str(out)]) == 0
    assert (out / "results.json").is_file() and (out / f"{image.stem}_pose.png").is_file()


@pytest.mark.parametrize("preset", ["smoke", "cpu", "gpu", "coco"])
def test_every_preset_has_valid_recipes(preset):
    for rung in M.ladder(preset):
        assert rung.recipe.config.min_size > 0  # MSARCNNConfig validates every field
    full = M.recipe(preset, "msroialign")
    assert full.config.ms_roialign == "sum" and full.config.pretrained == (preset == "coco")


def test_no_detections_score_zero_rather_than_fail(mini):
    empty = {"image_ids": np.zeros(0, int), "boxes": np.zeros((0, 4)), "scores": np.zeros(0), "poses": np.zeros((0, 17, 3))}
    metrics = M.evaluate_predictions(empty, mini.ann_path)
    assert metrics["keypoints"]["AP"] == 0.0 and metrics["boxes"]["AP"] == 0.0
