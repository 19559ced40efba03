"""Result records: the JSON format, provenance without host names, reading back, tables."""

from __future__ import annotations

import json
import math
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from poselib.engine import records


@dataclass
class Recipe:
    input_size: tuple[int, int] = (64, 48)
    data: Path = Path("/data/x.json")


def write(tmp_path: Path, name: str = "sb-seed0", preset: str = "smoke", **overrides) -> Path:
    ann = tmp_path / "ann.json"
    ann.write_bytes(b"abc")
    fields = dict(
        method="simple_baseline", config={"recipe": Recipe(), "seed": 0}, preset=preset,
        dataset=records.dataset_info("synthpose-mini", ann), metrics={"AP": 0.5, "AP50": float("nan")},
        params_m=1.25, gmacs=0.5, wall_time_s=12.0, device="cpu", root=tmp_path / "results",
    )  # fmt: skip
    return records.write_record(name, **{**fields, **overrides})


def test_file_sha256_known_answer(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert records.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert records.file_sha256(path, chunk_bytes=1) == records.file_sha256(path)


def test_record_file_format_and_content(tmp_path):
    path = write(tmp_path)
    assert path == tmp_path / "results" / "smoke" / "sb-seed0.json"
    text = path.read_text()
    record = json.loads(text)
    assert text == json.dumps(record, sort_keys=True, indent=1) + "\n"
    assert record["config"] == {"recipe": {"input_size": [64, 48], "data": "/data/x.json"}, "seed": 0}
    assert record["metrics"] == {"AP": 0.5, "AP50": None}  # NaN is not JSON
    assert record["dataset"]["sha256"].startswith("ba7816bf")
    assert set(record["versions"]) == {"python", "torch", "torchvision", "numpy", "poselib"}
    assert record["created_utc"].endswith("Z") and len(record["created_utc"]) == 20
    assert (record["name"], record["method"], record["preset"], record["gmacs"]) == ("sb-seed0", "simple_baseline", "smoke", 0.5)
    assert not any("host" in key.lower() for key in record)
    hostname = socket.gethostname()
    if len(hostname) >= 6:
        assert hostname not in text
    assert len(text) < 4000


def test_git_state_without_git(tmp_path, monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert records.git_state() is None
    assert json.loads(write(tmp_path).read_text())["git"] is None


def test_git_state_outside_a_repository(tmp_path):
    assert records.git_state(tmp_path) is None


def test_git_state_of_a_repository(tmp_path):
    try:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, capture_output=True)
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
        (tmp_path / "a.txt").write_text("1")
        subprocess.run(["git", "-C", str(tmp_path), "add", "a.txt"], check=True, capture_output=True)
        subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "x"], check=True, capture_output=True, env=env)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    state = records.git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert records.git_state(tmp_path)["dirty"] is True


def test_read_records_and_table(tmp_path):
    write(tmp_path, "sb-seed0", metrics={"AP": 0.5})
    write(tmp_path, "sb-seed1", metrics={"AP": 0.7})
    write(tmp_path, "mspn-seed0", metrics={"AP": 0.6}, method="mspn", gmacs=None)
    write(tmp_path, "sb-seed0", preset="cpu", metrics={"AP": 0.9})
    root = tmp_path / "results"
    assert [r["name"] for r in records.read_records("smoke", root=root)] == ["mspn-seed0", "sb-seed0", "sb-seed1"]
    assert [r["metrics"]["AP"] for r in records.read_records("smoke", "sb-*", root=root)] == [0.5, 0.7]
    assert [(r["preset"], r["name"]) for r in records.read_records(pattern="sb-seed0", root=root)] == [("cpu", "sb-seed0"), ("smoke", "sb-seed0")]
    assert records.read_records("coco", root=root) == []

    table = records.records_table(records.read_records("smoke", root=root), ["name", "metrics.AP", "gmacs", "config.recipe.input_size", "metrics.missing"])
    assert list(table.columns) == ["name", "metrics.AP", "gmacs", "config.recipe.input_size", "metrics.missing"]
    assert table["metrics.AP"].tolist() == [0.6, 0.5, 0.7]
    assert table["config.recipe.input_size"].tolist() == [[64, 48]] * 3
    assert math.isnan(table["gmacs"][0]) and table["gmacs"][1] == 0.5
    assert table["metrics.missing"].isna().all()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        write(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="plain file name"):
        write(tmp_path, name="../escape")
    with pytest.raises(ValueError, match="sha256"):
        write(tmp_path, dataset={"name": "x"})
    with pytest.raises(TypeError, match="cannot store object"):
        write(tmp_path, extra={"thing": object()})
    bad = tmp_path / "results" / "smoke" / "broken.json"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        records.read_records("smoke", root=tmp_path / "results")


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "is_main_process", lambda: False)
    path = write(tmp_path)
    assert path == tmp_path / "results" / "smoke" / "sb-seed0.json" and not path.exists()
