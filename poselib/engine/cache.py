"""Trained-model cache: one run folder per (name, configuration), so nothing is trained twice.

``run_dir("simple_baseline", config)`` is ``<cache_root>/runs/simple_baseline-<hash>``; a
:class:`~poselib.engine.trainer.Trainer` pointed at it returns the model from ``final.pt`` when the run is finished
and resumes from ``last.pt`` when it was interrupted. :func:`stored_metrics` keeps a run's evaluations next to it,
so a later chapter asking for the same evaluation of the same model reads it instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from poselib import paths
from poselib.engine.checkpoint import write_text_atomic
from poselib.engine.records import dump_json, to_jsonable

HASH_CHARS = 12


def config_hash(config: Mapping[str, Any]) -> str:
    """First 12 hex characters of the SHA-256 of the config as compact sorted-key JSON.

    Key order does not matter; types do (``1`` and ``1.0`` hash differently), and tuples hash like lists.
    """
    text = json.dumps(to_jsonable(config), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def run_dir(name: str, config: Mapping[str, Any], root: str | Path | None = None) -> Path:
    """The run folder ``(root or cache_root()) / "runs" / f"{name}-{config_hash(config)}"``, created with the
    config in ``config.json``."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"run name {name!r} must be a plain folder name (no slashes, not starting with '.')")
    folder = Path(root or paths.cache_root()) / "runs" / f"{name}-{config_hash(config)}"
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "config.json"
    text = dump_json(config)
    if config_file.is_file():
        if json.loads(config_file.read_text()) != json.loads(text):
            raise RuntimeError(f"{config_file}: holds a different config with the same hash; delete the folder")
    else:
        write_text_atomic(config_file, text)
    return folder


def is_trained(folder: str | Path) -> bool:
    """True when ``folder`` holds a finished run (``final.pt``)."""
    return (Path(folder) / "final.pt").is_file()


def stored_metrics(folder: str | Path, key: Mapping[str, Any], compute: Callable[[], Mapping[str, float]]) -> dict:
    """Metrics of the model in run ``folder`` for the evaluation described by ``key``, computed once.

    ``key`` names everything the numbers depend on besides the weights (the validation file's hash, the test-time
    settings); the result lives in ``folder / f"metrics-{config_hash(key)}.json"`` together with its key. A
    stored file whose key differs (a hash collision) or that cannot be read is recomputed and replaced.
    """
    path = Path(folder) / f"metrics-{config_hash(key)}.json"
    wanted = json.loads(dump_json(key))
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == wanted:
                return dict(stored["metrics"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    metrics = dict(compute())
    write_text_atomic(path, dump_json({"key": wanted, "metrics": metrics}))
    return metrics
