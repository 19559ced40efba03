"""Presets and devices: the knobs every notebook's ``parameters`` cell shares.

``smoke`` runs in seconds (CI), ``cpu`` is the default book on 2 CPU cores (whole book within 45 minutes),
``gpu`` trains paper-size models on the large synthetic set, ``coco`` trains and evaluates on real COCO.
"""

from __future__ import annotations

import random

import numpy as np
import torch

PRESETS: tuple[str, ...] = ("smoke", "cpu", "gpu", "coco")

#: The data set each preset trains and evaluates on.
PRESET_DATASET: dict[str, str] = {
    "smoke": "synthpose-mini",
    "cpu": "synthpose",
    "gpu": "synthpose-large",
    "coco": "coco",
}


def check_preset(preset: str) -> str:
    """Return ``preset`` if known, else raise ``ValueError`` listing the choices."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available on this machine")
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
