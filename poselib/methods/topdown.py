"""Top-down heatmap methods: person crops in, one heatmap per keypoint out.

A :class:`TopDownRecipe` names everything a run needs (model, input size, target sigma, augmentation, training
schedule, test-time decoding); :func:`train` trains it through :class:`poselib.engine.Trainer` with the trained
model cached by the recipe's hash, and :func:`evaluate` measures COCO keypoint AP with ground-truth or detected
boxes. Part 0's Simple Baselines model uses it as is; MSPN and RSN plug in their own models and losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from poselib.codecs import decode, heatmap
from poselib.data.datasets import TopDownDataset
from poselib.data.transforms import AugmentConfig
from poselib.engine import Trainer, TrainConfig, TrainResult
from poselib.engine.cache import config_hash, run_dir, stored_metrics
from poselib.engine.checkpoint import trained_run
from poselib.engine.flops import count_macs
from poselib.engine.records import TrainedSummary, file_sha256
from poselib.evaluation import evaluate_keypoints, matched_oks, oks_nms, poses_to_coco_results
from poselib.evaluation.results import write_results
from poselib.losses import keypoint_mse
from poselib.methods.splits import dataset_split
from poselib.models import build_model
from poselib.presets import resolve_device


#: The cpu preset's training schedule of every top-down chapter (Parts 0, IV and V), ``epochs`` set by each recipe:
#: a short run learns most with a high rate decayed linearly to zero (Adam 1e-2 after 50 warm-up steps); on 2 cores
#: NHWC convolutions and loading in the main process (no worker competing with torch's threads) are the fastest.
CPU_SCHEDULE: dict = dict(batch_size=32, optimizer="adam", lr=1e-2, schedule="warmup_linear", warmup_steps=50,
                          num_workers=0, channels_last=True, log_every=10)


@dataclass(frozen=True)
class TopDownRecipe:
    """Everything that defines a trained top-down model (its hash keys the model cache)."""

    name: str
    model: str  # a name in poselib.models.registry
    dataset: str  # see poselib.methods.splits.dataset_split
    input_size: tuple[int, int] = (256, 192)  # (H, W) of the person crop
    sigma: float = 2.0  # target Gaussian sigma in heatmap cells
    model_kwargs: dict = field(default_factory=dict)
    augment: bool | dict = True  # True: the papers' augmentation; a dict: AugmentConfig fields; False: none
    train: dict = field(default_factory=dict)  # TrainConfig fields
    flip_test: bool = True
    blur_kernel: int = 0  # post-Gaussian blur of the predicted maps (0: off)
    decoder: str = "quarter"  # "argmax" | "quarter" | "top2" | "quarter_second_max" (MSPN)
    val_every_epoch: bool = True
    # method-specific targets and loss, e.g. {"kind": "mspn", ...}; empty: one Gaussian map per keypoint (sigma)
    # and heatmap_step. An empty dict is left out of the cache key, so older recipes keep their hashes.
    targets: dict = field(default_factory=dict)
    # the preset of chapter 0.4's model whose ResNet starts the network (poselib.methods.pretraining; the small
    # presets' stand-in for ImageNet weights), or None for the model's own start. None is left out of the cache key.
    backbone_from: str | None = None


#: ``recipe.targets["kind"]`` -> module providing ``target_encoder(recipe, stride)`` and ``step_fn(recipe)``
TARGET_KINDS: dict[str, str] = {"mspn": "poselib.methods.mspn"}


def _target_plugin(recipe: TopDownRecipe):
    """The module implementing ``recipe.targets`` (``None`` for plain Gaussian heatmaps)."""
    if not recipe.targets:
        return None
    import importlib

    kind = recipe.targets.get("kind")
    if kind not in TARGET_KINDS:
        raise ValueError(f"recipe {recipe.name!r}: unknown targets kind {kind!r}; known: {sorted(TARGET_KINDS)}")
    return importlib.import_module(TARGET_KINDS[kind])


def recipe_config(recipe: TopDownRecipe) -> dict:
    """The recipe as a JSON-able dict for cache keys and records (``targets`` and ``backbone_from`` only when set)."""
    fields = asdict(recipe)
    if not fields["targets"]:
        del fields["targets"]
    if fields["backbone_from"] is None:
        del fields["backbone_from"]
    return fields


class HeatmapTargets:
    """Dataset encoder adding ``heatmaps (K,h,w)`` and ``target_weight (K,)`` to a top-down sample."""

    def __init__(self, input_size: tuple[int, int], stride: int, sigma: float):
        self.heatmap_size = (input_size[0] // stride, input_size[1] // stride)
        self.stride = stride
        self.sigma = sigma

    def __call__(self, sample: dict) -> dict:
        maps, weights = heatmap.encode_heatmaps(sample["keypoints"][None], self.heatmap_size, self.stride, self.sigma)
        sample["heatmaps"], sample["target_weight"] = maps[0], weights[0]
        return sample


def heatmap_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Training step of a single-output heatmap model: weighted MSE against ``batch["heatmaps"]``."""
    pred = model(batch["image"])
    loss = keypoint_mse(pred, batch["heatmaps"], batch["target_weight"])
    return loss, {}


