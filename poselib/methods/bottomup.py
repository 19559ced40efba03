"""Bottom-up plumbing shared by the bottom-up methods: whole images in, maps out, people from a grouping step.

A bottom-up method supplies a target encoder (a :class:`~poselib.data.datasets.BottomUpDataset` encoder), a
model, a training step, a function from images to maps at input resolution and a grouping function from one
image's maps to poses. This module does the rest:

- :func:`build_datasets`: the training set (augmented, encoded) and the validation set (plain) of a data set.
- :func:`train_cached`: training through :class:`poselib.engine.Trainer` with the trained model cached by the
  configuration's hash (and the training data's), batched by :func:`~poselib.data.datasets.collate_bottomup`.
- :func:`multi_scale_flip_maps`: test-time averaging of maps over input scales and the mirrored image.
- :func:`predict` and :func:`evaluate`: every validation image through maps and grouping, poses mapped back to
  image pixels, COCO keypoint AP with :func:`poselib.evaluation.evaluate_keypoints`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from poselib.data.datasets import BottomUpDataset, Encoder, collate_bottomup
from poselib.data.transforms import AugmentConfig
from poselib.engine import Trainer, TrainConfig, TrainResult
from poselib.engine.cache import run_dir
from poselib.engine.records import file_sha256
from poselib.evaluation import evaluate_keypoints, poses_to_coco_results
from poselib.geometry import apply_affine
from poselib.methods.splits import dataset_split
from poselib.presets import resolve_device

#: ``maps_fn(model, images (N, 3, S, S)) -> maps (N, C, S, S)`` at input resolution.
MapsFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
#: ``group_fn(maps (C, S, S)) -> (poses (n, 17, 3) in input pixels, scores (n,))``.
GroupFn = Callable[[torch.Tensor], "tuple[np.ndarray, np.ndarray]"]


def augment_config(augment: bool | Mapping[str, Any]) -> AugmentConfig | None:
    """``True``: bottom-up augmentation (:meth:`AugmentConfig.bottom_up`); a dict: its fields replaced;
    ``False``: none."""
    if augment is True:
        return AugmentConfig.bottom_up()
    if not augment:
        return None
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(augment).items()}
    return replace(AugmentConfig.bottom_up(), **fields)


def crop_augment(config: AugmentConfig, input_size: int, view_size: int) -> AugmentConfig:
    """``config`` for training crops of ``input_size`` cut from images seen whole at ``view_size``: every scale is
    multiplied by ``input_size / view_size``, so a crop keeps the resolution the network sees at test time, and the
    crop's centre may move far enough (``translate``, a fraction of the crop) to reach every part of the image."""
    if view_size < input_size:
        raise ValueError(f"the test view ({view_size} px) must not be smaller than the training crop ({input_size} px)")
    ratio = view_size / input_size
    low, high = config.scale_range
    return replace(config, scale_range=(low / ratio, high / ratio), translate=max(config.translate, (ratio - 1.0) / 2.0))


def build_datasets(dataset: str, input_size: int, encoder: Encoder | None, *, augment: bool | Mapping = True,
                   seed: int = 0, val_size: int | None = None) -> tuple[BottomUpDataset, BottomUpDataset]:
    """Training set (augmented, encoded by ``encoder``, images without any annotation left out) and validation
    set (no augmentation, no encoder) of data set ``dataset``. Both read images fitted into ``input_size`` pixels,
    unless ``val_size`` (larger) is given: then validation images are fitted into ``val_size`` and training uses
    ``input_size`` crops at that resolution (:func:`crop_augment`)."""
    train_ann, train_images = dataset_split(dataset, "train")
    val_ann, val_images = dataset_split(dataset, "val")
    config = augment_config(augment)
    if config is not None and val_size is not None and val_size != input_size:
        config = crop_augment(config, input_size, val_size)
    train_set = BottomUpDataset(train_ann, train_images, input_size=input_size, augment=config,
                                encoder=encoder, seed=seed, skip_empty=True)
    val_set = BottomUpDataset(val_ann, val_images, input_size=val_size or input_size)
    return train_set, val_set


@dataclass
class TrainedBottomUp:
    """A trained (or cache-loaded) model, its run folder, the engine's result and the validation set."""

    model: nn.Module
    run_dir: Path
    result: TrainResult
    seed: int
    val_set: BottomUpDataset

    @property
    def metrics_log(self) -> Path:
        return self.run_dir / "metrics.jsonl"


