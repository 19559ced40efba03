"""End to end on the smoke preset: train, evaluate, cache, record, predict (the faces users call)."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from poselib.cli import main
from poselib.methods import get_method, simple_baseline, topdown


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    """Model cache and result records in a temporary folder; the (deterministic) smoke data stays shared."""
    root = tmp_path_factory.mktemp("methods")
    patch = pytest.MonkeyPatch()
    patch.setenv("POSELIB_CACHE", str(root / "cache"))
    patch.setenv("POSELIB_RESULTS", str(root / "results"))
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def trained(isolated):
    recipe = simple_baseline.recipe("smoke", train={"max_steps": 4})
    return topdown.train(recipe, seed=0, progress=False)


def test_unknown_method_is_named():
    with pytest.raises(KeyError, match="simplebaseline"):
        get_method("nope")


def test_recipe_overrides_merge_training_fields():
    recipe = simple_baseline.recipe("cpu", train={"epochs": 1})
    assert recipe.train["epochs"] == 1 and recipe.train["optimizer"] == "adam"
    with pytest.raises(ValueError, match="preset"):
        simple_baseline.recipe("laptop")


def test_training_is_cached_by_recipe_and_seed(trained):
    assert (trained.run_dir / "final.pt").is_file()
    again = topdown.train(trained.recipe, seed=0, progress=False)
    assert again.run_dir == trained.run_dir and again.result.cached
    other = topdown.train(trained.recipe, seed=1, progress=False)
    assert other.run_dir != trained.run_dir


def test_trained_weights_depend_on_the_seed_not_on_earlier_random_draws(trained, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("POSELIB_CACHE", str(tmp_path / "cache"))
    torch.rand(1000)  # the caller's global generator is elsewhere than when `trained` was made
    retrained = topdown.train(trained.recipe, seed=0, progress=False)
    assert retrained.run_dir != trained.run_dir and not retrained.result.cached
    for a, b in zip(trained.model.state_dict().values(), retrained.model.state_dict().values()):
        assert torch.equal(a, b)


def test_evaluate_and_reload_give_the_same_predictions(trained):
    _, val_set = topdown.build_datasets(trained.recipe)
    first = topdown.predict(trained.model, trained.recipe, val_set, progress=False)
    model, recipe = topdown.load_trained(trained.run_dir)
    second = topdown.predict(model, recipe, val_set, progress=False)
    as_json = lambda r: json.dumps(asdict(r), sort_keys=True)  # noqa: E731  (JSON turns tuples into lists)
    assert as_json(recipe) == as_json(trained.recipe)
    np.testing.assert_allclose(first["poses"], second["poses"], atol=1e-4)
    assert len(first["poses"]) == len(val_set) and (first["ann_ids"] >= 0).all()
    metrics = topdown.evaluate(model, recipe, val_set, progress=False)
    assert set(metrics) >= {"AP", "AP50", "AR"} and 0.0 <= metrics["AP"] <= 1.0


def test_test_times_share_one_forward_pass_and_match_separate_predictions(trained):
    from dataclasses import replace

    _, val_set = topdown.build_datasets(trained.recipe)
    settings = [(False, "argmax", 0), (True, "quarter", 0), (True, "quarter_second_max", 3), (False, "top2", 3)]
    calls = []
    hook = trained.model.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    try:
        together = topdown.predict_test_times(trained.model, val_set, settings, progress=False)
    finally:
        hook.remove()
    assert sum(calls) == 2 * len(val_set)  # each crop once, and once mirrored
    for (flip, decoder, blur), joint in zip(settings, together):
        alone = topdown.predict(trained.model, replace(trained.recipe, flip_test=flip, decoder=decoder, blur_kernel=blur),
                                val_set, progress=False)
        assert set(joint) == set(alone)
        for key in alone:
            np.testing.assert_allclose(joint[key], alone[key], atol=1e-5)
    metrics = topdown.evaluate_test_times(trained.model, val_set, settings[:2], progress=False)
    assert len(metrics) == 2 and all(0.0 <= m["AP"] <= 1.0 for m in metrics)


def test_person_oks_scores_each_crop_against_its_own_annotation(trained):
    _, val_set = topdown.build_datasets(trained.recipe)
    predictions = topdown.predict(trained.model, trained.recipe, val_set, progress=False)
    by_id = {a["id"]: a for anns in val_set.coco.people.values() for a in anns}
    exact = dict(predictions, poses=np.stack([np.reshape(by_id[int(i)]["keypoints"], (17, 3)) for i in predictions["ann_ids"]]))
    np.testing.assert_allclose(topdown.person_oks(exact, val_set), 1.0)  # ground truth as the prediction
    values = topdown.person_oks(predictions, val_set)
    assert values.shape == (len(val_set),) and ((values >= 0) & (values <= 1)).all()
    with pytest.raises(ValueError, match="ground-truth boxes"):
        topdown.person_oks(dict(predictions, ann_ids=-np.ones_like(predictions["ann_ids"])), val_set)


def test_nms_per_image_removes_duplicate_poses():
    pose = np.zeros((17, 3))
    pose[:, 0], pose[:, 1], pose[:, 2] = np.arange(17) * 3.0, np.arange(17) * 2.0, 1.0
    predictions = {
        "poses": np.stack([pose, pose + 0.1, pose + 40.0]),
        "scores": np.array([0.9, 0.8, 0.7]),
        "image_ids": np.array([1, 1, 1]),
        "ann_ids": np.array([-1, -1, -1]),
        "areas": np.array([2000.0, 2000.0, 2000.0]),
    }
    kept = topdown.nms_per_image(predictions)
    assert kept["scores"].tolist() == [0.9, 0.7]


def test_train_command_writes_a_record_and_prints_metrics(isolated, capsys):
    assert main(["train", "--method", "simplebaseline", "--preset", "smoke", "--epochs", "1", "--no-progress"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["method"] == "simplebaseline" and "AP" in last
    record = json.loads((isolated / "results" / "smoke" / "simplebaseline-seed0.json").read_text())
    assert record["metrics"]["AP"] == last["AP"] and record["dataset"]["name"] == "synthpose-mini"


def test_train_and_predict_commands_for_a_bottom_up_method(isolated, capsys, tmp_path):
    assert main(["train", "--method", "simplepose", "--preset", "smoke", "--epochs", "1", "--no-progress"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["method"] == "simplepose" and "AP" in last
    record = json.loads((isolated / "results" / "smoke" / "simplepose-seed0.json").read_text())
    assert record["metrics"]["AP"] == last["AP"] and record["gmacs"] > 0
    run = Path(record["extra"]["run_dir"])
    assert (run / "final.pt").is_file()

    from poselib.methods import simple_pose

    model, recipe = simple_pose.load_trained(run)
    as_json = lambda r: json.dumps(asdict(r), sort_keys=True)  # noqa: E731  (JSON turns tuples into lists)
    assert as_json(recipe) == as_json(simple_pose.recipe("smoke", train={"epochs": 1}))
    _, val_set = simple_pose.build_datasets(recipe)
    image = val_set.coco.image_path(val_set.image_ids[0])
    out = tmp_path / "out"
    assert main(["predict", "--method", "simplepose", "--checkpoint", str(run), str(image), "--out", str(out)]) == 0
    assert (out / f"{image.stem}_pose.png").is_file()
    results = json.loads((out / "results.json").read_text())
    assert all(r["image_id"] == 1 and len(r["keypoints"]) == 51 for r in results)


def test_multiposenet_trains_and_predicts_from_the_command_line(isolated, capsys, tmp_path):
    argv = ["train", "--method", "multiposenet", "--preset", "smoke", "--epochs", "1", "--no-progress"]
    assert main(argv) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((isolated / "results" / "smoke" / "multiposenet-seed0.json").read_text())
    assert record["metrics"]["AP"] == last["AP"]
    network, prn = record["extra"]["run_dir"], record["extra"]["prn_run_dir"]

    from poselib.methods import multiposenet

    _, val_set = multiposenet.build_datasets(multiposenet.recipe("smoke"))
    image = val_set.coco.image_path(val_set.image_ids[0])
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="--prn"):
        main(["predict", "--method", "multiposenet", "--checkpoint", network, str(image), "--out", str(out)])
    with pytest.raises(ValueError, match="not a PRN run"):
        multiposenet.load_pipeline(network, network)
    assert main(["predict", "--method", "multiposenet", "--checkpoint", network, "--prn", prn, str(image), "--out", str(out)]) == 0
    assert (out / f"{image.stem}_pose.png").is_file()
    results = json.loads((out / "results.json").read_text())
    assert all(r["image_id"] == 1 and len(r["keypoints"]) == 51 for r in results)


def test_predict_command_draws_and_writes_results(trained, tmp_path):
    _, val_set = topdown.build_datasets(trained.recipe)
    image_id = val_set.coco.image_ids[0]
    image = val_set.coco.image_path(image_id)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({image.name: [ann["bbox"] + [0.9] for ann in val_set.coco.people[image_id]]}))
    out = tmp_path / "out"
    assert main(["predict", "--method", "simplebaseline", "--checkpoint", str(trained.run_dir), str(image), "--boxes", str(boxes), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results and all(len(r["keypoints"]) == 51 for r in results)
    assert (out / f"{image.stem}_pose.png").is_file()


def test_predict_command_names_a_bad_image(trained, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(SystemExit, match="broken.jpg"):
        main(["predict", "--method", "simplebaseline", "--checkpoint", str(trained.run_dir), str(bad)])


def test_evaluate_trained_is_stored_per_validation_file(trained):
    metrics = topdown.evaluate_trained(trained)
    stored = list(trained.run_dir.glob("metrics-*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["metrics"] == metrics
    record = json.loads(stored[0].read_text())
    stored[0].write_text(json.dumps({**record, "metrics": {"AP": -1.0}}))  # a second call reads the file
    assert topdown.evaluate_trained(trained) == {"AP": -1.0}
    stored[0].write_text(json.dumps({**record, "key": {"other": 1}, "metrics": {"AP": -1.0}}))  # another key
    assert topdown.evaluate_trained(trained) == metrics
    stored[0].write_text("{not json")
    assert topdown.evaluate_trained(trained) == metrics
    stored[0].unlink()


def test_top_down_chapters_share_the_cpu_schedule():
    from poselib.methods import mspn, rsn, simple_baseline
    from poselib.methods.topdown import CPU_SCHEDULE

    recipes = {"part 0": simple_baseline.recipe("cpu"), "part IV": mspn.experiment_recipe("mspn-2stage", "cpu"),
               "part V rsn": rsn.recipe("cpu"), "part V resnet": rsn.recipe("cpu", family="resnet")}
    execution = ("epochs", "channels_last")  # how long, and the memory format that is faster for the model
    for part, r in recipes.items():
        schedule = {k: v for k, v in r.train.items() if k not in execution}
        assert schedule == {k: v for k, v in CPU_SCHEDULE.items() if k not in execution}, part
    assert [r.train["epochs"] for r in recipes.values()] == [8, 2, 2, 2]
    assert [r.train["channels_last"] for r in recipes.values()] == [True, True, False, True]


def test_load_benchmark_times_every_stage_of_each_pipeline_and_prints_json_last(capsys):
    from poselib.methods import benchmark

    for method in ("mspn", "simplepose", "msarcnn"):
        assert benchmark.main([method, "--preset", "smoke", "--samples", "3"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["benchmark"] == "load" and summary["method"] == method and summary["samples"] == 3
        per = summary["ms_per_sample"]
        assert per["load"] > 0
        # top-down and bottom-up sets encode targets after loading; detection sets build theirs while loading
        assert (per["encode"] > 0) == (method != "msarcnn")
    # more samples than the training set has: all of it, no index error
    everything = benchmark.time_pipeline("simplepose", "smoke", samples=10_000)
    assert everything["samples"] == 64  # SynthPose-mini's training images, one bottom-up sample each
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        benchmark.time_pipeline("nope", "smoke")
    with pytest.raises(ValueError, match="samples must be at least 1"):
        benchmark.time_pipeline("mspn", "smoke", samples=0)
