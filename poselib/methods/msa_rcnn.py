"""MSA R-CNN as a method: COCO keypoint files -> detection targets -> one model for boxes and keypoints -> COCO AP.

A :class:`MSARCNNRecipe` names the model (an :class:`~poselib.models.msa_rcnn.MSARCNNConfig` as a dict), the data
set, the augmentation, the training schedule and the test-time choices (decoder, scales). :func:`train` trains it
through :class:`poselib.engine.Trainer`, cached by the recipe's hash; :func:`evaluate` gives COCO keypoint AP and
person-box AP of the same predictions. :func:`ladder` lays out the paper's Table 1 as recipes, one per rung.

The data side (:class:`DetectionDataset`) turns one image and its person annotations into torchvision's targets
``{"boxes", "labels", "keypoints"}``. COCO keypoints sit on pixel centres at integer coordinates, torchvision's
detection code works in continuous coordinates (a pixel spans ``[i, i+1)``), so keypoints get +0.5 on the way in
and -0.5 on the way out; COCO boxes are already continuous.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from poselib.data.coco import CocoIndex, load_coco_keypoints
from poselib.engine import Trainer, TrainConfig, TrainResult
from poselib.engine.cache import run_dir, stored_metrics
from poselib.engine.checkpoint import trained_run
from poselib.engine.flops import count_params
from poselib.engine.records import TrainedSummary, file_sha256
from poselib.evaluation import boxes_to_coco_results, evaluate_boxes, evaluate_keypoints, poses_to_coco_results
from poselib.keypoints import FLIP_INDEX, NUM_KEYPOINTS
from poselib.methods import pretraining
from poselib.methods.splits import dataset_split
from poselib.models.msa_rcnn import MSARCNN, MSARCNNConfig, build_msa_rcnn, detect_multiscale
from poselib.presets import PRESET_DATASET, check_preset, resolve_device

METHOD = "msarcnn"


@dataclass(frozen=True)
class MSARCNNRecipe:
    """Everything that defines a trained model (its hash, without the test-time fields, keys the model cache).

    ``model``: :class:`MSARCNNConfig` fields. ``flip_prob``: horizontal flip probability in training (the only
    augmentation; the paper also samples the shorter side in 640..800, ``scale_range`` does that here as a factor
    of ``min_size``, ``(1.0, 1.0)`` for none). ``train``: :class:`TrainConfig` fields. Test time: ``decoder``
    ("argmax" or "top2") and ``tta_scales`` (``()`` for none). ``backbone_from``: the preset of chapter 0.4's model
    whose ResNet starts the backbone (the small presets' stand-in for ImageNet weights, see
    :mod:`poselib.methods.pretraining`), or None for the model's own start.
    """

    name: str
    dataset: str
    model: dict = field(default_factory=dict)
    flip_prob: float = 0.5
    scale_range: tuple[float, float] = (1.0, 1.0)
    train: dict = field(default_factory=dict)
    decoder: str = "argmax"
    tta_scales: tuple[float, ...] = ()
    backbone_from: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        object.__setattr__(self, "tta_scales", tuple(float(v) for v in self.tta_scales))
        MSARCNNConfig(**self.model)  # validate early, naming the bad field

    @property
    def config(self) -> MSARCNNConfig:
        return MSARCNNConfig(**{**self.model, "decoder": self.decoder})

    def training_key(self) -> dict:
        """The fields that change the trained weights (test-time choices excluded, so they share one model)."""
        fields = asdict(self)
        for name in ("decoder", "tta_scales"):
            fields.pop(name)
        fields["model"] = {k: v for k, v in MSARCNNConfig(**self.model).to_dict().items() if k != "decoder"}
        return fields


# ---------------------------------------------------------------------------------------------------------------
# data


class DetectionDataset(Dataset):
    """One sample per image: ``(image (3,H,W) float in [0,1], target)`` with torchvision's target
    ``{"boxes" (M,4) xyxy, "labels" (M,) ones, "keypoints" (M,17,3) [x, y, v], "image_id"}``.

    Every non-crowd person with a box of at least one pixel is a target, also those without labelled keypoints
    (the box head learns from them; their keypoints carry ``v = 0`` and no loss). With ``train=True`` images
    without people are left out and each sample is flipped with ``flip_prob`` (keypoints swap sides), the draw
    coming from ``(seed, epoch, index)``.
    """

    def __init__(self, ann_path: str | Path, image_dir: str | Path, *, train: bool = False, flip_prob: float = 0.5, seed: int = 0):
        self.ann_path, self.image_dir = Path(ann_path), Path(image_dir)
        self.coco: CocoIndex = load_coco_keypoints(self.ann_path, self.image_dir)
        ids = self.coco.image_ids
        self.image_ids = [i for i in ids if self.coco.people[i]] if train else ids
        self.train, self.flip_prob, self.seed, self.epoch = train, flip_prob, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.image_ids)

    def target(self, image_id: int) -> dict[str, torch.Tensor]:
        """The unflipped target of ``image_id`` (continuous coordinates)."""
        boxes, keypoints = [], []
        for ann in self.coco.people[image_id]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w < 1 or h < 1:
                continue
            boxes.append([x, y, x + w, y + h])
            kps = np.asarray(ann.get("keypoints", [0] * 3 * NUM_KEYPOINTS), dtype=np.float32).reshape(NUM_KEYPOINTS, 3)
            kps[:, :2] += np.where(kps[:, 2:] > 0, 0.5, 0.0)
            keypoints.append(kps)
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
            "keypoints": torch.from_numpy(np.stack(keypoints) if keypoints else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)),
            "image_id": torch.tensor(image_id),
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[index]
        image = torch.from_numpy(np.ascontiguousarray(self.coco.read_image(image_id))).permute(2, 0, 1).float() / 255.0
        target = self.target(image_id)
        if self.train and np.random.default_rng((self.seed, self.epoch, index)).random() < self.flip_prob:
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = target["boxes"]
            target["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], -1)
            kps = target["keypoints"][:, list(FLIP_INDEX)]
            kps[..., 0] = torch.where(kps[..., 2] > 0, width - kps[..., 0], kps[..., 0])
            target["keypoints"] = kps
        return image, target


def collate_detection(samples: list) -> tuple[list[torch.Tensor], list[dict]]:
    """Detection batches are lists: images may differ in size."""
    images, targets = zip(*samples)
    return list(images), list(targets)


def build_datasets(recipe: MSARCNNRecipe, seed: int = 0) -> tuple[DetectionDataset, DetectionDataset]:
    """Training set (flip augmentation, images with people) and validation set (every image) of the recipe."""
    train_ann, train_images = dataset_split(recipe.dataset, "train")
    val_ann, val_images = dataset_split(recipe.dataset, "val")
    return (
        DetectionDataset(train_ann, train_images, train=True, flip_prob=recipe.flip_prob, seed=seed),
        DetectionDataset(val_ann, val_images),
    )


# ---------------------------------------------------------------------------------------------------------------
# training


def detection_step(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Training step: the sum of torchvision's five losses (RPN objectness and box, classifier, box, keypoint)."""
    images, targets = batch
    losses = model(images, targets)
    return sum(losses.values()), {k: v.detach() for k, v in losses.items()}


