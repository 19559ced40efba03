"""MultiPoseNet with the Pose Residual Network (Kocabas et al., ECCV 2018) as a recipe per preset.

Three models are trained one after the other, as in the paper (section 3.5), each cached by its configuration
(:func:`poselib.engine.cache.run_dir`) so every chapter of Part I shares them:

1. :func:`train_keypoints`: backbone + keypoint pyramid + keypoint subnet on whole images
   (:class:`~poselib.data.datasets.BottomUpDataset`), L2 loss on 17 keypoint maps and the person segmentation,
   masked by W (crowds and people without keypoints), on the final output and every K level.
2. :func:`train_detector`: the RetinaNet person subnet on the frozen backbone (focal loss, smooth L1).
3. :func:`train_prn`: the PRN on ground-truth annotations only (:class:`~poselib.grouping.prn.PRNSamples`).

At test time :func:`predict_parts` runs the backbone once per image for keypoint peaks and person boxes, and
:func:`group_parts` turns any combination of ours / ground-truth peaks and boxes into poses with PRN, Max or UCR
(the paper's Tables 3 and 4). :func:`evaluate_poses` and :func:`evaluate_detections` give COCO AP.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from poselib.codecs import heatmap
from poselib.data.datasets import BottomUpDataset, collate_bottomup
from poselib.engine import Trainer, TrainConfig, TrainResult
from poselib.engine.cache import run_dir
from poselib.engine.checkpoint import trained_run
from poselib.engine.distributed import unwrap_model
from poselib.engine.records import TrainedSummary, file_sha256
from poselib.evaluation import boxes_to_coco_results, evaluate_boxes, evaluate_keypoints, poses_to_coco_results
from poselib.geometry import apply_affine
from poselib.grouping import prn as grouping
from poselib.methods import bottomup, pretraining
from poselib.methods.splits import dataset_split
from poselib.models.multiposenet import MultiPoseNet
from poselib.models.registry import without_pretrained
from poselib.models.prn import PoseResidualNetwork, prn_loss
from poselib.presets import PRESET_DATASET, check_preset, resolve_device

METHOD = "multiposenet"
NUM_KEYPOINTS = 17


@dataclass(frozen=True)
class MultiPoseNetRecipe:
    """Everything that defines the three trained models (each model's cache key uses the fields it depends on).

    ``model_kwargs``: :class:`~poselib.models.multiposenet.MultiPoseNet` arguments. ``input_size``: side of the
    square network input in training (pixels). ``test_size``: side of the square input at test time, whole images
    fitted into it; when larger than ``input_size``, training cuts ``input_size`` crops at that resolution
    (:func:`poselib.methods.bottomup.crop_augment`). None: ``input_size``. ``sigma``: keypoint Gaussian in stride-4
    cells. ``prn``:
    :class:`~poselib.models.prn.PoseResidualNetwork` arguments (``grid``, ``hidden``, ``layers``, ``dropout``,
    ``residual``, ``softmax``). ``train``, ``detector_train``, ``prn_train``: :class:`TrainConfig` fields.
    ``backbone_from``: the preset of chapter 0.4's model whose ResNet starts the backbone (the small presets' stand-in
    for ImageNet weights, see :mod:`poselib.methods.pretraining`), or None for ``model_kwargs``' own start.
    """

    name: str
    dataset: str
    input_size: int = 480
    test_size: int | None = None
    sigma: float = 2.0
    model_kwargs: dict = field(default_factory=dict)
    augment: bool | dict = True
    train: dict = field(default_factory=dict)
    detector_train: dict = field(default_factory=dict)
    prn: dict = field(default_factory=dict)
    prn_train: dict = field(default_factory=dict)
    prn_curriculum: bool = True
    prn_min_keypoints: int = 2
    peak_threshold: float = 0.1
    max_peaks: int = 30
    backbone_from: str | None = None

    @property
    def test_input_size(self) -> int:
        return self.test_size or self.input_size

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.prn.get("grid", grouping.PAPER_GRID))  # type: ignore[return-value]


def recipe(preset: str = "cpu", **overrides) -> MultiPoseNetRecipe:
    """The MultiPoseNet + PRN recipe for ``preset``; keyword ``overrides`` replace recipe fields (dict fields
    ``model_kwargs``, ``train``, ``detector_train``, ``prn``, ``prn_train`` are merged into the preset's)."""
    check_preset(preset)
    dataset = PRESET_DATASET[preset]
    light_aug = {"rotation_prob": 0.0, "scale_range": (0.8, 1.2)}
    if preset in ("smoke", "cpu"):
        # Minutes on 2 cores: a narrow ResNet-18 (from Part 0's model) with narrow pyramids, PRN on a 21x14 grid (3/8
        # of the paper's 56x36 per side: its two dense layers are memory-bound on a CPU). The cpu preset tests on whole
        # 256-pixel images (SynthPose's own resolution, as the paper's 480 inputs keep most of COCO's) and trains on
        # 128-pixel crops of them: stride-4 maps then have a cell per 4 image pixels, and the anchors are sized for
        # people at that resolution. Sigma: the paper's 2 cells at the cpu preset, whose cells cover 4 image pixels as
        # the paper's do (keypoint AP with ground-truth boxes through PRN after the same training, seeds 0 and 1:
        # 1 cell 0.033 and 0.027, 2 cells 0.065 and 0.045; 3 cells 0.053 for seed 0); 1 cell for smoke's 24x24 maps.
        small = dict(depth=18, width=16, fpn_channels=32, d_channels=16, anchor_sizes=(16, 32, 64))
        if preset == "smoke":
            base = MultiPoseNetRecipe(
                name=METHOD, dataset=dataset, input_size=96, sigma=1.0, model_kwargs=small,
                augment=light_aug,
                train=dict(epochs=2, batch_size=16, lr=2e-3, num_workers=0, log_every=1, channels_last=True),
                detector_train=dict(epochs=1, batch_size=16, lr=1e-3, num_workers=0, log_every=1, channels_last=True),
                prn=dict(grid=(21, 14), hidden=64, layers=1, dropout=0.5, residual=True),
                prn_train=dict(epochs=1, batch_size=16, lr=1e-3, num_workers=0, log_every=2),
                backbone_from="smoke",
            )
        else:
            base = MultiPoseNetRecipe(
                name=METHOD, dataset=dataset, input_size=128, test_size=256, sigma=2.0,
                model_kwargs={**small, "anchor_sizes": (32, 64, 128)}, augment=light_aug,
                # channels-last (NHWC) convolutions, faster on 2 cores: the keypoint subnet trained in 72 s against 87
                # contiguous; the detector in 36, 42 and 54 s against 49, 49 and 59 (pairs run back to back; this
                # machine's speed drifts between pairs)
                train=dict(epochs=5, batch_size=16, lr=3e-3, schedule="step", milestones=(4,), gamma=0.2,
                           num_workers=0, log_every=10, channels_last=True),
                detector_train=dict(epochs=4, batch_size=16, lr=2e-3, num_workers=0, log_every=10, channels_last=True),
                prn=dict(grid=(21, 14), hidden=1024, layers=1, dropout=0.5, residual=True),
                prn_train=dict(epochs=1, batch_size=32, lr=1e-3, num_workers=0, log_every=10),
                backbone_from="cpu",
            )
    else:  # gpu and coco: the paper's setting (sections 3.5 and 4.2)
        base = MultiPoseNetRecipe(
            name=METHOD, dataset=dataset, input_size=480, sigma=2.0,
            model_kwargs=dict(depth=50, pretrained=preset == "coco"),
            augment={"rotation_prob": 1.0, "rotation_limit": 40.0, "rotation_std": None, "scale_range": (0.8, 1.2)}
            if preset == "coco" else light_aug,
            train=dict(epochs=60 if preset == "gpu" else 100, batch_size=16, lr=1e-4, num_workers=8, log_every=50, amp=True),
            detector_train=dict(epochs=20, batch_size=16, lr=1e-5 if preset == "coco" else 1e-4, num_workers=8, log_every=50),
            prn=dict(grid=(56, 36), hidden=1024, layers=1, dropout=0.5, residual=True),
            prn_train=dict(epochs=16, batch_size=8, lr=1e-4, num_workers=4, log_every=200),
        )
    fields = {**base.__dict__}
    for key, value in overrides.items():
        if key in ("model_kwargs", "train", "detector_train", "prn", "prn_train") and isinstance(value, dict):
            fields[key] = {**getattr(base, key), **value}
        else:
            fields[key] = value
    return MultiPoseNetRecipe(**fields)


# -- data ------------------------------------------------------------------------------------------------------
class BottomUpTargets:
    """Dataset encoder adding ``targets (K+1, S/4, S/4)`` (keypoint Gaussians and the person segmentation,
    area fraction per cell) and ``weight (S/4, S/4)`` (W: 0 over crowds and people without keypoints)."""

    def __init__(self, input_size: int, sigma: float, stride: int = 4):
        self.size = (input_size // stride, input_size // stride)
        self.stride, self.sigma = stride, sigma

    def __call__(self, sample: dict) -> dict:
        maps = heatmap.encode_multi_person(sample["keypoints"], self.size, self.stride, self.sigma)
        seg = heatmap.resize_mask(sample["person_mask"], self.stride, "area", output_size=self.size)
        sample["targets"] = torch.cat([maps, seg[None]], 0)
        sample["weight"] = 1.0 - heatmap.resize_mask(sample["ignore_mask"], self.stride, "max", output_size=self.size)
        return sample


def build_datasets(recipe: MultiPoseNetRecipe, seed: int = 0) -> tuple[BottomUpDataset, BottomUpDataset]:
    """Whole-image training set (augmented, with targets) and validation set (no augmentation, no targets),
    through the shared :func:`poselib.methods.bottomup.build_datasets`."""
    return bottomup.build_datasets(recipe.dataset, recipe.input_size, BottomUpTargets(recipe.input_size, recipe.sigma),
                                   augment=recipe.augment, seed=seed, val_size=recipe.test_size)


# -- training --------------------------------------------------------------------------------------------------
def keypoint_loss(final: torch.Tensor, intermediate: list[torch.Tensor], targets: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The paper's Eq. 4 on the final maps plus the same loss on every intermediate (K-level) output: mean of
    ``W * (H_t - H_p)^2`` over cells and channels, summed over outputs. ``weight (N, h, w)``."""
    w = weight.unsqueeze(1)
    final_loss = ((final - targets) ** 2 * w).mean()
    inter = [((p - targets) ** 2 * w).mean() for p in intermediate]
    total = final_loss + sum(inter) if inter else final_loss
    return total * 100.0, {"final_loss": float(final_loss.detach()) * 100.0}


def keypoint_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    final, inter = unwrap_model(model).keypoint_outputs(batch["image"])
    return keypoint_loss(final, inter, batch["targets"], batch["weight"])


def _xyxy_boxes(batch: dict, min_size: float = 2.0) -> list[torch.Tensor]:
    out = []
    for boxes, count in zip(batch["boxes"], batch["num_people"]):
        b = boxes[: int(count)]
        b = b[(b[:, 2] >= min_size) & (b[:, 3] >= min_size)]
        out.append(torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1))
    return out


def detector_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    losses = unwrap_model(model).detector_loss(batch["image"], _xyxy_boxes(batch))
    return losses["classification"] + losses["bbox_regression"], {k: float(v.detach()) for k, v in losses.items()}


def prn_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    return prn_loss(model(batch["x"]), batch["y"]), {}


@dataclass
class Trained:
    """A trained (or cache-loaded) model with its run folder and the engine's result."""

    model: nn.Module
    run_dir: Path
    result: TrainResult

    @property
    def metrics_log(self) -> Path:
        return self.run_dir / "metrics.jsonl"


def _config(fields: dict, seed: int, device: str, progress: bool) -> TrainConfig:
    return TrainConfig(**{**fields, "seed": seed, "device": device, "progress": progress})


def build_network(recipe: MultiPoseNetRecipe, *, load_pretrained: bool = True) -> MultiPoseNet:
    """The recipe's network; ``load_pretrained=False`` skips an ImageNet backbone download (checkpoint loading,
    counting)."""
    return MultiPoseNet(**(recipe.model_kwargs if load_pretrained else without_pretrained(recipe.model_kwargs)))


def _keypoint_key(recipe: MultiPoseNetRecipe, seed: int, data_hash: str, backbone_source: str | None = None) -> dict:
    return {"dataset": recipe.dataset, "input_size": recipe.input_size, "test_size": recipe.test_size, "sigma": recipe.sigma,
            "model_kwargs": recipe.model_kwargs, "augment": recipe.augment, "train": recipe.train,
            "seed": seed, "train_data_sha256": data_hash, "backbone_source": backbone_source}


def initial_network(recipe: MultiPoseNetRecipe, *, seed: int = 0, device: str = "auto",
                    progress: bool = True) -> tuple[MultiPoseNet, str | None]:
    """The untrained network of ``recipe`` for ``seed``, its backbone copied from chapter 0.4's model when
    ``recipe.backbone_from`` names a preset, and that model's run folder name (None otherwise)."""
    torch.manual_seed(seed)  # the initial weights depend on the seed alone
    model = build_network(recipe)
    return model, pretraining.start_backbone(model.backbone, recipe.backbone_from, device=device, progress=progress)


def train_keypoints(recipe: MultiPoseNetRecipe, *, seed: int = 0, device: str = "auto", progress: bool = True) -> Trained:
    """Train backbone + keypoint subnet (or load them from the model cache)."""
    device = str(resolve_device(device))
    train_set, _ = build_datasets(recipe, seed)
    model, source = initial_network(recipe, seed=seed, device=device, progress=progress)
    folder = run_dir(f"{recipe.name}-keypoints", _keypoint_key(recipe, seed, file_sha256(train_set.ann_path), source))
    result = Trainer(_config(recipe.train, seed, device, progress), folder).fit(
        model, train_set, keypoint_step, collate_fn=collate_bottomup
    )
    return Trained(result.model, folder, result)


def train_detector(recipe: MultiPoseNetRecipe, keypoints: Trained | None = None, *, seed: int = 0, device: str = "auto",
                   progress: bool = True) -> Trained:
    """Train the person subnet on the frozen backbone of the keypoint model (trained first if needed)."""
    device = str(resolve_device(device))
    keypoints = keypoints or train_keypoints(recipe, seed=seed, device=device, progress=progress)
    train_set, _ = build_datasets(recipe, seed)
    key = {"keypoint_run": keypoints.run_dir.name, "detector_train": recipe.detector_train, "seed": seed}
    folder = run_dir(f"{recipe.name}-detector", key)
    torch.manual_seed(seed)  # the person subnet's initial weights
    model = build_network(recipe)
    model.load_state_dict(keypoints.model.state_dict())
    model.freeze_keypoint_path()
    result = Trainer(_config(recipe.detector_train, seed, device, progress), folder).fit(
        model, train_set, detector_step, collate_fn=collate_bottomup
    )
    model = result.model
    model.freeze_keypoint_path()
    return Trained(model.eval(), folder, result)


def prn_samples(recipe: MultiPoseNetRecipe, split: str = "train") -> grouping.PRNSamples:
    """PRN samples of a split's annotations (curriculum order for training)."""
    from poselib.data.coco import load_coco_keypoints

    ann, images = dataset_split(recipe.dataset, split)
    coco = load_coco_keypoints(ann, images)
    return grouping.PRNSamples(coco.people, recipe.grid, min_keypoints=recipe.prn_min_keypoints,
                               curriculum=recipe.prn_curriculum and split == "train")


def build_prn(recipe: MultiPoseNetRecipe) -> PoseResidualNetwork:
    kwargs = dict(recipe.prn)
    kwargs["grid"] = tuple(kwargs.get("grid", grouping.PAPER_GRID))
    return PoseResidualNetwork(NUM_KEYPOINTS, **kwargs)


def train_prn(recipe: MultiPoseNetRecipe, *, seed: int = 0, device: str = "auto", progress: bool = True) -> Trained:
    """Train PRN on ground-truth annotations (curriculum order, no shuffling, when ``recipe.prn_curriculum``)."""
    device = str(resolve_device(device))
    samples = prn_samples(recipe, "train")
    ann, _ = dataset_split(recipe.dataset, "train")
    key = {"dataset": recipe.dataset, "prn": recipe.prn, "prn_train": recipe.prn_train, "curriculum": recipe.prn_curriculum,
           "min_keypoints": recipe.prn_min_keypoints, "seed": seed, "train_data_sha256": file_sha256(ann)}
    folder = run_dir(f"{recipe.name}-prn", key)
    train_fields = {**recipe.prn_train, "shuffle": not recipe.prn_curriculum}
    torch.manual_seed(seed)  # PRN's initial weights
    result = Trainer(_config(train_fields, seed, device, progress), folder).fit(build_prn(recipe), samples, prn_step)
    return Trained(result.model.eval(), folder, result)


def ucr_prior(recipe: MultiPoseNetRecipe, max_people: int = 2000) -> torch.Tensor:
    """UCR's prior maps ``(K, H, W)`` from the training split's ground-truth targets."""
    samples = prn_samples(recipe, "train")
    step = max(1, len(samples) // max_people)
    return grouping.ucr_prior(samples[i]["y"] for i in range(0, len(samples), step))


# -- inference -------------------------------------------------------------------------------------------------
@dataclass
class ImageParts:
    """What the network found in one image, in image pixels: ``peaks (K, M, 3)``, ``boxes (D, 4)`` xywh,
    ``box_scores (D,)``; ``segmentation (S/4, S/4)`` probabilities at input resolution; ``input_to_image``."""

    image_id: int
    peaks: torch.Tensor
    boxes: torch.Tensor
    box_scores: torch.Tensor
    segmentation: torch.Tensor
    input_to_image: np.ndarray


def _boxes_to_image(xyxy: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    if xyxy.numel() == 0:
        return torch.zeros(0, 4)
    corners = apply_affine(xyxy.reshape(-1, 2, 2).cpu().numpy().astype(np.float64), matrix.astype(np.float64))
    low, high = corners.min(1), corners.max(1)
    return torch.from_numpy(np.concatenate([low, high - low], 1)).float()


@torch.no_grad()
def predict_parts(model: MultiPoseNet, recipe: MultiPoseNetRecipe, dataset: BottomUpDataset, *, device: str = "auto",
                  batch_size: int = 16, progress: bool = True, detect: bool = True) -> list[ImageParts]:
    """Peaks, person boxes and segmentation of every image of ``dataset`` (one backbone pass per image).
    ``detect=False`` skips the person subnet (no boxes: for keypoint-only models grouped with other boxes)."""
    from tqdm import tqdm

    from poselib.progress import progress_disabled

    device_t = resolve_device(device)
    model = model.to(device_t).eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate_bottomup)
    parts: list[ImageParts] = []
    for batch in tqdm(loader, desc="predict", disable=progress_disabled(progress), leave=False):
        images = batch["image"].to(device_t)
        if detect:
            maps, detections = model.infer(images)
        else:
            maps = model(images)
            detections = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)} for _ in range(len(images))]
        maps = maps.float().cpu()
        peaks = grouping.peaks_from_heatmaps(maps[:, :NUM_KEYPOINTS], model.stride, threshold=recipe.peak_threshold,
                                             max_peaks=recipe.max_peaks)
        for i, det in enumerate(detections):
            matrix = batch["input_to_image"][i].numpy()
            p = peaks[i].clone()
            p[..., :2] = torch.from_numpy(apply_affine(p[..., :2].numpy().astype(np.float64), matrix.astype(np.float64))).float()
            parts.append(ImageParts(int(batch["image_id"][i]), p, _boxes_to_image(det["boxes"].cpu(), matrix),
                                    det["scores"].cpu().float(), maps[i, NUM_KEYPOINTS].clamp(0, 1), matrix))
    return parts


def ground_truth_parts(dataset: BottomUpDataset, image_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truth of an image as ``(peaks (K, P, 3), boxes (P, 4), keypoints (P, K, 3))`` in image pixels."""
    people = dataset.coco.people[image_id]
    kps = torch.tensor(np.array([np.asarray(a.get("keypoints") or [0] * 51, dtype=np.float32).reshape(-1, 3) for a in people]).reshape(-1, NUM_KEYPOINTS, 3))
    boxes = torch.tensor(np.array([a["bbox"] for a in people], dtype=np.float32).reshape(-1, 4))
    return grouping.peaks_from_keypoints(kps), boxes, kps


def snap_to_grid(peaks: torch.Tensor, input_to_image: np.ndarray, stride: int = 4) -> torch.Tensor:
    """Peaks ``(K, M, 3)`` in image pixels moved to the centre of the stride-``stride`` output cell they fall in."""
    from poselib.geometry import invert_affine

    matrix = np.asarray(input_to_image, dtype=np.float64)
    xy = apply_affine(peaks[..., :2].numpy().astype(np.float64), invert_affine(matrix))
    centre = stride * np.floor(xy / stride) + (stride - 1) / 2
    out = peaks.clone()
    out[..., :2] = torch.from_numpy(apply_affine(centre, matrix)).float()
    return out


def make_grouping(kind: str, prn: nn.Module | None = None, prior: torch.Tensor | None = None) -> Callable | nn.Module:
    """``"prn"`` (needs ``prn``), ``"max"`` or ``"ucr"`` (needs ``prior``)."""
    if kind == "prn":
        if prn is None:
            raise ValueError("grouping 'prn' needs a trained PRN")
        return prn
    if kind == "max":
        return grouping.max_grouping
    if kind == "ucr":
        if prior is None:
            raise ValueError("grouping 'ucr' needs prior maps (ucr_prior)")
        return functools.partial(grouping.ucr_grouping, prior=prior)
    raise ValueError(f"unknown grouping {kind!r}; choose prn, max or ucr")


def group_parts(parts: list[ImageParts], dataset: BottomUpDataset, grouper: Callable | nn.Module, *, grid: tuple[int, int],
                keypoints: str = "ours", boxes: str = "ours") -> dict[str, np.ndarray]:
    """Poses of every image: ``keypoints`` and ``boxes`` each ``"ours"`` or ``"gt"`` (ground truth, score 1);
    ``keypoints="gt-grid"`` snaps the ground-truth keypoints to the centres of the network's output cells (stride
    4 of the input), the best a keypoint detector at that resolution can do without sub-cell refinement.

    Returns ``image_ids (N,)``, ``poses (N, 17, 3)`` and ``scores (N,)`` in image pixels."""
    ids, poses, scores = [], [], []
    for part in parts:
        gt_peaks, gt_boxes, _ = ground_truth_parts(dataset, part.image_id)
        peaks = part.peaks if keypoints == "ours" else gt_peaks
        if keypoints == "gt-grid":
            peaks = snap_to_grid(gt_peaks, part.input_to_image)
        b, s = (part.boxes, part.box_scores) if boxes == "ours" else (gt_boxes, torch.ones(len(gt_boxes)))
        if len(b) == 0:
            continue
        p, sc = grouping.group(peaks, b, s, grouper, grid=grid)
        ids += [part.image_id] * len(p)
        poses.append(p.numpy())
        scores.append(sc.numpy())
    if not poses:
        return {"image_ids": np.zeros(0, int), "poses": np.zeros((0, NUM_KEYPOINTS, 3)), "scores": np.zeros(0)}
    return {"image_ids": np.asarray(ids), "poses": np.concatenate(poses), "scores": np.concatenate(scores)}


def evaluate_poses(predictions: dict[str, np.ndarray], dataset: BottomUpDataset) -> dict[str, float]:
    """COCO keypoint AP of grouped poses on all of ``dataset``'s images."""
    results = []
    if len(predictions["image_ids"]):
        results = poses_to_coco_results(predictions["image_ids"], predictions["poses"], predictions["scores"])
    return evaluate_keypoints(str(dataset.ann_path), results)


def evaluate_detections(parts: list[ImageParts], dataset: BottomUpDataset) -> dict[str, float]:
    """COCO person box AP of the detections in ``parts``."""
    ids = np.concatenate([[p.image_id] * len(p.boxes) for p in parts]) if parts else np.zeros(0)
    boxes = torch.cat([p.boxes for p in parts]).numpy() if parts else np.zeros((0, 4))
    scores = torch.cat([p.box_scores for p in parts]).numpy() if parts else np.zeros(0)
    return evaluate_boxes(str(dataset.ann_path), boxes_to_coco_results(ids, boxes, scores) if len(ids) else [])


def segmentation_iou(parts: list[ImageParts], dataset: BottomUpDataset, threshold: float = 0.5) -> float:
    """Person segmentation IoU (PASCAL style: intersections and unions summed over the images) at the
    network's stride-4 resolution, against the union of the people's masks."""
    inter = union = 0.0
    by_id = {p.image_id: p for p in parts}
    for index, image_id in enumerate(dataset.image_ids):
        if image_id not in by_id:
            continue
        sample = dataset[index]
        truth = heatmap.resize_mask(sample["person_mask"], 4, "area", output_size=tuple(by_id[image_id].segmentation.shape)) > 0.5
        pred = by_id[image_id].segmentation > threshold
        inter += float((truth & pred).sum())
        union += float((truth | pred).sum())
    return inter / union if union else float("nan")


# -- runtime ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def time_pipeline(model: MultiPoseNet, prn: nn.Module, images: list[np.ndarray], input_size: int, *, grid: tuple[int, int],
                  device: str = "auto", repeats: int = 3, peak_threshold: float = 0.1,
                  min_box_score: float = 0.3) -> dict[str, float]:
    """Median milliseconds per image of the network pass (backbone + both subnets) and of grouping with PRN on
    the detections scoring at least ``min_box_score``, on ``images`` (uint8 HWC, resized to ``input_size``).
    Also returns the mean number of people grouped."""
    import cv2

    from poselib.imaging import to_tensor

    device_t = resolve_device(device)
    model, prn = model.to(device_t).eval(), prn.to(device_t).eval()
    sync = torch.cuda.synchronize if device_t.type == "cuda" else (lambda: None)
    net_ms, group_ms, people = [], [], []
    for image in images:
        x = to_tensor(cv2.resize(image, (input_size, input_size)))[None].to(device_t)
        for r in range(repeats + 1):
            sync(); t0 = time.perf_counter()
            maps, det = model.infer(x)
            peaks = grouping.peaks_from_heatmaps(maps[:, :NUM_KEYPOINTS].float(), model.stride, threshold=peak_threshold)
            sync(); t1 = time.perf_counter()
            keep = det[0]["scores"] >= min_box_score
            b = det[0]["boxes"][keep]
            xywh = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).cpu()
            grouping.group(peaks[0].cpu(), xywh, det[0]["scores"][keep].cpu(), prn, grid=grid)
            sync(); t2 = time.perf_counter()
            if r:  # the first run warms up
                net_ms.append((t1 - t0) * 1e3); group_ms.append((t2 - t1) * 1e3); people.append(len(b))
    return {"network_ms": float(np.median(net_ms)), "grouping_ms": float(np.median(group_ms)), "people": float(np.mean(people))}


