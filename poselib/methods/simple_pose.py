"""Part II's method: Simple Pose (Li, Su and Wang, AAAI 2020) trained bottom-up.

A :class:`SimplePoseRecipe` names the data, the targets (keypoint and body-part heatmaps, or PAFs), the network
(an IMHN or a CMU-Net), the loss (focal L2 or plain L2 over every stage and scale), training, test-time
averaging and the greedy assignment's thresholds. :func:`train` trains it through the shared engine with the
model cached by the recipe's hash; :func:`predict_maps`, :func:`predict` and :func:`evaluate` run it on whole
images. :data:`ABLATIONS` lists the book's Table 1 variants as recipe overrides.

Presets: ``smoke`` a tiny 2-stage IMHN on 64x64 SynthPose-mini images for seconds; ``cpu`` a narrow 2-stage
IMHN on SynthPose's 256x256 images fitted into 128x128 inputs; ``gpu`` and ``coco`` the paper's 4-stage IMHN
(C=256) at 384x384 with its sigmas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from poselib.codecs.bodyparts import BodyPartTargets, flip_back, select_parts
from poselib.engine.cache import stored_metrics
from poselib.engine.checkpoint import trained_run
from poselib.engine.flops import count_macs, count_params
from poselib.engine.records import TrainedSummary, file_sha256
from poselib.grouping.greedy import GreedyConfig, group
from poselib.keypoints import NUM_KEYPOINTS
from poselib.losses import SIMPLE_POSE_SCALE_WEIGHTS, multi_scale_focal_l2
from poselib.methods import bottomup
from poselib.models import build_model
from poselib.presets import PRESET_DATASET, check_preset

METHOD = "simplepose"

#: The paper's focal L2 (equations 2-4); the released code's default is gamma=1, alpha=beta=0.
PAPER_LOSS: dict[str, Any] = {"gamma": 2.0, "alpha": 0.1, "beta": 0.02, "eta": 2.0, "thre": 0.01, "focal_channels": "all"}
RELEASED_LOSS: dict[str, Any] = {**PAPER_LOSS, "gamma": 1.0, "alpha": 0.0, "beta": 0.0}


@dataclass(frozen=True)
class SimplePoseRecipe:
    """Everything that defines a trained Simple Pose model (its hash keys the model cache). Lengths in input
    pixels."""

    name: str
    dataset: str
    model: str = "imhn"  # "imhn" (free widths) or "cmunet"; or a registered paper-size name
    model_kwargs: dict = field(default_factory=dict)
    input_size: int = 128
    encoding: str = "bodyparts"  # "bodyparts" | "paf"
    skeleton: str = "redundant"  # "redundant" | "mst"
    sigma_k: float = 9.0
    sigma_p: float = 7.0
    thre: float = 0.01
    loss: dict = field(default_factory=lambda: dict(PAPER_LOSS))
    scale_weights: tuple[float, ...] = SIMPLE_POSE_SCALE_WEIGHTS
    augment: bool | dict = True
    train: dict = field(default_factory=dict)
    test_scales: tuple[float, ...] = (1.0,)
    flip_test: bool = True
    grouping: dict = field(default_factory=dict)  # GreedyConfig fields

    @property
    def parts(self) -> tuple[tuple[int, int], ...]:
        return select_parts(self.skeleton)

    @property
    def num_outputs(self) -> int:
        return NUM_KEYPOINTS + (2 if self.encoding == "paf" else 1) * len(self.parts)


def recipe(preset: str = "cpu", **overrides) -> SimplePoseRecipe:
    """The Simple Pose recipe for ``preset``; keyword ``overrides`` replace recipe fields (dict fields
    ``model_kwargs``, ``loss``, ``train`` and ``grouping`` are merged into the preset's)."""
    check_preset(preset)
    dataset = PRESET_DATASET[preset]
    if preset == "smoke":
        base = SimplePoseRecipe(
            name=METHOD, dataset=dataset, input_size=64, sigma_k=2.5, sigma_p=2.0,
            model_kwargs={"num_stages": 2, "channels": 16, "growth": 8, "head_channels": 16, "order": 4,
                          "init_std": None},
            augment={"rotation_limit": 15.0, "scale_range": (0.8, 1.2)},
            train=dict(epochs=1, batch_size=8, optimizer="adam", lr=2e-3, schedule="constant", num_workers=0, log_every=2,
                       max_steps=4),
            flip_test=False,
        )
    elif preset == "cpu":
        # Sigmas of 4 and 3 px: the paper's 9 and 7 at 512 input, scaled to SynthPose people in a 128 input and
        # widened to a cell (the 32x32 maps are coarse). Adam instead of the paper's SGD at 1e-4, which would need
        # days, not minutes, from scratch; with Adam, PyTorch's default initialisation (init_std=None) rather than
        # the reference's N(0, 0.001): Adam's steps have a fixed size, so on weights of 0.001 they would be huge
        # relative to the weights behind every batch norm.
        base = SimplePoseRecipe(
            name=METHOD, dataset=dataset, input_size=128, sigma_k=4.0, sigma_p=3.0,
            model_kwargs={"num_stages": 2, "channels": 32, "growth": 16, "head_channels": 32, "order": 4,
                          "init_std": None},
            augment={"rotation_limit": 20.0, "scale_range": (0.8, 1.25)},
            # 2 epochs: three models (base, PAF, plain L2) must train within the part's share of the book's budget.
            # On 2 cores loading in the main process with NHWC convolutions is the fastest (0.47 against 0.57 s per
            # step with one loader worker, measured with max_steps=30).
            train=dict(epochs=2, batch_size=16, optimizer="adam", lr=2e-3, schedule="step", milestones=(1,),
                       gamma=0.2, num_workers=0, channels_last=True, log_every=10),
        )
    else:  # gpu and coco: the paper's 4-stage IMHN at 384x384, sigma_k 9 / sigma_p 7 px scaled from 512
        base = SimplePoseRecipe(
            name=METHOD, dataset=dataset, input_size=384, sigma_k=9.0 * 384 / 512, sigma_p=7.0 * 384 / 512,
            model_kwargs={"num_stages": 4, "channels": 256, "growth": 128, "order": 4},
            train=dict(epochs=100, batch_size=32, optimizer="sgd", lr=1e-4, momentum=0.9, weight_decay=5e-4,
                       schedule="warmup_step", warmup_steps=500, milestones=(15, 30, 45, 60, 75), gamma=0.2,
                       num_workers=8, log_every=50, amp=True),
            test_scales=(0.5, 1.0, 1.5, 2.0),
        )
    fields = {**base.__dict__, **overrides}
    for key in ("model_kwargs", "loss", "train", "grouping"):
        if key in overrides:
            fields[key] = {**getattr(base, key), **overrides[key]}
    return SimplePoseRecipe(**fields)


#: The book's Table 1 variants: name -> (description, recipe overrides), each a one-factor change of the base.
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("IMHN, body parts, focal L2 (paper's settings)", {}),
    "paf": ("PAFs instead of body parts", {"encoding": "paf"}),
    "l2": ("plain L2 instead of focal L2", {"loss": {"gamma": 0.0}}),
    "focal_keypoints": ("focal L2 on keypoints only", {"loss": {"focal_channels": "keypoints"}}),
    "no_spatial": ("without spatial attention (finest scale only)", {"model_kwargs": {"spatial_attention": False}}),
    "no_channel": ("without channel attention (no SE)", {"model_kwargs": {"channel_attention": False}}),
    "mst": ("minimum spanning tree skeleton (no redundant parts)", {"skeleton": "mst"}),
    "more_stages": ("one more stage", {}),  # filled in by ablation_recipe: num_stages + 1
}