@dataclass
class TrainedMSARCNN:
    """A trained (or cache-loaded) model with its recipe, run folder, engine result and validation set."""

    recipe: MSARCNNRecipe
    model: MSARCNN
    run_dir: Path
    result: TrainResult
    seed: int
    val_set: DetectionDataset

    @property
    def metrics_log(self) -> Path:
        return self.run_dir / "metrics.jsonl"


def build(recipe: MSARCNNRecipe) -> MSARCNN:
    """The recipe's untrained model, with its decoder."""
    model = build_msa_rcnn(recipe.config)
    # torchvision draws each training image's shorter side from min_size and tests at its last entry, so the
    # range's upper end (1.0 in every preset) is the test size, as in the paper (train 640..800, test 800)
    lo, hi = recipe.scale_range
    if (lo, hi) != (1.0, 1.0):
        sizes = sorted({int(round(recipe.config.min_size * f)) for f in np.linspace(lo, hi, 5)})
        model.transform.min_size = tuple(sizes)  # torchvision draws one per training image
    return model


def initial_model(recipe: MSARCNNRecipe, *, seed: int = 0, device: str = "auto",
                  progress: bool = True) -> tuple[MSARCNN, str | None]:
    """The untrained model of ``recipe`` for ``seed``, its ResNet copied from chapter 0.4's model when
    ``recipe.backbone_from`` names a preset, and that model's run folder name (None otherwise)."""
    torch.manual_seed(seed)  # the model's initial weights
    model = build(recipe)
    return model, pretraining.start_backbone(model.backbone.body, recipe.backbone_from, device=device, progress=progress)