@torch.no_grad()
def time_prn_per_person(prn: nn.Module, people: int, *, device: str = "auto", repeats: int = 20, peaks_per_type: int = 20) -> float:
    """Milliseconds of PRN grouping (inputs, network, assignment) for ``people`` boxes, divided by ``people``."""
    device_t = resolve_device(device)
    prn = prn.to(device_t).eval()
    grid = prn.grid
    gen = torch.Generator().manual_seed(0)
    boxes = torch.cat([torch.rand(people, 2, generator=gen) * 300, 40 + torch.rand(people, 2, generator=gen) * 150], 1)
    peaks = torch.cat([torch.rand(NUM_KEYPOINTS, peaks_per_type, 2, generator=gen) * 400,
                       torch.rand(NUM_KEYPOINTS, peaks_per_type, 1, generator=gen)], -1)
    sync = torch.cuda.synchronize if device_t.type == "cuda" else (lambda: None)
    grouping.group(peaks, boxes, None, prn, grid=grid)
    times = []
    for _ in range(repeats):
        sync(); t0 = time.perf_counter()
        grouping.group(peaks, boxes, None, prn, grid=grid)
        sync(); times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3 / people


def complexity(recipe: MultiPoseNetRecipe, input_size: int | None = None) -> dict[str, float]:
    """Parameters (millions) and GMACs of the recipe's full network pass (on a test image by default) and of its
    PRN."""
    from poselib.engine.flops import count_macs
    from poselib.models.multiposenet import _FullPass

    size = input_size or recipe.test_input_size
    net = count_macs(_FullPass(build_network(recipe, load_pretrained=False)), (size, size))
    prn = build_prn(recipe)
    prn_cost = count_macs(prn, torch.zeros(1, NUM_KEYPOINTS, *prn.grid))
    return {"params_m": net["params_m"], "gmacs": net["gmacs"], "prn_params_m": prn_cost["params_m"], "prn_gmacs": prn_cost["gmacs"]}