def train_cached(name: str, config: Mapping[str, Any], model: nn.Module, train_set: BottomUpDataset,
                 val_set: BottomUpDataset, step_fn: Callable, train: Mapping[str, Any], *, seed: int = 0,
                 device: str = "auto", progress: bool = True,
                 val_fn: Callable[[nn.Module], Mapping[str, float]] | None = None) -> TrainedBottomUp:
    """Train ``model`` with ``step_fn`` and TrainConfig fields ``train``, or load it from the model cache.

    The cache key is ``config`` (everything defining the model: the recipe), the seed and the training
    annotations' hash, so a regenerated data set never reuses a model trained on the old one.
    """
    device = str(resolve_device(device))
    key = {"recipe": dict(config), "seed": seed, "train_data_sha256": file_sha256(train_set.ann_path)}
    folder = run_dir(name, key)
    trainer = Trainer(TrainConfig(**{**dict(train), "seed": seed, "device": device, "progress": progress}), folder)
    result = trainer.fit(model, train_set, step_fn, collate_fn=collate_bottomup, val_fn=val_fn)
    return TrainedBottomUp(result.model, folder, result, seed, val_set)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def multi_scale_flip_maps(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, stride: int,
                          *, scales: Sequence[float] = (1.0,), flip: Callable[[torch.Tensor], torch.Tensor] | None = None,
                          size_divisor: int = 1) -> torch.Tensor:
    """Maps at input resolution averaged over input ``scales`` and, with ``flip``, the mirrored image.

    ``forward(images) -> (N, C, h, w)`` maps at ``stride``; ``images (N, 3, S, S)``; ``flip(maps)`` turns maps
    predicted on the mirrored image into maps of the original (mirror, swap left/right channels, negate
    x-components of vector fields). Each scale resizes the image to the nearest multiple of ``size_divisor``,
    upsamples the maps to that input resolution (bicubic, as the reference code; under poselib's cell-centre convention) and resizes
    them to ``S``. Returns ``(N, C, S, S)``.
    """
    side = images.shape[-1]
    total = None
    count = 0
    for scale in scales:
        size = max(size_divisor, int(round(side * scale / size_divisor)) * size_divisor)
        scaled = _resize(images, size)
        batches = [(scaled, None)] + ([(scaled.flip(-1), flip)] if flip is not None else [])
        for batch, back in batches:
            maps = forward(batch).float()
            maps = F.interpolate(maps, scale_factor=stride, mode="bicubic", align_corners=False) if stride > 1 else maps
            maps = _resize(maps, side)
            if back is not None:
                maps = back(maps)
            total = maps if total is None else total + maps
            count += 1
    return total / count


@torch.no_grad()
def predict(model: nn.Module, dataset: BottomUpDataset, maps_fn: MapsFn, group_fn: GroupFn, *,
            device: str = "auto", batch_size: int = 8, progress: bool = True) -> dict[str, np.ndarray]:
    """Maps and people for every image of ``dataset``. Returns ``poses (N, 17, 3)`` in image pixels,
    ``scores (N,)`` and ``image_ids (N,)`` over all people found."""
    from tqdm import tqdm

    from poselib.progress import progress_disabled

    device_t = resolve_device(device)
    model = model.to(device_t).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                         collate_fn=collate_bottomup)
    poses, scores, image_ids = [], [], []
    for batch in tqdm(loader, desc="predict", disable=progress_disabled(progress), leave=False):
        maps = maps_fn(model, batch["image"].to(device_t)).float().cpu()
        for i in range(maps.shape[0]):
            found, found_scores = group_fn(maps[i])
            if len(found) == 0:
                continue
            found = np.asarray(found, dtype=np.float64).copy()
            present = found[..., 2] > 0
            found[..., :2] = apply_affine(found[..., :2], batch["input_to_image"][i].double().numpy())
            found[~present] = 0.0
            poses.append(found)
            scores.append(np.asarray(found_scores, dtype=np.float64))
            image_ids.append(np.full(len(found), int(batch["image_id"][i])))
    if not poses:
        return {"poses": np.zeros((0, 17, 3)), "scores": np.zeros(0), "image_ids": np.zeros(0, dtype=int)}
    return {"poses": np.concatenate(poses), "scores": np.concatenate(scores), "image_ids": np.concatenate(image_ids)}


def evaluate(predictions: Mapping[str, np.ndarray], dataset: BottomUpDataset, max_per_image: int = 20) -> dict[str, float]:
    """COCO keypoint AP of ``predictions`` (from :func:`predict`) on all images of ``dataset``; at most
    ``max_per_image`` highest-scoring people per image are kept (COCO's evaluation keeps 20)."""
    ids, scores = np.asarray(predictions["image_ids"]), np.asarray(predictions["scores"])
    keep = []
    for image_id in np.unique(ids):
        idx = np.flatnonzero(ids == image_id)
        keep.append(idx[np.argsort(-scores[idx], kind="stable")[:max_per_image]])
    if not keep:
        return evaluate_keypoints(str(dataset.ann_path), [])
    order = np.sort(np.concatenate(keep))
    results = poses_to_coco_results(ids[order], np.asarray(predictions["poses"])[order], scores[order])
    return evaluate_keypoints(str(dataset.ann_path), results)


__all__ = ["GroupFn", "MapsFn", "TrainedBottomUp", "augment_config", "build_datasets", "evaluate",
           "multi_scale_flip_maps", "predict", "train_cached"]