def ablation_recipe(base: SimplePoseRecipe, name: str) -> SimplePoseRecipe:
    """``base`` with the ablation ``name`` of :data:`ABLATIONS` applied."""
    if name not in ABLATIONS:
        raise KeyError(f"unknown ablation {name!r}; choose one of {', '.join(ABLATIONS)}")
    changes = dict(ABLATIONS[name][1])
    if name == "more_stages":
        changes = {"model_kwargs": {"num_stages": base.model_kwargs.get("num_stages", 4) + 1}}
    for key in ("model_kwargs", "loss", "train", "grouping"):
        if key in changes:
            changes[key] = {**getattr(base, key), **changes[key]}
    return replace(base, **changes)


def build(recipe: SimplePoseRecipe) -> nn.Module:
    """The recipe's network, its outputs sized for the recipe's targets."""
    kwargs = dict(recipe.model_kwargs)
    if recipe.model.startswith("cmunet"):
        parts = recipe.num_outputs - NUM_KEYPOINTS
        kwargs.setdefault("branches", (NUM_KEYPOINTS, parts) if recipe.encoding == "paf" else (recipe.num_outputs,))
    else:
        kwargs.setdefault("num_outputs", recipe.num_outputs)
    return build_model(recipe.model, **kwargs)


def encoder(recipe: SimplePoseRecipe, stride: int = 4, num_scales: int = 5) -> BodyPartTargets:
    """The recipe's target encoder at the network's ``stride``."""
    return BodyPartTargets(recipe.input_size, stride, sigma_k=recipe.sigma_k, sigma_p=recipe.sigma_p,
                           thre=recipe.thre, skeleton=recipe.skeleton, encoding=recipe.encoding,
                           num_scales=num_scales)


