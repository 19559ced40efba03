"""Where a named data set's splits live: SynthPose configurations are generated on demand, COCO is read from
``data/coco`` (see ``poselib data coco``)."""

from __future__ import annotations

from pathlib import Path

from poselib.paths import data_root


def dataset_split(name: str, split: str) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of split ``"train"`` or ``"val"`` of data set ``name``.

    ``name`` is a SynthPose configuration (``synthpose-mini``, ``synthpose``, ``synthpose-large``: generated if
    missing) or ``coco`` (COCO 2017 under ``data/coco``; it must have been downloaded).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if name == "coco":
        from poselib.data.download import coco_paths

        ann_path, image_dir = coco_paths(data_root() / "coco", f"{split}2017")
        if not Path(ann_path).is_file():
            raise FileNotFoundError(
                f"{ann_path} not found: download COCO first with `poselib data coco --root {data_root() / 'coco'} --download`"
            )
        return Path(ann_path), Path(image_dir)
    from poselib.data.synthpose import ensure_split

    folder = ensure_split(name, split)
    return folder / "annotations.json", folder / "images"