__all__ = [
    "BottomUpTargets", "ImageParts", "METHOD", "MultiPoseNetRecipe", "Trained", "build_datasets", "build_network",
    "build_prn", "complexity", "detector_step", "evaluate_detections", "evaluate_poses", "ground_truth_parts",
    "group_parts", "keypoint_loss", "keypoint_step", "load_pipeline", "make_grouping", "predict_images", "predict_parts",
    "prn_samples", "prn_step",
    "recipe", "segmentation_iou", "time_pipeline", "time_prn_per_person", "train_detector", "train_keypoints",
    "train_prn", "train_summary", "ucr_prior",
]


def train_summary(preset: str, overrides: dict, *, seed: int = 0, device: str = "auto",
                  progress: bool = True) -> TrainedSummary:
    """What ``poselib train --method multiposenet`` records: the keypoint subnet, the person subnet and PRN trained
    under ``preset`` (``overrides["train"]`` applies to the keypoint subnet), and the full pipeline (our keypoints,
    our boxes, PRN) evaluated on the validation images. The network's run folder is ``run_dir``; PRN's is
    ``extra["prn_run_dir"]``."""
    r = recipe(preset, **overrides)
    keypoints = train_keypoints(r, seed=seed, device=device, progress=progress)
    detector = train_detector(r, keypoints, seed=seed, device=device, progress=progress)
    prn = train_prn(r, seed=seed, device=device, progress=progress)
    _, val_set = build_datasets(r, seed)
    parts = predict_parts(detector.model, r, val_set, device=device, progress=progress)
    metrics = evaluate_poses(group_parts(parts, val_set, make_grouping("prn", prn.model), grid=r.grid), val_set)
    cost = complexity(r)
    seconds = sum(run.result.wall_time_s for run in (keypoints, detector, prn))
    return TrainedSummary(r, detector.run_dir, val_set.ann_path, metrics, seconds, cost["params_m"], cost["gmacs"],
                          extra={"prn_run_dir": str(prn.run_dir), "prn_params_m": cost["prn_params_m"]})


