"""Writing SynthPose data sets: ``annotations.json`` plus ``images/000000000001.jpg`` ..., in COCO keypoint format.

Data sets are written atomically: everything is rendered into a hidden temporary folder next to the target,
which is renamed into place only when complete, so an interrupted run never leaves a folder that looks done.
A small stamp file (:data:`STAMP_NAME`) records the generator version, seed, size and knobs, so
:func:`ensure_split` can tell a current split from a stale one without reading the annotations.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from os import PathLike
from pathlib import Path

import cv2
from tqdm import tqdm

from poselib.progress import progress_disabled

from poselib.data.synthpose.config import GENERATOR_VERSION, SynthConfig, get_named_config
from poselib.data.synthpose.scene import render_example
from poselib.keypoints import PERSON_CATEGORY
from poselib.paths import data_root

ANNOTATIONS_NAME: str = "annotations.json"
IMAGES_NAME: str = "images"
STAMP_NAME: str = "synthpose.json"


def image_file_name(image_id: int) -> str:
    """COCO-style file name of an image id: ``000000000001.jpg``."""
    return f"{image_id:012d}.jpg"


def _record(config: SynthConfig, seed: int, num_images: int) -> dict:
    return {"version": GENERATOR_VERSION, "seed": int(seed), "num_images": int(num_images), "config": config.to_dict()}


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def generate(
    out_dir: str | PathLike,
    num_images: int,
    seed: int,
    config: SynthConfig | None = None,
    progress: bool = True,
) -> Path:
    """Render ``num_images`` images from ``seed`` under ``config`` (default knobs when ``None``) into
    ``out_dir`` and return it. An existing ``out_dir`` is replaced once the new one is complete.

    Image ``i`` (0-based) gets id ``i + 1`` and depends only on ``(seed, i)`` and the config, so a smaller data
    set is a prefix of a larger one. The same arguments give byte-identical files.
    """
    config = config or SynthConfig()
    if int(num_images) != num_images or num_images < 0:
        raise ValueError(f"num_images must be a non-negative integer, got {num_images!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        (tmp / IMAGES_NAME).mkdir()
        h, w = config.image_size
        jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(config.jpeg_quality)]
        images, annotations = [], []
        for index in tqdm(range(int(num_images)), desc=f"SynthPose {out_dir.name}", unit="img", disable=progress_disabled(progress)):
            scene = render_example(config, seed, index)
            image_id = index + 1
            name = image_file_name(image_id)
            ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), jpeg)
            if not ok:
                raise RuntimeError(f"{out_dir}: image {image_id}: JPEG encoding failed")
            (tmp / IMAGES_NAME / name).write_bytes(buffer.tobytes())
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            for ann in scene.annotations:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
        record = _record(config, seed, num_images)
        document = {
            "info": {"description": "SynthPose: procedurally rendered people in COCO keypoint format",
                     "generator": "poselib.data.synthpose", **record},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [PERSON_CATEGORY],
        }
        (tmp / ANNOTATIONS_NAME).write_text(json.dumps(document, separators=(",", ":")))
        (tmp / STAMP_NAME).write_text(json.dumps(record, indent=1))
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def split_dir(name: str, split: str, root: str | PathLike | None = None) -> Path:
    """Folder of split ``split`` of named config ``name``: ``<root>/synthpose/<name>/<split>``, where ``root``
    defaults to :func:`poselib.paths.data_root`. Unknown names or splits raise ``ValueError``."""
    get_named_config(name).split(split)
    return Path(root if root is not None else data_root()) / "synthpose" / name / split


def is_current(folder: str | PathLike, config: SynthConfig, seed: int, num_images: int) -> bool:
    """Whether ``folder`` holds a complete data set generated by this generator version with these settings."""
    folder = Path(folder)
    try:
        stamp = json.loads((folder / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return False
    return stamp == _record(config, seed, num_images) and (folder / ANNOTATIONS_NAME).is_file()


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` so that two processes do not render the same split twice."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: the atomic rename still keeps the folder consistent
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_split(name: str, split: str, root: str | PathLike | None = None, progress: bool = True) -> Path:
    """The folder of split ``"train"`` or ``"val"`` of named config ``name`` (see
    :data:`~poselib.data.synthpose.config.NAMED_CONFIGS`), generating it if it is missing or was made with
    other settings or another generator version. Costs one small file read when present.
    """
    named = get_named_config(name)
    spec = named.split(split)
    folder = split_dir(name, split, root)
    if is_current(folder, named.config, spec.seed, spec.num_images):
        return folder
    with _locked(folder.parent / f".{split}.lock"):
        if not is_current(folder, named.config, spec.seed, spec.num_images):
            generate(folder, spec.num_images, spec.seed, named.config, progress=progress)
    return folder