def loss_fn(recipe: SimplePoseRecipe, outputs: list[list[torch.Tensor]], batch: dict) -> torch.Tensor:
    """The recipe's loss (equation 4) of a network's ``outputs`` against a batch's targets and masks."""
    return multi_scale_focal_l2(outputs, batch["targets"], batch["masks"], scale_weights=tuple(recipe.scale_weights),
                                num_keypoints=NUM_KEYPOINTS, **recipe.loss)


def _step(recipe: SimplePoseRecipe, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    outputs = model(batch["image"])
    loss = loss_fn(recipe, outputs, batch)
    # the unweighted last-stage finest-scale squared error, comparable across losses
    mse = (outputs[-1][0].detach().float() - batch["targets"][0]).square().mean()
    return loss, {"mse": float(mse)}


def build_datasets(recipe: SimplePoseRecipe, seed: int = 0, model: nn.Module | None = None):
    """Training set with the recipe's targets and plain validation set."""
    model = build(recipe) if model is None else model
    target = encoder(recipe, getattr(model, "stride", 4), 5)
    return bottomup.build_datasets(recipe.dataset, recipe.input_size, target, augment=recipe.augment, seed=seed)


def train(recipe: SimplePoseRecipe, *, seed: int = 0, device: str = "auto", progress: bool = True) -> bottomup.TrainedBottomUp:
    """Train ``recipe`` (or load it from the model cache when this recipe and seed were trained before)."""
    torch.manual_seed(seed)
    model = build(recipe)
    train_set, val_set = build_datasets(recipe, seed, model)
    return bottomup.train_cached(recipe.name, asdict(recipe), model, train_set, val_set, partial(_step, recipe),
                                 recipe.train, seed=seed, device=device, progress=progress)


def final_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The last stage's finest-scale maps ``(N, C, h, w)`` (inference uses only these, as the reference)."""
    return model(images)[-1][0]


def predict_maps(model: nn.Module, recipe: SimplePoseRecipe, images: torch.Tensor,
                 scales: tuple[float, ...] | None = None, flip: bool | None = None) -> torch.Tensor:
    """Maps ``(N, C, S, S)`` at input resolution, averaged over the recipe's test scales and flip."""
    flip = recipe.flip_test if flip is None else flip
    back = partial(flip_back, parts=recipe.parts, encoding=recipe.encoding) if flip else None
    return bottomup.multi_scale_flip_maps(
        partial(final_maps, model), images, getattr(model, "stride", 4),
        scales=tuple(scales or recipe.test_scales), flip=back, size_divisor=getattr(model, "size_divisor", 1),
    )


def group_maps(recipe: SimplePoseRecipe, maps: torch.Tensor, **grouping) -> tuple[np.ndarray, np.ndarray]:
    """People ``(poses (n, 17, 3), scores (n,))`` in input pixels from one image's maps ``(C, S, S)``."""
    config = GreedyConfig(**{**recipe.grouping, **grouping})
    return group(maps[:NUM_KEYPOINTS], maps[NUM_KEYPOINTS:], recipe.parts, config, encoding=recipe.encoding)


def predict(model: nn.Module, recipe: SimplePoseRecipe, dataset, *, device: str = "auto", progress: bool = True,
            scales: tuple[float, ...] | None = None, flip: bool | None = None, **grouping) -> dict[str, np.ndarray]:
    """People in every image of ``dataset`` (image pixels); see :func:`poselib.methods.bottomup.predict`."""
    return bottomup.predict(
        model, dataset, lambda m, x: predict_maps(m, recipe, x, scales, flip),
        lambda maps: group_maps(recipe, maps, **grouping), device=device, progress=progress,
    )


def evaluate(model: nn.Module, recipe: SimplePoseRecipe, dataset, *, device: str = "auto", progress: bool = True,
             scales: tuple[float, ...] | None = None, flip: bool | None = None, **grouping) -> dict[str, float]:
    """COCO keypoint AP on all images of ``dataset``."""
    predictions = predict(model, recipe, dataset, device=device, progress=progress, scales=scales, flip=flip, **grouping)
    return bottomup.evaluate(predictions, dataset)


def evaluate_trained(trained: bottomup.TrainedBottomUp, recipe: SimplePoseRecipe, *, device: str = "auto",
                     scales: tuple[float, ...] | None = None, flip: bool | None = None, **grouping) -> dict[str, float]:
    """:func:`evaluate` of a trained run on its validation set, computed once per run, validation file and
    test-time setting (``recipe``'s fields, ``scales``, ``flip``, ``grouping``): the chapters that compare the
    same model read the stored numbers (see :func:`poselib.engine.stored_metrics`)."""
    scales = tuple(scales or recipe.test_scales)
    flip = recipe.flip_test if flip is None else flip
    key = {"recipe": asdict(recipe), "scales": scales, "flip": flip, "grouping": grouping,
           "val_sha256": file_sha256(trained.val_set.ann_path)}
    return stored_metrics(trained.run_dir, key, lambda: evaluate(
        trained.model, recipe, trained.val_set, device=device, progress=False, scales=scales, flip=flip, **grouping))


def evaluate_targets(recipe: SimplePoseRecipe, dataset, *, stride: int = 4, **grouping) -> dict[str, float]:
    """COCO AP of the ground truth's own targets put through the test pipeline (upsampling from ``stride``,
    grouping, mapping back to the image): the ceiling any network trained on these targets can reach at the
    recipe's input size, and a check of everything after the network."""
    target = encoder(recipe, stride, 1)

    predictions: dict[str, list] = {"poses": [], "scores": [], "image_ids": []}
    from poselib.geometry import apply_affine

    for index in range(len(dataset)):
        sample = dataset[index]
        maps = target.encode(sample["keypoints"])[None]
        maps = torch.nn.functional.interpolate(maps, scale_factor=stride, mode="bicubic", align_corners=False)[0]
        poses, scores = group_maps(recipe, maps, **grouping)
        if len(poses) == 0:
            continue
        present = poses[..., 2] > 0
        poses[..., :2] = apply_affine(poses[..., :2], sample["input_to_image"].double().numpy())
        poses[~present] = 0.0
        predictions["poses"].append(poses)
        predictions["scores"].append(scores)
        predictions["image_ids"].append(np.full(len(poses), int(sample["image_id"])))
    if not predictions["poses"]:
        return bottomup.evaluate({"poses": np.zeros((0, 17, 3)), "scores": np.zeros(0), "image_ids": np.zeros(0)}, dataset)
    return bottomup.evaluate({k: np.concatenate(v) for k, v in predictions.items()}, dataset)


def complexity(recipe: SimplePoseRecipe) -> dict[str, float]:
    """Parameters (millions) and GMACs of the recipe's network at its input size."""
    return count_macs(build(recipe), (recipe.input_size, recipe.input_size))


def train_summary(preset: str, overrides: dict, *, seed: int = 0, device: str = "auto",
                  progress: bool = True) -> TrainedSummary:
    """What ``poselib train --method simplepose`` records: the preset's base recipe trained and evaluated on the
    validation images (the recipe's test scales and flip)."""
    r = recipe(preset, **overrides)
    trained = train(r, seed=seed, device=device, progress=progress)
    cost = complexity(r)
    return TrainedSummary(r, trained.run_dir, trained.val_set.ann_path, evaluate_trained(trained, r, device=device),
                          trained.result.wall_time_s, cost["params_m"], cost["gmacs"])


def load_trained(checkpoint: str | Path) -> tuple[nn.Module, SimplePoseRecipe]:
    """Model and recipe from a run folder (or its ``final.pt`` / ``last.pt``) written by :func:`train`."""
    weights, config = trained_run(checkpoint)
    fields = dict(config["recipe"])
    for key in ("scale_weights", "test_scales"):
        fields[key] = tuple(fields[key])
    r = SimplePoseRecipe(**fields)
    model = build(r)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=False)["model"])
    return model.eval(), r