def load_pipeline(checkpoint: str | Path, prn_checkpoint: str | Path) -> tuple[MultiPoseNet, nn.Module, MultiPoseNetRecipe]:
    """The trained network and PRN, and the recipe rebuilt from their stored configurations.

    ``checkpoint`` is the person subnet's run folder (:func:`train_detector`'s, which holds the whole network; its
    keypoint run must sit beside it in the model cache), ``prn_checkpoint`` PRN's (:func:`train_prn`'s); either
    may also be a checkpoint file in its folder. Test-time settings not stored there take the recipe's defaults.
    """
    import json

    weights, config = trained_run(checkpoint)
    if "keypoint_run" not in config:
        raise ValueError(f"{checkpoint}: not a MultiPoseNet network run (the person subnet's folder, whose config names "
                         "its keypoint_run)")
    keypoint_config_path = weights.parent.parent / config["keypoint_run"] / "config.json"
    if not keypoint_config_path.is_file():
        raise FileNotFoundError(f"{keypoint_config_path}: missing; the keypoint run of {checkpoint} must sit beside it")
    keypoints = json.loads(keypoint_config_path.read_text())
    prn_weights, prn_config = trained_run(prn_checkpoint)
    if "prn" not in prn_config:
        raise ValueError(f"{prn_checkpoint}: not a PRN run (its config has no prn field)")
    model_kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in keypoints["model_kwargs"].items()}
    r = MultiPoseNetRecipe(name=METHOD, dataset=keypoints["dataset"], input_size=keypoints["input_size"],
                           test_size=keypoints.get("test_size"),
                           sigma=keypoints["sigma"], model_kwargs=model_kwargs, prn=prn_config["prn"])
    network = build_network(r, load_pretrained=False)  # the checkpoint holds the weights
    network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=False)["model"])
    prn = build_prn(r)
    prn.load_state_dict(torch.load(prn_weights, map_location="cpu", weights_only=False)["model"])
    return network.eval(), prn.eval(), r


