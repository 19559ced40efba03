"""Where poselib keeps generated data, cached models and result records.

Every location can be moved with an environment variable, so the book runner, tests and users agree:
``POSELIB_ROOT`` (project root), ``POSELIB_DATA``, ``POSELIB_CACHE``, ``POSELIB_RESULTS`` and ``POSELIB_ARCHIVE``.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The posebook checkout: ``$POSELIB_ROOT``, else the nearest folder up from here or the current one
    holding ``_toc.yml`` and ``poselib/``, else the current directory."""
    if os.environ.get("POSELIB_ROOT"):
        return Path(os.environ["POSELIB_ROOT"]).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "_toc.yml").is_file() and (folder / "poselib").is_dir():
                return folder
    return Path.cwd()


def data_root() -> Path:
    """Generated and downloaded data sets (git-ignored): ``$POSELIB_DATA`` or ``<root>/data``."""
    return Path(os.environ.get("POSELIB_DATA") or project_root() / "data")


def cache_root() -> Path:
    """Trained-model cache and checkpoints: ``$POSELIB_CACHE`` or ``<root>/.cache/poselib``."""
    return Path(os.environ.get("POSELIB_CACHE") or project_root() / ".cache" / "poselib")


def results_root() -> Path:
    """Experiment records read by the book: ``$POSELIB_RESULTS`` or ``<root>/results``."""
    return Path(os.environ.get("POSELIB_RESULTS") or project_root() / "results")


def archive_root() -> Path:
    """Committed records of models trained outside the book's build (they exceed its time budget), read by the
    book beside the records it writes: ``$POSELIB_ARCHIVE`` or ``<root>/results/archive``."""
    return Path(os.environ.get("POSELIB_ARCHIVE") or project_root() / "results" / "archive")
