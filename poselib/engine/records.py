"""Result records: one small JSON file per experiment, read back by the book's tables.

A record lives at ``<results_root>/<preset>/<name>.json`` and holds what was run (method, config, data set with
the SHA-256 of its annotation file), what came out (metrics, parameters, GMACs, wall time), and where it came
from (library versions, git commit, UTC time). Host names are never stored.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import fnmatch
import hashlib
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from poselib import paths
from poselib.engine.checkpoint import write_text_atomic
from poselib.engine.distributed import is_main_process
from poselib.presets import check_preset

RECORD_FORMAT = 1


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses and mappings become dicts (string keys), tuples/sets lists,
    paths/devices/dtypes strings, numpy and 0-d torch scalars Python numbers, non-finite floats ``None``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in a JSON record")


def dump_json(obj: Any) -> str:
    """The record format: sorted keys, indent 1, trailing newline, strict JSON (no NaN)."""
    return json.dumps(to_jsonable(obj), sort_keys=True, indent=1, allow_nan=False) + "\n"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_info(name: str, annotation_file: str | Path) -> dict[str, str]:
    """The ``dataset`` entry of a record: ``{"name", "path", "sha256"}`` of the annotation file."""
    return {"name": name, "path": str(annotation_file), "sha256": file_sha256(annotation_file)}


def library_versions() -> dict[str, str | None]:
    """Versions of Python and the libraries results depend on (``None`` where one is not installed)."""
    import poselib

    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "poselib": poselib.__version__,
    }
    try:
        import torchvision

        versions["torchvision"] = torchvision.__version__
    except ImportError:
        versions["torchvision"] = None
    return versions


def git_state(folder: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` (dirty: tracked files differ from the commit) of the checkout holding
    ``folder`` (default: the project root), or ``None`` when git is missing or the folder is not in a
    repository. Never writes to the repository."""
    folder = Path(folder or paths.project_root())

    def git(*args: str) -> str:
        # --no-optional-locks: `git status` must not refresh the index while other processes use the checkout.
        done = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"record name {name!r} must be a plain file name (no slashes, not starting with '.')")
    return name