def train(recipe: MSARCNNRecipe, *, seed: int = 0, device: str = "auto", progress: bool = True) -> TrainedMSARCNN:
    """Train ``recipe`` (or load it from the model cache when the same training setup and seed ran before).

    Recipes that differ only in test-time choices (``decoder``, ``tta_scales``) share one trained model.
    """
    device = str(resolve_device(device))
    model, source = initial_model(recipe, seed=seed, device=device, progress=progress)
    train_set, val_set = build_datasets(recipe, seed)
    key = {"recipe": recipe.training_key(), "seed": seed, "train_data_sha256": file_sha256(train_set.ann_path)}
    if source is not None:
        key["backbone_source"] = source
    folder = run_dir(recipe.name, key)
    # checkpoints every 50 steps unless the recipe says otherwise: an interrupted chapter resumes (a run-control
    # field, so it is not part of the cache key)
    config = TrainConfig(**{"checkpoint_every": 50, **recipe.train, "seed": seed, "device": device, "progress": progress})
    result = Trainer(config, folder).fit(model, train_set, detection_step, collate_fn=collate_detection)
    model = result.model
    model.set_decoder(recipe.decoder)
    return TrainedMSARCNN(recipe, model, folder, result, seed, val_set)


# ---------------------------------------------------------------------------------------------------------------
# prediction and evaluation