def _train_config(recipe: TopDownRecipe, seed: int, device: str, progress: bool) -> TrainConfig:
    return TrainConfig(**{**recipe.train, "seed": seed, "device": device, "progress": progress})


def augment_config(augment: bool | dict) -> AugmentConfig | None:
    """The recipe's ``augment`` field as an :class:`AugmentConfig` (``None`` for no augmentation)."""
    if augment is True:
        return AugmentConfig()
    if not augment:
        return None
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()}
    return AugmentConfig(**fields)


def build_datasets(
    recipe: TopDownRecipe, seed: int = 0, boxes: str | Path = "gt", *, stride: int | None = None
) -> tuple[TopDownDataset, TopDownDataset]:
    """Training set (augmented, with targets at the model's ``stride``) and validation set (no augmentation) of
    the recipe's data set; ``boxes`` is ``"gt"`` or a detections file for the validation crops."""
    if stride is None:
        stride = getattr(build_model(recipe.model, load_pretrained=False, **recipe.model_kwargs), "stride", 4)
    plugin = _target_plugin(recipe)
    train_ann, train_images = dataset_split(recipe.dataset, "train")
    val_ann, val_images = dataset_split(recipe.dataset, "val")
    train_set = TopDownDataset(
        train_ann,
        train_images,
        input_size=recipe.input_size,
        augment=augment_config(recipe.augment),
        encoder=HeatmapTargets(recipe.input_size, stride, recipe.sigma) if plugin is None else plugin.target_encoder(recipe, stride),
        seed=seed,
    )
    val_set = TopDownDataset(val_ann, val_images, input_size=recipe.input_size, boxes=boxes)
    return train_set, val_set


@dataclass
class TrainedTopDown:
    """A trained (or cache-loaded) model with its recipe, run folder, engine result and validation set."""

    recipe: TopDownRecipe
    model: nn.Module
    run_dir: Path
    result: TrainResult
    seed: int
    val_set: TopDownDataset

    @property
    def metrics_log(self) -> Path:
        return self.run_dir / "metrics.jsonl"


def cache_key(recipe: TopDownRecipe, seed: int, train_ann: str | Path, backbone_source: str | None = None) -> dict:
    """What names a trained model in the model cache: the recipe, the seed, the SHA-256 of the training annotation
    file (a regenerated data set must not reuse a model trained on the old one) and, with ``backbone_from``, the
    run folder of the starting weights."""
    key: dict = {"recipe": recipe_config(recipe), "seed": seed}
    if backbone_source is not None:
        key["backbone_source"] = backbone_source
    key["train_data_sha256"] = file_sha256(train_ann)
    return key


