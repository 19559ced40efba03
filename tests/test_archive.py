"""Archived records: experiments trained outside the book's build, committed, shown only while they are current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poselib.cli import main
from poselib.engine import records
from poselib.methods import mspn, topdown
from poselib.methods.splits import dataset_split


def _write(root: Path, name: str, *, run_dir: str, dirty: bool = False, val_sha: str = "abc", ap: float = 0.4,
           preset: str = "cpu") -> Path:
    ann = root / "ann.json"
    ann.write_text("{}")
    path = records.write_record(
        name, method="mspn", config={"seed": 0}, preset=preset, dataset={"name": "synthpose", "path": str(ann), "sha256": val_sha},
        metrics={"AP": ap}, params_m=1.0, gmacs=0.1, wall_time_s=90.0, extra={"run_dir": f"/anywhere/runs/{run_dir}"},
        root=root / "results",
    )  # fmt: skip
    record = json.loads(path.read_text())
    record["git"] = {"commit": "0123456789abcdef", "dirty": dirty}  # the test's checkout state must not matter
    path.write_text(records.dump_json(record))
    return path


def test_archiving_copies_a_clean_record_and_refuses_a_dirty_one(tmp_path):
    _write(tmp_path, "mspn-x-seed0", run_dir="mspn-aaa")
    archived = records.archive_record("mspn-x-seed0", "cpu", source=tmp_path / "results", archive=tmp_path / "archive")
    assert archived == tmp_path / "archive" / "cpu" / "mspn-x-seed0.json"
    copy, original = (json.loads(p.read_text()) for p in (archived, tmp_path / "results" / "cpu" / "mspn-x-seed0.json"))
    assert original["extra"]["run_dir"] == "/anywhere/runs/mspn-aaa" and copy["extra"]["run_dir"] == "mspn-aaa"
    assert copy["dataset"]["path"] == "ann.json" and copy["dataset"]["sha256"] == original["dataset"]["sha256"]
    assert {k: v for k, v in copy.items() if k not in ("extra", "dataset")} == {
        k: v for k, v in original.items() if k not in ("extra", "dataset")}

    _write(tmp_path, "mspn-y-seed0", run_dir="mspn-bbb", dirty=True)
    with pytest.raises(ValueError, match="uncommitted changes"):
        records.archive_record("mspn-y-seed0", "cpu", source=tmp_path / "results", archive=tmp_path / "archive")
    assert not (tmp_path / "archive" / "cpu" / "mspn-y-seed0.json").exists()
    with pytest.raises(FileNotFoundError, match="mspn-z-seed0.json"):
        records.archive_record("mspn-z-seed0", "cpu", source=tmp_path / "results", archive=tmp_path / "archive")


def test_an_archived_record_counts_only_for_the_model_it_names(tmp_path):
    _write(tmp_path, "mspn-x-seed0", run_dir="mspn-aaa", val_sha="v1")
    records.archive_record("mspn-x-seed0", "cpu", source=tmp_path / "results", archive=tmp_path / "archive")
    find = lambda **kw: records.find_archived("mspn-x-seed0", "cpu", archive=tmp_path / "archive", **kw)  # noqa: E731
    assert find(run_name="mspn-aaa", val_sha256="v1").record["metrics"]["AP"] == 0.4
    assert find(run_name="mspn-aaa").record is not None  # validation data not checked
    stale = find(run_name="mspn-bbb", val_sha256="v1")
    assert stale.record is None and "stale" in stale.problem and "mspn-bbb" in stale.problem
    other_data = find(run_name="mspn-aaa", val_sha256="v2")
    assert other_data.record is None and "validation data" in other_data.problem
    copied = tmp_path / "archive" / "cpu" / "mspn-x-seed0.json"
    record = json.loads(copied.read_text())
    copied.write_text(records.dump_json({**record, "git": {"commit": "0123456789abcdef", "dirty": True}}))
    assert "no clean commit" in find(run_name="mspn-aaa").problem  # copied by hand from a dirty checkout
    missing = records.find_archived("mspn-q-seed0", "cpu", run_name="mspn-aaa", archive=tmp_path / "archive")
    assert missing.record is None and "no archived record" in missing.problem


def test_a_damaged_archive_file_is_named(tmp_path):
    folder = tmp_path / "archive" / "cpu"
    folder.mkdir(parents=True)
    (folder / "mspn-x-seed0.json").write_text("{not json")
    with pytest.raises(ValueError, match="mspn-x-seed0.json"):
        records.find_archived("mspn-x-seed0", "cpu", run_name="mspn-aaa", archive=tmp_path / "archive")
    (folder / "mspn-x-seed0.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a poselib record"):
        records.find_archived("mspn-x-seed0", "cpu", run_name="mspn-aaa", archive=tmp_path / "archive")


def test_experiment_table_shows_current_archived_rows_and_names_stale_ones(tmp_path, monkeypatch):
    """At smoke, ``mspn-3stage`` does not train in the build: its row comes from the archive while the record names
    the model the current recipe would train, and is empty (with the reason) once it does not."""
    monkeypatch.setenv("POSELIB_ARCHIVE", str(tmp_path / "archive"))
    monkeypatch.setenv("POSELIB_RESULTS", str(tmp_path / "results"))
    assert "mspn-3stage" not in mspn.TRAINED_AT["smoke"]
    recipe = mspn.experiment_recipe("mspn-3stage", "smoke")
    val_sha = records.file_sha256(dataset_split(recipe.dataset, "val")[0])
    _write(tmp_path, mspn.record_name("mspn-3stage"), run_dir=topdown.run_name(recipe, 0), val_sha=val_sha, ap=0.321,
           preset="smoke")
    records.archive_record(mspn.record_name("mspn-3stage"), "smoke", source=tmp_path / "results")

    row = mspn.experiment_table(["mspn-3stage"], "smoke", progress=False).loc["mspn-3stage"]
    assert row["our AP"] == pytest.approx(32.1) and row["train (min)"] == pytest.approx(1.5)
    assert row["source"].startswith("archive: ") and "commit 0123456" in row["source"]

    monkeypatch.setattr(mspn, "experiment_recipe", lambda name, preset="cpu": recipe.__class__(
        **{**recipe.__dict__, "train": {**recipe.train, "lr": 1e-4}}))  # the recipe changed since the record
    row = mspn.experiment_table(["mspn-3stage"], "smoke", progress=False).loc["mspn-3stage"]
    assert row["our AP"] != row["our AP"] and "stale" in row["source"]  # NaN, and why


def test_archive_command_lists_status_and_refuses_unknown_experiments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POSELIB_ARCHIVE", str(tmp_path / "archive"))
    assert main(["archive", "mspn", "--preset", "smoke"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in mspn.EXPERIMENTS) and "no archived record" in listing
    assert "mspn-1stage                  trained in the book's build" in listing
    assert main(["archive", "mspn", "mspn-9stage"]) == 2
    assert "mspn-9stage" in capsys.readouterr().err


def test_archived_seeds_feed_the_spread_without_training(tmp_path, monkeypatch):
    monkeypatch.setenv("POSELIB_ARCHIVE", str(tmp_path / "archive"))
    # mspn-3stage does not train in the smoke build: every seed from the archive; mspn-1stage does, but its seed 1
    # is listed as archived
    monkeypatch.setattr(mspn, "ARCHIVED_SEEDS", {"smoke": {"mspn-1stage": (1,)}})
    trained = []
    monkeypatch.setattr(mspn, "run_experiment", lambda name, preset, seed, **k: trained.append((name, seed)) or {"AP": 0.5})
    assert mspn.seed_spread("mspn-1stage", "smoke", seeds=(0, 1)) == pytest.approx({0: 0.5, 1: float("nan")}, nan_ok=True)
    assert trained == [("mspn-1stage", 0)]
    recipe = mspn.experiment_recipe("mspn-3stage", "smoke")
    val_sha = records.file_sha256(dataset_split(recipe.dataset, "val")[0])
    for seed, ap in ((0, 0.321),):  # seed 0 only, at first
        _write(tmp_path, mspn.record_name("mspn-3stage", seed), run_dir=topdown.run_name(recipe, seed), val_sha=val_sha,
               ap=ap, preset="smoke")
        records.archive_record(mspn.record_name("mspn-3stage", seed), "smoke", source=tmp_path / "results")
    spread = mspn.seed_spread("mspn-3stage", "smoke", seeds=(0, 1))
    assert spread[0] == 0.321 and spread[1] != spread[1]  # seed 1 has no record: NaN
    assert mspn.spread_points(["mspn-3stage"], "smoke") != mspn.spread_points(["mspn-3stage"], "smoke")  # NaN
    _write(tmp_path, mspn.record_name("mspn-3stage", 1), run_dir=topdown.run_name(recipe, 1), val_sha=val_sha, ap=0.300,
           preset="smoke")
    records.archive_record(mspn.record_name("mspn-3stage", 1), "smoke", source=tmp_path / "results")
    assert mspn.spread_points(["mspn-3stage"], "smoke") == pytest.approx(2.1)
    assert trained == [("mspn-1stage", 0)]  # nothing else trained


def test_one_rule_says_which_seeds_the_build_trains(tmp_path, monkeypatch, capsys):
    assert mspn.trains_in_build("mspn-2stage", "cpu", 0) and not mspn.trains_in_build("mspn-2stage", "cpu", 1)
    assert not mspn.trains_in_build("mspn-3stage", "cpu") and mspn.trains_in_build("mspn-3stage", "gpu")
    # the listing follows it: a build-trained experiment's archived seed is looked up, not called build-trained
    monkeypatch.setenv("POSELIB_ARCHIVE", str(tmp_path / "archive"))
    monkeypatch.setattr(mspn, "ARCHIVED_SEEDS", {"smoke": {"mspn-1stage": (1,)}})
    assert main(["archive", "mspn", "--preset", "smoke", "--seed", "1"]) == 0
    listing = capsys.readouterr().out
    assert "mspn-1stage                  no archived record mspn-1stage-seed1.json" in listing
    assert "mspn-2stage                  trained in the book's build" in listing


def test_archive_command_refuses_a_dirty_checkout_before_training(monkeypatch, capsys):
    monkeypatch.setattr(records, "git_state", lambda folder=None: {"commit": "0123456789abcdef", "dirty": True})
    monkeypatch.setattr(mspn, "run_experiment", lambda *a, **k: pytest.fail("must not train"))
    assert main(["archive", "mspn", "mspn-3stage", "--preset", "smoke"]) == 1
    assert "uncommitted changes" in capsys.readouterr().err