@torch.no_grad()
def predict(
    model: MSARCNN,
    dataset: DetectionDataset,
    *,
    decoder: str | None = None,
    tta_scales: tuple[float, ...] = (),
    device: str = "auto",
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Detections with keypoints on every image of ``dataset``.

    Returns arrays over the detections: ``image_ids (D,)``, ``boxes (D,4)`` COCO ``[x, y, w, h]``, ``scores (D,)``
    (the box head's person score, which also ranks the poses, as in Mask R-CNN), ``poses (D,17,3)`` in COCO
    pixel-centre coordinates with keypoint probabilities.
    """
    from tqdm import tqdm

    from poselib.progress import progress_disabled

    device_t = resolve_device(device)
    model = model.to(device_t).eval()
    if decoder is not None:
        model.set_decoder(decoder)
    out = {"image_ids": [], "boxes": [], "scores": [], "poses": []}
    indices = range(0, len(dataset), batch_size)
    for start in tqdm(indices, desc="predict", disable=progress_disabled(progress), leave=False):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = [image.to(device_t) for image, _ in samples]
        detections = detect_multiscale(model, images, tta_scales) if tta_scales else model(images)
        for (_, target), det in zip(samples, detections):
            boxes = det["boxes"].float().cpu()
            poses = torch.cat([det["keypoints"][..., :2].float().cpu() - 0.5, det["keypoints_scores"][..., None].float().cpu()], -1) \
                if "keypoints" in det else torch.zeros((len(boxes), NUM_KEYPOINTS, 3))
            out["image_ids"].append(np.full(len(boxes), int(target["image_id"])))
            out["boxes"].append(torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], -1).numpy())
            out["scores"].append(det["scores"].float().cpu().numpy())
            out["poses"].append(poses.numpy())
    if not out["boxes"]:
        return {"image_ids": np.zeros(0, int), "boxes": np.zeros((0, 4)), "scores": np.zeros(0), "poses": np.zeros((0, NUM_KEYPOINTS, 3))}
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_predictions(predictions: dict[str, np.ndarray], ann_path: str | Path, *, parts: int = 4) -> dict[str, dict[str, float]]:
    """COCO keypoint AP and person-box AP of :func:`predict`'s output: ``{"keypoints": {...}, "boxes": {...}}``.

    Each dictionary also holds ``AP_se``, the standard error of AP from the validation images: AP measured on
    ``parts`` disjoint subsets of the images (every ``parts``-th image id), their standard deviation over
    ``sqrt(parts)``. It is the spread of the *evaluation sample* only, not the seed-to-seed spread of training.
    """
    import json

    kp_results, box_results = [], []
    if len(predictions["scores"]):  # (an untrained model may detect nobody)
        kp_results = poses_to_coco_results(predictions["image_ids"], predictions["poses"], predictions["scores"])
        box_results = boxes_to_coco_results(predictions["image_ids"], predictions["boxes"], predictions["scores"])
    out = {"keypoints": evaluate_keypoints(str(ann_path), kp_results), "boxes": evaluate_boxes(str(ann_path), box_results)}
    image_ids = sorted(int(i["id"]) for i in json.loads(Path(ann_path).read_text())["images"])
    if parts >= 2 and len(image_ids) >= 2 * parts:
        for key, results, fn in (("keypoints", kp_results, evaluate_keypoints), ("boxes", box_results, evaluate_boxes)):
            aps = [fn(str(ann_path), results, image_ids=image_ids[i::parts])["AP"] for i in range(parts)]
            out[key]["AP_se"] = float(np.std(aps, ddof=1) / np.sqrt(parts))
    return out


def evaluate(
    model: MSARCNN,
    recipe: MSARCNNRecipe,
    dataset: DetectionDataset,
    *,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Keypoint and box AP of ``model`` on ``dataset`` with the recipe's decoder and test-time scales."""
    predictions = predict(model, dataset, decoder=recipe.decoder, tta_scales=recipe.tta_scales, device=device, progress=progress)
    return evaluate_predictions(predictions, dataset.ann_path)


# ---------------------------------------------------------------------------------------------------------------
# cost: parameters, training memory, time per image


def training_memory_mb(model: nn.Module, loss_fn, *, optimizer_slots: int = 1) -> dict[str, float]:
    """Memory of one training step of ``model``, MB, measured the same way on any device.

    ``loss_fn(model) -> loss`` runs the step's forward pass (for a detector: ``lambda m: sum(m(images,
    targets).values())``). ``activations``: the tensors autograd saves for the backward pass (each storage counted
    once), what grows with the batch and the heads' RoIs. ``weights``: parameters, the gradients of the trainable
    ones and ``optimizer_slots`` optimiser buffers each (1 for SGD with momentum, as in the paper). On CUDA,
    ``cuda_peak`` adds the allocator's peak. The model is left in eval mode with no gradients and its buffers
    (BatchNorm statistics) as they were.
    """
    device = next(model.parameters()).device
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    buffers = {name: b.clone() for name, b in model.named_buffers()}
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model)
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    out = {"activations": sum(seen.values()) / 2**20, "weights": (params + trainable * (1 + optimizer_slots)) / 2**20}
    out["total"] = out["activations"] + out["weights"]
    if device.type == "cuda":
        out["cuda_peak"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def detection_loss_fn(images: list[torch.Tensor], targets: list[dict]):
    """``loss_fn`` for :func:`training_memory_mb`: a detector's summed losses on ``images`` and ``targets`` (moved to
    the model's device; an ``image_id`` entry is ignored)."""

    def loss_fn(model: nn.Module) -> torch.Tensor:
        device = next(model.parameters()).device
        moved = [{k: v.to(device) for k, v in t.items() if k != "image_id"} for t in targets]
        return sum(model([i.to(device) for i in images], moved).values())

    return loss_fn


@torch.no_grad()
def seconds_per_image(fn, inputs: list, *, repeats: int = 3) -> float:
    """Median over ``repeats`` passes of the mean seconds ``fn(x)`` takes per element ``x`` of ``inputs``
    (after one warm-up call)."""
    fn(inputs[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for x in inputs:
            fn(x)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / len(inputs))
    return float(np.median(times))


def complexity(model: MSARCNN) -> dict[str, float]:
    """Parameters (millions) of the model, split into backbone + FPN + RPN, box branch and keypoint branch."""
    heads = model.roi_heads
    parts = {
        "backbone_rpn": count_params(model.backbone) + count_params(model.rpn),
        "box": count_params(heads.box_roi_pool) + count_params(heads.box_head) + count_params(heads.box_predictor),
        "keypoint": sum(count_params(m) for m in (heads.keypoint_roi_pool, heads.keypoint_head, heads.keypoint_predictor) if m is not None),
    }
    return {k: v / 1e6 for k, v in {**parts, "total": count_params(model)}.items()}


# ---------------------------------------------------------------------------------------------------------------
# presets and the paper's ladder


def _model_preset(preset: str) -> dict:
    """The model fields of the baseline at ``preset`` (the ladder switches are added by :func:`ladder`)."""
    if preset == "smoke":
        return dict(depth=18, width=16, frozen_bn=False, fpn_channels=32, min_size=128, max_size=128,
                    anchor_sizes=(16, 32, 64, 128, 256), rpn_pre_nms_train=300, rpn_post_nms_train=100,
                    rpn_pre_nms_test=200, rpn_post_nms_test=50, rpn_batch_size=128, box_batch_size=64,
                    box_representation=64, head_channels=32, head_convs=4, detections_per_img=20)
    if preset == "cpu":
        # A ResNet-18 with 16 base channels, 32-channel FPN and heads, SynthPose's 256-pixel images read at 160
        # pixels, 64 RoIs per image of which the keypoint head trains on at most 8 positives (its convolutions
        # per RoI are most of a step's work): one step on 4 images takes about a quarter second on two cores.
        return dict(depth=18, width=16, frozen_bn=False, fpn_channels=32, min_size=160, max_size=160,
                    anchor_sizes=(16, 32, 64, 128, 256), rpn_pre_nms_train=600, rpn_post_nms_train=300,
                    rpn_pre_nms_test=300, rpn_post_nms_test=100, rpn_batch_size=128, box_batch_size=64,
                    box_representation=128, head_channels=32, head_convs=8, detections_per_img=20,
                    keypoint_rois_per_image=8)
    if preset == "gpu":  # the paper's model from scratch at SynthPose-large's 384 pixels
        return dict(frozen_bn=False, min_size=384, max_size=384, anchor_sizes=(16, 32, 64, 128, 256))
    return dict(pretrained=True)  # coco: the paper's setting


def _backbone_from(preset: str) -> str | None:
    """Where the backbone starts: chapter 0.4's model at the small presets (whose narrow ResNet has no ImageNet
    weights), from scratch at ``gpu``, ImageNet at ``coco`` (``pretrained`` in the model fields)."""
    return preset if preset in ("smoke", "cpu") else None


def _train_preset(preset: str) -> dict:
    if preset == "smoke":
        return dict(epochs=1, batch_size=4, optimizer="adam", lr=1e-3, schedule="constant", num_workers=0, log_every=2,
                    grad_clip=10.0)
    if preset == "cpu":
        # 200 steps of 4 images (half a pass over the 1500 training images) per model: the part's budget
        return dict(epochs=1, max_steps=200, batch_size=4, optimizer="adam", lr=2e-3, schedule="warmup_linear",
                    warmup_steps=20, num_workers=0, log_every=10, grad_clip=10.0)
    if preset == "gpu":
        return dict(epochs=24, batch_size=8, optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=1e-4,
                    schedule="warmup_step", warmup_steps=500, milestones=(16, 22), gamma=0.1, num_workers=8,
                    log_every=50, amp=True, grad_clip=10.0)
    # coco: Detectron's s1x schedule for 2 GPUs x 2 images (the paper's linear scaling), as epochs of 57K images
    return dict(epochs=12, batch_size=4, optimizer="sgd", lr=0.005, momentum=0.9, weight_decay=1e-4,
                schedule="warmup_step", warmup_steps=1000, milestones=(9, 11), gamma=0.1, num_workers=8,
                log_every=50, grad_clip=10.0)


def recipe(preset: str = "cpu", step: str = "msroialign", **overrides) -> MSARCNNRecipe:
    """The recipe of rung ``step`` of the paper's ladder (see :data:`LADDER`) at ``preset``; keyword
    ``overrides`` replace recipe fields (``model`` and ``train`` dicts are merged)."""
    rungs = {r.key: r for r in ladder(preset)}
    if step == "concat":
        base = replace(rungs["msroialign"].recipe, model={**rungs["msroialign"].recipe.model, "ms_roialign": "concat"},
                       name=f"{METHOD}-concat")
    elif step not in rungs:
        raise ValueError(f"unknown step {step!r}; choose one of {', '.join([*rungs, 'concat'])}")
    else:
        base = rungs[step].recipe
    fields = {**base.__dict__, **overrides}
    for name in ("model", "train"):
        if name in overrides:
            fields[name] = {**getattr(base, name), **overrides[name]}
    return MSARCNNRecipe(**fields)


@dataclass(frozen=True)
class Rung:
    """One row of the paper's Table 1: ``key``, ``label``, the cumulative recipe, whether it is ``run`` at this
    preset (a rung that is not run still passes its switches on to the next one, except "longer" which is then
    left out), and whether it needs ``training`` (False: a test-time change of the previous model)."""

    key: str
    label: str
    recipe: MSARCNNRecipe
    run: bool
    training: bool


#: (key, label, what the rung changes) in the paper's order.
LADDER: tuple[tuple[str, str, str], ...] = (
    ("baseline", "Baseline (Mask R-CNN)", "torchvision Keypoint R-CNN"),
    ("p2", "+ only from P2", "keypoint RoIs from P2 only"),
    ("1x1", "+ 1x1 conv output", "deconvolution, then a 1x1 convolution"),
    ("mskpsnet", "+ MS-KpsNet", "the encoder-decoder keypoint head"),
    ("longer", "+ longer training", "1.44 times the schedule"),
    ("msroialign", "+ MS-RoIAlign", "all levels, summed, for both heads"),
    ("top2", "+ average of top-2s", "decoder (test time)"),
    ("tta", "+ test-time augmentation", "scales 0.75, 1, 1.25 (test time)"),
)

#: Rungs run at the small presets (the others are folded into the next trained rung, "longer" dropped): the
#: two-core budget of the ``cpu`` preset affords two trained models for the ladder (plus chapter 3.2's
#: concatenation variant).
SMALL_PRESET_RUNS: frozenset[str] = frozenset({"baseline", "msroialign", "top2", "tta"})


def ladder(preset: str = "cpu") -> list[Rung]:
    """The paper's Table 1 as cumulative recipes at ``preset``."""
    check_preset(preset)
    runs = SMALL_PRESET_RUNS if preset in ("smoke", "cpu") else frozenset(k for k, _, _ in LADDER)
    model = _model_preset(preset)
    train_fields = _train_preset(preset)
    decoder, scales = "argmax", ()
    rungs = []
    for key, label, _ in LADDER:
        training = key not in ("top2", "tta")
        if key == "p2":
            model = {**model, "keypoint_levels": "p2"}
        elif key == "1x1":
            model = {**model, "output": "deconv_1x1"}
        elif key == "mskpsnet":
            model = {**model, "keypoint_head": "mskpsnet"}
        elif key == "longer" and key in runs:
            train_fields = {**train_fields, "epochs": int(round(train_fields["epochs"] * 1.44)),
                            "milestones": tuple(int(round(m * 1.44)) for m in train_fields.get("milestones", ()))}
        elif key == "msroialign":
            model = {**model, "ms_roialign": "sum"}
        elif key == "top2":
            decoder = "top2"
        elif key == "tta":
            scales = (0.75, 1.0, 1.25)
        name = f"{METHOD}-{key}" if training else rungs[-1].recipe.name
        r = MSARCNNRecipe(name=name, dataset=PRESET_DATASET[preset], model=model, train=train_fields,
                          decoder=decoder, tta_scales=scales, backbone_from=_backbone_from(preset))
        rungs.append(Rung(key, label, r, key in runs, training))
    return rungs


# ---------------------------------------------------------------------------------------------------------------
# running rungs with cached evaluations (several chapters ask for the same numbers)


def evaluate_cached(trained: TrainedMSARCNN, recipe: MSARCNNRecipe | None = None, *, device: str = "auto",
                    progress: bool = True) -> dict[str, dict[str, float]]:
    """:func:`evaluate` of a trained model with ``recipe``'s test-time choices (default: its own), stored in its run
    folder keyed by decoder, scales and the validation file's hash, so that chapters share one evaluation."""
    recipe = recipe or trained.recipe
    if recipe.training_key() != trained.recipe.training_key():
        raise ValueError(f"recipe {recipe.name!r} was not trained as the model in {trained.run_dir}")
    key = {"decoder": recipe.decoder, "tta_scales": recipe.tta_scales, "val_sha256": file_sha256(trained.val_set.ann_path)}
    return stored_metrics(trained.run_dir, key,
                          lambda: evaluate(trained.model, recipe, trained.val_set, device=device, progress=progress))


def run_ladder(preset: str, *, seed: int = 0, device: str = "auto", progress: bool = True) -> list[dict]:
    """Train (or load) and evaluate every rung of :func:`ladder` that runs at ``preset``.

    Returns one row per rung: ``key``, ``label``, ``run``, and for the rungs that ran ``AP``, ``AP_se``, ``AP50``,
    ``AP75``, ``APm``, ``APl`` (keypoints), ``box_AP``, ``box_AP_se``, ``box_AP50``, ``box_AP75``, ``train_s`` (the training run's seconds)
    and ``run_dir``.
    """
    rows, trained = [], None
    for rung in ladder(preset):
        row = {"key": rung.key, "label": rung.label, "run": rung.run}
        if rung.run:
            if rung.training or trained is None:
                trained = train(rung.recipe, seed=seed, device=device, progress=progress)
            metrics = evaluate_cached(trained, rung.recipe, device=device, progress=progress)
            row.update({k: metrics["keypoints"].get(k, float("nan")) for k in ("AP", "AP_se", "AP50", "AP75", "APm", "APl")})
            row.update({f"box_{k}": metrics["boxes"].get(k, float("nan")) for k in ("AP", "AP_se", "AP50", "AP75")})
            row.update(train_s=trained.result.wall_time_s, run_dir=str(trained.run_dir))
        rows.append(row)
    return rows


#: The paper's Table 1 (COCO val2017, ResNet-50-FPN): keypoint AP, AP50, AP75 and person-box AP per rung.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "baseline": {"AP": 64.1, "AP50": 86.4, "AP75": 69.3, "box_AP": 52.7},
    "p2": {"AP": 64.4, "AP50": 86.4, "AP75": 69.9, "box_AP": 52.5},
    "1x1": {"AP": 64.7, "AP50": 86.3, "AP75": 70.4, "box_AP": 52.4},
    "mskpsnet": {"AP": 66.2, "AP50": 87.0, "AP75": 72.7, "box_AP": 52.6},
    "longer": {"AP": 66.5, "AP50": 87.5, "AP75": 72.5, "box_AP": 53.4},
    "msroialign": {"AP": 67.4, "AP50": 87.7, "AP75": 73.5, "box_AP": 54.8},
    "top2": {"AP": 67.6, "AP50": 87.7, "AP75": 73.7, "box_AP": 54.8},
    "tta": {"AP": 70.3, "AP50": 89.2, "AP75": 76.6, "box_AP": 56.4},
}

#: The paper's Table 2: MS-RoIAlign aggregation, keypoint AP, parameters (M), training memory (GB).
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "sum": {"AP": 67.6, "params_m": 76.3, "train_mem_gb": 10.8},
    "concat": {"AP": 67.6, "params_m": 137.2, "train_mem_gb": 14.4},
}

#: The paper's Table 4 (COCO val2017): keypoint AP, seconds per image, training memory (GB); CPN-50 as
#: detector + pose network.
PAPER_TABLE4: dict[str, dict[str, str | float]] = {
    "CPN-50 (detector + top-down)": {"AP": 67.3, "time_s": "0.10 + 0.21", "train_mem_gb": "7.9 + 10.5"},
    "Mask R-CNN": {"AP": 63.1, "time_s": 0.17, "train_mem_gb": 7.7},
    "Mask R-CNN+ (ResNeXt-101)": {"AP": 67.0, "time_s": 0.31, "train_mem_gb": 14.2},
    "MSA R-CNN": {"AP": 67.6, "time_s": 0.21, "train_mem_gb": 10.8},
}


def separate_pipeline(preset: str) -> tuple[MSARCNN, nn.Module, tuple[int, int]]:
    """The "separate models" alternative of the paper's Table 4 at ``preset``: a Faster R-CNN with the same
    backbone as the baseline (``keypoints=False``) and Part 0's top-down Simple Baselines model; returns
    ``(detector, pose_net, crop_size)``. Untrained: they are used for cost, not accuracy."""
    from poselib.methods import simple_baseline
    from poselib.models import build_model

    detector = build_msa_rcnn(MSARCNNConfig(**{**recipe(preset, "baseline").model, "keypoints": False}))
    pose = simple_baseline.recipe(preset)
    return detector, build_model(pose.model, load_pretrained=False, **pose.model_kwargs), pose.input_size


# ---------------------------------------------------------------------------------------------------------------
# command line (`poselib train --method msarcnn`, `poselib predict --method msarcnn`)


def train_summary(preset: str, overrides: dict, *, seed: int = 0, device: str = "auto",
                  progress: bool = True) -> TrainedSummary:
    """What ``poselib train --method msarcnn`` records: the full model (the ladder's MS-RoIAlign rung with top-2
    decoding) trained under ``preset`` and evaluated on the validation split, keypoints and boxes."""
    r = recipe(preset, "msroialign", decoder="top2", **overrides)
    trained = train(r, seed=seed, device=device, progress=progress)
    metrics = evaluate_cached(trained, device=device, progress=progress)
    flat = {**{f"kp_{k}": v for k, v in metrics["keypoints"].items()}, **{f"box_{k}": v for k, v in metrics["boxes"].items()}}
    return TrainedSummary(r, trained.run_dir, trained.val_set.ann_path, flat, trained.result.wall_time_s,
                          params_m=count_params(trained.model) / 1e6,
                          headline={"AP": metrics["keypoints"]["AP"], "box_AP": metrics["boxes"]["AP"]})


def load_trained(checkpoint: str | Path, *, decoder: str = "top2") -> tuple[MSARCNN, MSARCNNRecipe]:
    """Model and recipe from a run folder (or its ``final.pt`` / ``last.pt``) written by :func:`train`.

    The run folder holds what training depends on; the test-time ``decoder`` is chosen here (default: the paper's
    average of the top-2 cells)."""
    weights, config = trained_run(checkpoint)
    fields = dict(config["recipe"])
    fields["model"] = {**fields["model"], "pretrained": False}  # the checkpoint holds the weights
    r = MSARCNNRecipe(**fields, decoder=decoder)
    model = build(r)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=False)["model"])
    return model.eval(), r