def predict_images(checkpoint: str | Path, ann_path: str | Path, image_dir: str | Path = "/", *, device: str = "auto",
                   prn: str | Path | None = None) -> dict[str, np.ndarray]:
    """People on the images listed in a COCO file ``ann_path`` (annotations may be empty): the network in
    ``checkpoint`` finds keypoints and boxes, the PRN in ``prn`` assigns them (see :func:`load_pipeline`).
    Returns ``image_ids (N,)``, ``poses (N, 17, 3)`` in image pixels and ``scores (N,)``."""
    if prn is None:
        raise ValueError("MultiPoseNet needs PRN's run folder besides the network's (the prn_run_dir of the record "
                         "that `poselib train --method multiposenet` writes)")
    network, prn_model, r = load_pipeline(checkpoint, prn)
    dataset = BottomUpDataset(ann_path, image_dir, input_size=r.test_input_size)
    parts = predict_parts(network, r, dataset, device=device, progress=False)
    return group_parts(parts, dataset, make_grouping("prn", prn_model), grid=r.grid)


def bench_main(argv: list[str] | None = None) -> int:
    """``poselib bench prn``: milliseconds per person of PRN grouping (inputs, network, assignment), batched over
    the boxes of one image, for a PRN of the paper's size (untrained: timing only)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="poselib bench prn", description=bench_main.__doc__)
    parser.add_argument("--people", default="1,5,10,20", help="comma-separated numbers of people per image")
    parser.add_argument("--grid", default="56x36", help="PRN grid HxW (the paper's 56x36)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        grid = tuple(int(v) for v in args.grid.lower().split("x"))
        people = [int(v) for v in args.people.split(",")]
    except ValueError:
        parser.error(f"--grid must look like 56x36 and --people like 1,5,10 (got {args.grid!r}, {args.people!r})")
    net = PoseResidualNetwork(NUM_KEYPOINTS, grid, hidden=args.hidden, layers=args.layers)  # type: ignore[arg-type]
    device = resolve_device(args.device)
    timings = {n: time_prn_per_person(net, n, device=str(device), repeats=args.repeats) for n in people}
    print(f"PRN {grid[0]}x{grid[1]}, {args.layers} x {args.hidden} hidden, {device}, median of {args.repeats}")
    print(f"{'people':>6}  {'ms/person':>9}  {'ms/image':>9}")
    for n, ms in timings.items():
        print(f"{n:>6}  {ms:9.3f}  {ms * n:9.3f}")
    print(json.dumps({"benchmark": "prn", "device": str(device), "grid": list(grid), "hidden": args.hidden,
                      "layers": args.layers, "ms_per_person": {str(n): round(ms, 4) for n, ms in timings.items()}}))
    return 0
