"""Methods: a data set, a codec, a model, a loss and a decoder put together (faces: used by the CLI and the
notebooks). Each method module exposes ``METHOD`` and ``recipe(preset, **overrides)``; a method that is not plain
top-down also exposes ``train_summary(preset, overrides, *, seed, device, progress)`` for ``poselib train``."""

from __future__ import annotations

import importlib
from types import ModuleType

#: method name -> module
METHODS: dict[str, str] = {
    "simplebaseline": "poselib.methods.simple_baseline",
    "mspn": "poselib.methods.mspn",
    "rsn": "poselib.methods.rsn",
    "msarcnn": "poselib.methods.msa_rcnn",
    "simplepose": "poselib.methods.simple_pose",
    "multiposenet": "poselib.methods.multiposenet",
}

def get_method(name: str) -> ModuleType:
    """The module implementing method ``name``."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return importlib.import_module(METHODS[name])