def predict_command(args) -> int:
    """``poselib predict --method msarcnn --checkpoint RUN IMAGES...``: people and poses on any images (the
    model finds the boxes itself; ``--boxes`` is not used). Writes drawings and COCO keypoint results."""
    import cv2

    from poselib.evaluation.results import write_results
    from poselib.viz import draw_poses_cv2

    model, r = load_trained(args.checkpoint)
    device = resolve_device(args.device)
    model.to(device)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for image_id, path in enumerate(args.images, start=1):
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise SystemExit(f"{path}: missing or not a readable image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).to(device)
        with torch.no_grad():
            det = model([image])[0]
        keep = det["scores"] > 0.5
        poses = torch.cat([det["keypoints"][keep, :, :2] - 0.5, det["keypoints_scores"][keep, :, None]], -1).cpu().numpy()
        if len(poses):
            results += poses_to_coco_results(np.full(len(poses), image_id), poses, det["scores"][keep].cpu().numpy())
        drawn = draw_poses_cv2(rgb, poses, min_score=args.min_score, ground_truth=False)
        cv2.imwrite(str(args.out / f"{path.stem}_pose.png"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    write_results(args.out / "results.json", results)
    print(f"{len(results)} poses on {len(args.images)} images; drawings and results.json in {args.out}")
    return 0