def predict_images(checkpoint: str | Path, ann_path: str | Path, image_dir: str | Path = "/", *,
                   device: str = "auto") -> dict[str, np.ndarray]:
    """People on the images listed in a COCO file ``ann_path`` (annotations may be empty) by the model in
    ``checkpoint``: ``poses (N, 17, 3)`` in image pixels, ``scores (N,)``, ``image_ids (N,)``."""
    from poselib.data.datasets import BottomUpDataset

    model, r = load_trained(checkpoint)
    return predict(model, r, BottomUpDataset(ann_path, image_dir, input_size=r.input_size), device=device, progress=False)


#: The paper's Table 1 (COCO val2017 AP, %) for each ablation: (variant's AP, reference AP, experiments compared).
#: Typed in from Li, Su and Wang (2020), Table 1; shown beside our measurements, never used as ours.
PAPER_TABLE1: dict[str, tuple[float, float, str]] = {
    "base": (65.8, 65.8, "exp. 8: 3-stage IMHN, focal L2, 384 input"),
    "paf": (56.0, 56.5, "exp. 1 vs 4: PAFs (CMU-Pose, 6-stage CMU-Net) vs body parts (3-stage CMU-Net), L2"),
    "l2": (61.5, 65.8, "exp. 7 vs 8: 3-stage IMHN, L2 vs focal L2"),
    "focal_keypoints": (64.2, 65.8, "exp. 11 vs 8: focal L2 on keypoints only"),
    "no_spatial": (64.6, 65.8, "exp. 9 vs 8: without spatial attention"),
    "no_channel": (65.4, 65.8, "exp. 10 vs 8: without channel attention"),
    "mst": (65.1, 65.8, "exp. 12 vs 8: MST skeleton"),
    "more_stages": (67.3, 65.8, "exp. 14 vs 8: 4-stage vs 3-stage IMHN"),
}