def run_name(recipe: TopDownRecipe, seed: int = 0) -> str:
    """The model-cache folder name :func:`train` gives ``recipe`` and ``seed``, computed without training or
    building anything (it reads the training annotation file, which must exist): what an archived record of the
    same model names (:func:`poselib.engine.records.find_archived`)."""
    source = None
    if recipe.backbone_from is not None:
        from poselib.methods import pretraining  # which imports this module

        source = pretraining.backbone_source(recipe.backbone_from)
    train_ann, _ = dataset_split(recipe.dataset, "train")
    return f"{recipe.name}-{config_hash(cache_key(recipe, seed, train_ann, source))}"


def train(
    recipe: TopDownRecipe,
    *,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    step_fn: Callable | None = None,
) -> TrainedTopDown:
    """Train ``recipe`` (or load it from the model cache when this exact recipe and seed were trained before).

    Validation AP with ground-truth boxes is logged at every epoch end when ``recipe.val_every_epoch``.
    Interrupted runs resume from their last checkpoint. ``step_fn`` defaults to the recipe's (``targets``), or
    :func:`heatmap_step`. With ``recipe.backbone_from`` the network starts from chapter 0.4's ResNet (trained
    first if the cache lacks it), whose run folder joins the cache key.
    """
    if step_fn is None:
        plugin = _target_plugin(recipe)
        step_fn = heatmap_step if plugin is None else plugin.step_fn(recipe)
    device = str(resolve_device(device))
    torch.manual_seed(seed)  # the initial weights depend on the seed alone, not on what the caller drew before
    model = build_model(recipe.model, **recipe.model_kwargs)
    source = None
    if recipe.backbone_from is not None:
        from poselib.methods import pretraining  # which imports this module

        source = pretraining.start_backbone(model, recipe.backbone_from, device=device, progress=progress)
    train_set, val_set = build_datasets(recipe, seed, stride=getattr(model, "stride", 4))
    folder = run_dir(recipe.name, cache_key(recipe, seed, train_set.ann_path, source))
    trainer = Trainer(_train_config(recipe, seed, device, progress), folder)
    val_fn = None
    if recipe.val_every_epoch:
        val_recipe = replace(recipe, flip_test=False)

        def val_fn(m: nn.Module) -> dict[str, float]:
            return {"val_AP": evaluate(m, val_recipe, val_set, device=device, progress=False)["AP"]}

    result = trainer.fit(model, train_set, step_fn, val_fn=val_fn)
    return TrainedTopDown(recipe, result.model, folder, result, seed, val_set)


def model_heatmaps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's final heatmaps: multi-output models (lists, per stage) contribute their last output."""
    out = model(images)
    while isinstance(out, (list, tuple)):
        out = out[-1]
    return out


#: How crops' heatmaps become keypoints at test time: ``(flip_test, decoder, blur_kernel)`` as in a recipe.
TestTime = tuple[bool, str, int]


def _decode(maps: torch.Tensor, decoder: str) -> tuple[torch.Tensor, torch.Tensor]:
    if decoder == "argmax":
        return decode.decode_argmax(maps)
    if decoder == "top2":
        return decode.decode_top2_average(maps)
    if decoder == "quarter_second_max":
        return decode.decode_quarter_offset(maps, mode="second_max")
    return decode.decode_quarter_offset(maps)


