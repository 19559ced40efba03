"""Checkpoint files: atomic saving (also of text files), loading with clear errors, and the RNG state that makes
resume exact."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it that is then renamed over it, so an interrupted
    write leaves the previous file whole (and no temporary file) and a reader never sees half a file. Creates the
    parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file beside ``path``, then ``os.replace``.

    An interrupt or error while writing leaves the previous file at ``path`` untouched (and no temporary file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors mapped to ``map_location``).

    Checkpoints hold RNG states and configs besides tensors, so they are loaded with ``weights_only=False``:
    load only files this project wrote.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which one
        raise RuntimeError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err}); delete it to start over"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise RuntimeError(f"{path}: not a poselib checkpoint (expected a dict with a 'model' entry)")
    return state


def trained_run(checkpoint: str | Path) -> tuple[Path, dict[str, Any]]:
    """The weights file and the stored ``config.json`` of a run folder written by a method's ``train``.

    ``checkpoint`` is the run folder (its ``final.pt`` is used) or one checkpoint file in it (``last.pt`` of an
    unfinished run). Raises ``FileNotFoundError`` naming the missing file.
    """
    import json

    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    weights = folder / "final.pt" if path.is_dir() else path
    config_path = folder / "config.json"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no checkpoint here (train first, or pass last.pt of an unfinished run)")
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing; the checkpoint's folder must hold the run's config.json")
    return weights, json.loads(config_path.read_text())


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of Python, numpy, torch (CPU) and, when initialised, every CUDA device."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`capture_rng_state` (CUDA states only when CUDA is available)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