def run_ablations(base: SimplePoseRecipe, names, *, seed: int = 0, device: str = "auto",
                  progress: bool = True) -> list[dict[str, Any]]:
    """Train (or load) each ablation of ``names`` and measure its AP (single scale, with the recipe's flip
    test). Returns one row per ablation: ``name``, ``description``, ``AP``, ``AP50``, ``train_s``, ``params_m``,
    and the paper's numbers from :data:`PAPER_TABLE1`."""
    rows = []
    for name in names:
        variant = ablation_recipe(base, name)
        trained = train(variant, seed=seed, device=device, progress=progress)
        metrics = evaluate_trained(trained, variant, device=device)
        paper_variant, paper_reference, experiments = PAPER_TABLE1[name]
        rows.append({
            "name": name, "description": ABLATIONS[name][0], "AP": metrics["AP"], "AP50": metrics["AP50"],
            "train_s": trained.result.wall_time_s, "params_m": count_params(trained.model) / 1e6,
            "paper_AP": paper_variant, "paper_reference_AP": paper_reference, "paper_experiments": experiments,
            "run_dir": str(trained.run_dir), "metrics": metrics,
        })
    return rows


__all__ = ["ABLATIONS", "METHOD", "PAPER_LOSS", "RELEASED_LOSS", "SimplePoseRecipe", "ablation_recipe", "build",
           "build_datasets", "complexity", "encoder", "evaluate", "evaluate_trained", "final_maps", "group_maps",
           "load_trained", "loss_fn", "predict", "predict_images", "predict_maps", "recipe", "train", "train_summary",
           "PAPER_TABLE1", "run_ablations", "evaluate_targets"]