def write_record(
    name: str,
    *,
    method: str,
    config: Mapping[str, Any],
    preset: str,
    dataset: Mapping[str, Any],
    metrics: Mapping[str, float],
    params_m: float | None = None,
    gmacs: float | None = None,
    wall_time_s: float | None = None,
    device: str | None = None,
    extra: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
) -> Path:
    """Write the record ``(root or results_root()) / preset / f"{name}.json"`` and return its path.

    Args:
        name: file stem, unique within the preset (e.g. ``"simple_baseline-seed0"``).
        method: the method's name.
        config: everything that defines the run (JSON-able: dataclasses, tuples and paths are converted).
        preset: one of :data:`poselib.presets.PRESETS`.
        dataset: ``{"name", "path", "sha256"}`` of the evaluation annotation file (see :func:`dataset_info`).
        metrics: e.g. ``{"AP": 0.71, "AP50": ...}``; non-finite values are stored as ``null``.
        params_m: parameters in millions. gmacs: multiply-accumulates in billions. wall_time_s: seconds.
        device: e.g. ``"cpu"`` or the GPU's name.
        extra: anything else worth keeping (small).

    Under DDP only rank 0 writes; every rank gets the path.
    """
    _check_name(name)
    check_preset(preset)
    missing = {"name", "path", "sha256"} - set(dataset)
    if missing:
        raise ValueError(f"record {name!r}: dataset needs {sorted(missing)} (use poselib.engine.records.dataset_info)")
    path = Path(root or paths.results_root()) / preset / f"{name}.json"
    if not is_main_process():  # under torchrun every rank may call this; one writes
        return path
    record = {
        "format": RECORD_FORMAT,
        "name": name,
        "method": method,
        "preset": preset,
        "config": config,
        "dataset": dataset,
        "metrics": metrics,
        "params_m": params_m,
        "gmacs": gmacs,
        "wall_time_s": wall_time_s,
        "device": None if device is None else str(device),
        "extra": extra or {},
        "versions": library_versions(),
        "git": git_state(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return write_text_atomic(path, dump_json(record))


@dataclasses.dataclass
class TrainedSummary:
    """What ``poselib train`` reports of a trained and evaluated method, whatever its family.

    ``recipe`` is the method's recipe (a dataclass with a ``dataset`` field); ``run_dir`` the run folder holding
    the weights (``final.pt``); ``val_ann`` the validation annotation file the ``metrics`` were measured on;
    ``wall_time_s`` the training time in seconds (of every model the method trains); ``params_m`` millions of
    parameters and ``gmacs`` billions of multiply-accumulates at the recipe's input size; ``headline`` the
    metrics of the command's last JSON line (default: ``metrics``); ``extra`` more run folders and the like.
    """

    recipe: Any
    run_dir: Path
    val_ann: Path
    metrics: dict[str, float]
    wall_time_s: float
    params_m: float | None = None
    gmacs: float | None = None
    headline: dict[str, float] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_records(preset: str | None = None, pattern: str = "*", root: str | Path | None = None) -> list[dict]:
    """Records of one preset (or of all presets) whose name matches the glob ``pattern``, sorted by
    (preset, name). A missing results folder gives an empty list."""
    base = Path(root or paths.results_root())
    folders = [base / check_preset(preset)] if preset is not None else sorted(p for p in base.glob("*") if p.is_dir())
    records = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            if fnmatch.fnmatchcase(path.stem, pattern):
                records.append(_read_record(path))
    return records


def _lookup(record: Mapping[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def records_table(records: Iterable[Mapping[str, Any]], columns: list[str]) -> "pandas.DataFrame":  # noqa: F821
    """A table with one row per record and one column per dotted key (``"metrics.AP"``, ``"config.seed"``);
    keys a record lacks give missing values (``None``/NaN)."""
    import pandas as pd

    rows = [[_lookup(r, c) for c in columns] for r in records]
    return pd.DataFrame(rows, columns=list(columns))


# ------------------------------------------------------------------------------------------------ archived records

def archive_record(name: str, preset: str, *, source: str | Path | None = None, archive: str | Path | None = None) -> Path:
    """Copy the record ``(source or results_root()) / preset / f"{name}.json"`` into the archive
    ``(archive or archive_root()) / preset`` (the committed folder the book reads beside its own records) and
    return the copy's path. The copy names the run folder by its name alone and the data by its path in the project
    (or its file name), not by folders of the machine that made it. Refuses a record written from a checkout with
    uncommitted changes, whose commit would not say which code trained the model."""
    _check_name(name)
    check_preset(preset)
    path = Path(source or paths.results_root()) / preset / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such record; run the experiment under the {preset!r} preset first")
    record = _read_record(path)
    git = record.get("git") or {}
    if not git.get("commit") or git.get("dirty"):
        raise ValueError(f"{path}: written from a checkout with uncommitted changes (or outside git); retrain from a "
                         "clean commit before archiving, so the record names the code that trained it")
    # a committed record names no folder of the machine that made it: the run folder by name, data by project path
    extra = dict(record.get("extra") or {})
    if extra.get("run_dir"):
        extra["run_dir"] = Path(str(extra["run_dir"])).name
    dataset = dict(record.get("dataset") or {})
    if dataset.get("path"):
        data_path = Path(str(dataset["path"]))
        try:
            dataset["path"] = str(data_path.resolve().relative_to(paths.project_root().resolve()))
        except ValueError:
            dataset["path"] = data_path.name
    record = {**record, "extra": extra, "dataset": dataset}
    return write_text_atomic(Path(archive or paths.archive_root()) / preset / path.name, dump_json(record))


@dataclasses.dataclass(frozen=True)
class ArchiveLookup:
    """What :func:`find_archived` found: ``record`` when an archived record matches, else ``None`` and ``problem``
    (why not, in words a reader can act on)."""

    record: dict | None
    problem: str | None = None


def find_archived(name: str, preset: str, *, run_name: str, val_sha256: str | None = None,
                  archive: str | Path | None = None) -> ArchiveLookup:
    """The archived record ``name`` of ``preset`` if it belongs to the model the current code would train.

    Args:
        run_name: the model-cache folder name the current recipe, seed, training data and starting weights give
            (e.g. :func:`poselib.methods.topdown.run_name`); the record must name the same folder in
            ``extra.run_dir``, so a changed recipe or regenerated data makes it stale, not silently reused.
        val_sha256: the SHA-256 of the validation annotation file the book evaluates on; the record's must match
            (``None``: not checked).
    """
    _check_name(name)
    path = Path(archive or paths.archive_root()) / check_preset(preset) / f"{name}.json"
    if not path.is_file():
        return ArchiveLookup(None, f"no archived record {path.name}")
    record = _read_record(path)
    trained = Path(str((record.get("extra") or {}).get("run_dir", ""))).name
    if trained != run_name:
        return ArchiveLookup(None, f"{path.name} is stale: it was trained as {trained or 'an unnamed run'}, the "
                                   f"current recipe, seed, data and start give {run_name}")
    if val_sha256 is not None and (record.get("dataset") or {}).get("sha256") != val_sha256:
        return ArchiveLookup(None, f"{path.name} is stale: it was evaluated on other validation data")
    git = record.get("git") or {}
    if not git.get("commit") or git.get("dirty"):
        return ArchiveLookup(None, f"{path.name} names no clean commit (archive it with poselib archive)")
    return ArchiveLookup(record)


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a valid JSON record ({err})") from err
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: not a poselib record of format {RECORD_FORMAT}")
    return record