@torch.no_grad()
def predict_test_times(
    model: nn.Module,
    dataset: TopDownDataset,
    test_times: Sequence[TestTime],
    *,
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
) -> list[dict[str, np.ndarray]]:
    """:func:`predict` under each of several test-time settings ``(flip_test, decoder, blur_kernel)``, from one
    forward pass per crop (and one of its mirror image when any setting flips): comparing decoders costs no
    more network time than running one."""
    from tqdm import tqdm

    from poselib.progress import progress_disabled

    device_t = resolve_device(device)
    model = model.to(device_t).eval()
    stride = getattr(model, "stride", 4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    keys = ("poses", "scores", "image_ids", "ann_ids", "areas")
    parts: list[dict[str, list]] = [{key: [] for key in keys} for _ in test_times]
    any_flip = any(flip for flip, _, _ in test_times)
    for batch in tqdm(loader, desc="predict", disable=progress_disabled(progress), leave=False):
        images = batch["image"].to(device_t)
        plain = model_heatmaps(model, images)
        mirrored = model_heatmaps(model, images.flip(3)) if any_flip else None
        for (flip, decoder, blur), out in zip(test_times, parts):
            maps = decode.flip_average(plain, mirrored) if flip else plain
            if blur:
                maps = decode.gaussian_blur(maps, blur)
            coords, kp_scores = _decode(maps.float().cpu(), decoder)
            xy = decode.heatmap_coords_to_image(coords, stride, batch["crop_to_image"].float())
            confident = kp_scores > 0.2
            mean_conf = (kp_scores * confident).sum(1) / confident.sum(1).clamp(min=1)
            out["poses"].append(torch.cat([xy, kp_scores[..., None]], dim=-1).numpy())
            out["scores"].append((mean_conf * batch["score"].float()).numpy())
            out["image_ids"].append(batch["image_id"].numpy())
            out["ann_ids"].append(batch["ann_id"].numpy())
            out["areas"].append(batch["area"].float().numpy())
    if len(dataset) == 0:
        empty = np.zeros((0,))
        return [{"poses": np.zeros((0, 17, 3)), "scores": empty, "image_ids": empty.astype(int),
                 "ann_ids": empty.astype(int), "areas": empty} for _ in test_times]
    return [{key: np.concatenate(out[key]) for key in keys} for out in parts]


def predict(
    model: nn.Module,
    recipe: TopDownRecipe,
    dataset: TopDownDataset,
    *,
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Run the model on every crop of ``dataset`` with the recipe's test-time settings.

    Returns arrays over the crops: ``poses (N,17,3)`` in image pixels with keypoint scores, ``scores (N,)`` (box
    score times the mean of keypoint scores above 0.2, as in Simple Baselines/MSPN), ``image_ids``, ``ann_ids``
    (-1 for detector boxes), ``areas``.
    """
    test_time = (recipe.flip_test, recipe.decoder, recipe.blur_kernel)
    return predict_test_times(model, dataset, [test_time], device=device, batch_size=batch_size, progress=progress)[0]


def person_oks(predictions: dict[str, np.ndarray], dataset: TopDownDataset) -> np.ndarray:
    """OKS of each predicted crop's pose with the annotation the crop was made from (:func:`predict` on
    ground-truth boxes). Returns ``(N,)`` in the order of ``predictions``."""
    if (predictions["ann_ids"] < 0).any():
        raise ValueError(f"{dataset.ann_path}: person OKS needs crops from ground-truth boxes, not detections")
    by_id = {ann["id"]: ann for anns in dataset.coco.people.values() for ann in anns}
    people = [by_id[int(i)] for i in predictions["ann_ids"]]
    if not people:
        return np.zeros(0)
    return matched_oks([p["keypoints"] for p in people], [p["area"] for p in people], predictions["poses"])


def nms_per_image(predictions: dict[str, np.ndarray], threshold: float = 0.9) -> dict[str, np.ndarray]:
    """OKS-NMS among the poses of each image (needed with detector boxes, harmless with ground-truth boxes)."""
    keep: list[np.ndarray] = []
    for image_id in np.unique(predictions["image_ids"]):
        idx = np.flatnonzero(predictions["image_ids"] == image_id)
        kept = oks_nms(predictions["poses"][idx], predictions["scores"][idx], predictions["areas"][idx], threshold)
        keep.append(idx[np.asarray(kept, dtype=int)])
    order = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)
    return {key: value[order] for key, value in predictions.items()}


def evaluate_predictions(
    predictions: dict[str, np.ndarray],
    dataset: TopDownDataset,
    *,
    results_path: str | Path | None = None,
    use_nms: bool | None = None,
) -> dict[str, float]:
    """COCO keypoint AP of :func:`predict`'s output on all of ``dataset``'s images. OKS-NMS is applied when the
    boxes come from a detector (``use_nms=None`` decides from the predictions)."""
    from_detector = bool((predictions["ann_ids"] < 0).any())
    if use_nms or (use_nms is None and from_detector):
        predictions = nms_per_image(predictions)
    results = poses_to_coco_results(predictions["image_ids"], predictions["poses"], predictions["scores"])
    if results_path is not None:
        write_results(results_path, results)
    return evaluate_keypoints(str(dataset.ann_path), results)


def evaluate(
    model: nn.Module,
    recipe: TopDownRecipe,
    dataset: TopDownDataset,
    *,
    device: str = "auto",
    progress: bool = True,
    results_path: str | Path | None = None,
    use_nms: bool | None = None,
) -> dict[str, float]:
    """COCO keypoint AP of ``model`` on ``dataset``'s boxes, evaluated on all of the data set's images.

    OKS-NMS is applied when the boxes come from a detector (``use_nms=None`` decides from the data set).
    """
    predictions = predict(model, recipe, dataset, device=device, progress=progress)
    return evaluate_predictions(predictions, dataset, results_path=results_path, use_nms=use_nms)


def evaluate_test_times(
    model: nn.Module,
    dataset: TopDownDataset,
    test_times: Sequence[TestTime],
    *,
    device: str = "auto",
    progress: bool = True,
) -> list[dict[str, float]]:
    """:func:`evaluate` under each test-time setting ``(flip_test, decoder, blur_kernel)``, sharing the network's
    forward passes (:func:`predict_test_times`)."""
    predictions = predict_test_times(model, dataset, test_times, device=device, progress=progress)
    return [evaluate_predictions(p, dataset) for p in predictions]


def evaluate_trained(trained: TrainedTopDown, *, device: str = "auto") -> dict[str, float]:
    """:func:`evaluate` of a trained run on its validation set (ground-truth boxes), computed once per run and
    validation file (see :func:`poselib.engine.stored_metrics`)."""
    key = {"evaluation": "keypoints, ground-truth boxes", "val_sha256": file_sha256(trained.val_set.ann_path)}
    return stored_metrics(
        trained.run_dir, key, lambda: evaluate(trained.model, trained.recipe, trained.val_set, device=device, progress=False)
    )


def train_summary(recipe: TopDownRecipe, *, seed: int = 0, device: str = "auto", progress: bool = True) -> TrainedSummary:
    """Train ``recipe`` (or load it from the cache) and evaluate it with ground-truth boxes: what ``poselib train``
    records."""
    trained = train(recipe, seed=seed, device=device, progress=progress)
    cost = complexity(recipe)
    return TrainedSummary(recipe, trained.run_dir, trained.val_set.ann_path, evaluate_trained(trained, device=device),
                          trained.result.wall_time_s, cost["params_m"], cost["gmacs"])


def recipe_from_dict(fields: dict) -> TopDownRecipe:
    """Rebuild a recipe from its JSON form (as stored in a run folder's ``config.json``)."""
    fields = dict(fields)
    fields["input_size"] = tuple(fields["input_size"])
    return TopDownRecipe(**fields)


def load_trained(checkpoint: str | Path) -> tuple[nn.Module, TopDownRecipe]:
    """Model and recipe from a run folder (or its ``final.pt`` / ``last.pt``) written by :func:`train`."""
    weights, config = trained_run(checkpoint)
    recipe = recipe_from_dict(config["recipe"])
    model = build_model(recipe.model, load_pretrained=False, **recipe.model_kwargs)  # the checkpoint holds the weights
    state = torch.load(weights, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    return model.eval(), recipe


def complexity(recipe: TopDownRecipe) -> dict[str, float]:
    """Parameters (millions) and GMACs of the recipe's model at its input size."""
    return count_macs(build_model(recipe.model, **recipe.model_kwargs), recipe.input_size)

