"""MSPN (Li et al. 2019) as a top-down method: coarse-to-fine targets, multi-scale loss with OHKM, MSPN decoding.

Any :class:`~poselib.models.mspn.MultiStageNetwork` trains with :class:`MSPNTargets` and :func:`mspn_step`
(Part V's RSN reuses both unchanged). A recipe selects them through ``TopDownRecipe.targets``::

    {"kind": "mspn", "kernels": [[15, 11, 9, 7], [11, 9, 7, 5]], "sigma_scale": None,
     "coarse_weight": 0.25, "ohkm_topk": 8}

``kernels[s][j]`` is the Gaussian kernel size (in 64x48-map cells, as in the paper) of the target of stage ``s``,
unit ``j`` (0 coarsest .. 3 finest); 0 leaves that output unsupervised. :func:`kernel_schedule` builds the
paper's settings. With ``sigma_scale=None`` a target is MSPN's own: an impulse on the nearest cell blurred with
``cv2.GaussianBlur((k, k), 0)``, peak 1 (MSPN scales it to 255; with Adam only the weight decay sees the scale).
With a number, it is a Gaussian centred on the exact sub-cell position with sigma = OpenCV's sigma for ``k`` times
``sigma_scale``: for 32x24 maps (128x96 crops) ``sigma_scale=0.5`` keeps the paper's target width relative to
the person.

Loss (reference sheet 4.3): every coarser unit contributes ``coarse_weight`` x the MSE averaged over keypoints
and cells; the finest unit of every stage contributes the mean of the ``ohkm_topk`` largest per-keypoint MSEs of
each sample (online hard keypoint mining; ``ohkm_topk=0``: the plain mean). Keypoints that are unlabelled or
outside the crop have an all-zero target and weight 0 (mmpose's masking).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from poselib.codecs import heatmap
from poselib.engine.records import ArchiveLookup, file_sha256, find_archived
from poselib.losses import per_keypoint_mse
from poselib.methods import topdown
from poselib.methods.splits import dataset_split
from poselib.methods.topdown import CPU_SCHEDULE, TopDownRecipe
from poselib.presets import PRESET_DATASET, check_preset, resolve_device

METHOD = "mspn"

#: MSPN's kernel list, coarse to fine; sigma ~ 2.6, 2.0, 1.7, 1.4, 1.1 cells of a 64x48 map
KERNELS: tuple[int, ...] = (15, 11, 9, 7, 5)


def kernel_schedule(num_stages: int, setting: str | Sequence[int] = "ctf", units: int = 4) -> list[list[int]]:
    """Target kernel size per (stage, unit), ``[num_stages][units]``, unit 0 coarsest; 0 = unsupervised.

    ``setting``:
      - ``"ctf"``: the paper's coarse-to-fine supervision (the official code): non-final stages 15/11/9/7,
        the final stage 11/9/7/5.
      - a sequence of one kernel per stage: the kernel of each stage's *finest* unit, the coarser units taking
        the next larger kernels of :data:`KERNELS` (Table 7: settings 1, 2, 3 are ``(7, 7)``, ``(5, 5)``,
        ``(7, 5)``; ``(7, 5)`` equals ``"ctf"`` for two stages).
      - ``"base"``: no coarse-to-fine supervision (Table 6's BaseNet): only each stage's finest unit is
        supervised, with the final stage's kernel (5) everywhere.
    """
    if num_stages < 1:
        raise ValueError(f"num_stages must be at least 1, got {num_stages}")
    if setting == "ctf":
        finest = [KERNELS[-2]] * (num_stages - 1) + [KERNELS[-1]]
    elif setting == "base":
        return [[0] * (units - 1) + [KERNELS[-1]] for _ in range(num_stages)]
    elif isinstance(setting, str):
        raise ValueError(f"setting must be 'ctf', 'base' or one finest kernel per stage, got {setting!r}")
    else:
        finest = [int(k) for k in setting]
        if len(finest) != num_stages:
            raise ValueError(f"setting gives {len(finest)} kernels for {num_stages} stages")
    schedule = []
    for k in finest:
        if k not in KERNELS or KERNELS.index(k) < units - 1:
            raise ValueError(f"finest kernel {k} needs {units - 1} larger kernels in {KERNELS}")
        i = KERNELS.index(k)
        schedule.append(list(KERNELS[i - units + 1: i + 1]))
    return schedule


def target_sigmas(kernels: Sequence[Sequence[int]], sigma_scale: float) -> list[list[float]]:
    """The Gaussian sigma (cells) of each (stage, unit) target when ``sigma_scale`` is set (0 where unsupervised)."""
    return [[heatmap.gaussian_sigma_from_kernel(k) * sigma_scale if k else 0.0 for k in stage] for stage in kernels]


class MSPNTargets:
    """Dataset encoder adding MSPN's per-(stage, unit) targets to a top-down sample.

    Adds ``mspn_heatmaps (L, K, h, w)`` (one map set per distinct kernel, in order of first use),
    ``mspn_levels (S, U)`` (index into the L map sets, -1 unsupervised), ``target_weight (K,)``,
    ``mspn_coarse_weight`` and ``mspn_topk`` (loss settings, so that :func:`mspn_step` needs only the batch).
    """

    def __init__(
        self,
        input_size: tuple[int, int],
        stride: int,
        kernels: Sequence[Sequence[int]],
        sigma_scale: float | None = None,
        coarse_weight: float = 0.25,
        ohkm_topk: int = 8,
    ):
        self.heatmap_size = (input_size[0] // stride, input_size[1] // stride)
        self.stride = stride
        self.sigma_scale = sigma_scale
        self.coarse_weight = float(coarse_weight)
        self.ohkm_topk = int(ohkm_topk)
        distinct = sorted({int(k) for stage in kernels for k in stage if k}, reverse=True)
        if not distinct:
            raise ValueError("kernels supervise no output (all 0)")
        self.kernel_levels = distinct
        self.levels = torch.tensor([[distinct.index(int(k)) if k else -1 for k in stage] for stage in kernels])

    def encode(self, keypoints) -> tuple[torch.Tensor, torch.Tensor]:
        """``keypoints (N, K, 3)`` crop pixels -> ``(heatmaps (N, L, K, h, w), weights (N, K))``."""
        if self.sigma_scale is not None:  # all levels in one pass
            sigmas = [heatmap.gaussian_sigma_from_kernel(k) * self.sigma_scale for k in self.kernel_levels]
            return heatmap.encode_gaussian_levels(keypoints, self.heatmap_size, self.stride, sigmas)
        maps = []
        for k in self.kernel_levels:
            m, w = heatmap.encode_heatmaps(keypoints, self.heatmap_size, self.stride, kernel_size=k)
            maps.append(m)
        return torch.stack(maps, 1), w

    def __call__(self, sample: dict) -> dict:
        maps, weights = self.encode(sample["keypoints"][None])
        sample["mspn_heatmaps"], sample["target_weight"] = maps[0], weights[0]
        sample["mspn_levels"] = self.levels.clone()
        sample["mspn_coarse_weight"] = self.coarse_weight
        sample["mspn_topk"] = self.ohkm_topk
        return sample


def ohkm_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, topk: int = 8) -> torch.Tensor:
    """Online hard keypoint mining: per sample, the mean of the ``topk`` largest per-keypoint MSEs, averaged over
    the batch (``topk=0``: all keypoints). ``pred, target (B,K,h,w)``, ``weights (B,K)``; no 0.5 factor (MSPN)."""
    losses = per_keypoint_mse(pred, target, weights)
    if topk <= 0 or topk >= losses.shape[1]:
        return losses.mean()
    return losses.topk(topk, dim=1).values.mean()


def mspn_loss(
    outputs: Sequence[Sequence[torch.Tensor]],
    targets: torch.Tensor,
    levels: torch.Tensor,
    weights: torch.Tensor,
    coarse_weight: float = 0.25,
    topk: int = 8,
) -> tuple[torch.Tensor, dict[str, float]]:
    """MSPN's loss over all stages and units.

    Args:
        outputs: ``outputs[s][j]`` ``(B, K, h, w)``, unit ``j`` 0 coarsest .. last finest (a model's forward).
        targets: ``(B, L, K, h, w)``; ``levels (S, U)`` picks the target level of each output (-1: none).
        weights: ``(B, K)``.
    Returns ``(loss, logs)`` with ``logs["finest"]`` the last stage's finest-unit term.
    """
    if len(outputs) != levels.shape[0] or any(len(stage) != levels.shape[1] for stage in outputs):
        raise ValueError(f"model gives {[len(s) for s in outputs]} outputs per stage but targets are for {tuple(levels.shape)}")
    total = targets.new_zeros(())
    finest = 0.0
    for s, stage in enumerate(outputs):
        for j, pred in enumerate(stage):
            level = int(levels[s, j])
            if level < 0:
                continue
            target = targets[:, level]
            if j == len(stage) - 1:
                term = ohkm_loss(pred, target, weights, topk)
                if s == len(outputs) - 1:
                    finest = float(term.detach())
            else:
                term = coarse_weight * per_keypoint_mse(pred, target, weights).mean()
            total = total + term
    return total, {"finest": finest}


def mspn_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Training step of any multi-stage network on a batch encoded by :class:`MSPNTargets`."""
    outputs = model(batch["image"])
    levels = batch["mspn_levels"][0]
    coarse_weight = float(batch["mspn_coarse_weight"][0])
    topk = int(batch["mspn_topk"][0])
    return mspn_loss(outputs, batch["mspn_heatmaps"], levels, batch["target_weight"], coarse_weight, topk)


def mspn_targets(
    num_stages: int, setting: str | Sequence[int] = "ctf", *, sigma_scale: float | None = None,
    coarse_weight: float = 0.25, ohkm_topk: int = 8,
) -> dict:
    """The ``TopDownRecipe.targets`` entry for MSPN supervision (see the module docstring)."""
    return {"kind": "mspn", "kernels": kernel_schedule(num_stages, setting), "sigma_scale": sigma_scale,
            "coarse_weight": coarse_weight, "ohkm_topk": ohkm_topk}


# hooks looked up by poselib.methods.topdown through TopDownRecipe.targets["kind"] == "mspn"
def target_encoder(recipe: TopDownRecipe, stride: int) -> MSPNTargets:
    t = recipe.targets
    return MSPNTargets(recipe.input_size, stride, t["kernels"], t.get("sigma_scale"),
                       t.get("coarse_weight", 0.25), t.get("ohkm_topk", 8))


def step_fn(recipe: TopDownRecipe) -> Callable:
    return mspn_step


#: smoke/cpu presets (128x96 crops, 32x24 maps): OpenCV's sigma of each kernel times this. 0.5 would keep the paper's
#: target width relative to the person; 1.0 makes targets twice as wide, which gives a small network trained from
#: scratch for minutes more signal per keypoint (the ratios between stages and levels stay the paper's).
CPU_SIGMA_SCALE = 1.0


def recipe(preset: str = "cpu", *, num_stages: int = 1, setting: str | Sequence[int] = "ctf",
           model: str = "mspn", **overrides) -> TopDownRecipe:
    """The MSPN recipe for ``preset`` with ``num_stages`` stages and kernel ``setting`` (:func:`kernel_schedule`).

    ``model`` may be ``"hourglass"`` for the equal-width comparison. Keyword ``overrides`` replace recipe fields
    (``train`` and ``model_kwargs`` are merged).
    """
    check_preset(preset)
    dataset = PRESET_DATASET[preset]
    small = preset in ("smoke", "cpu")
    # MSPN's ResNet stages start from ImageNet weights (every stage's, reference sheet 4.1): at the small presets
    # from chapter 0.4's ResNet instead (poselib.methods.pretraining). Hourglass networks and other models that
    # reuse this recipe (RSN) start from scratch, as in their papers.
    backbone_from = preset if small and model == "mspn" else None
    if model == "hourglass":
        kwargs = {"width": 32, "stem_channels": 16, "up_channels": 32} if small else {}
    else:
        kwargs = {"depth": 18, "width": 16, "up_channels": 32} if small else {"depth": 50}
        if preset == "coco":
            kwargs["pretrained"] = True
    kwargs["num_stages"] = num_stages
    if preset == "smoke":
        base = TopDownRecipe(
            name=METHOD, model=model, dataset=dataset, input_size=(128, 96), model_kwargs=kwargs,
            augment={"rotation_prob": 0.0, "half_body_prob": 0.0, "scale_range": (0.8, 1.2), "scale_std": 0.2},
            train=dict(epochs=1, batch_size=16, optimizer="adam", lr=2e-3, schedule="constant", num_workers=0, log_every=2),
            blur_kernel=3, decoder="quarter_second_max",
            targets=mspn_targets(num_stages, setting, sigma_scale=CPU_SIGMA_SCALE), backbone_from=backbone_from,
        )
    elif preset == "cpu":
        base = TopDownRecipe(
            name=METHOD, model=model, dataset=dataset, input_size=(128, 96), model_kwargs=kwargs,
            augment={"rotation_prob": 0.0, "half_body_prob": 0.0, "scale_range": (0.8, 1.2), "scale_std": 0.2},
            # Part 0's schedule (CPU_SCHEDULE); its rate against 5e-3 from scratch, 3 epochs, one stage, seeds 0
            # and 1: AP 0.355 and 0.338 against 0.342 and 0.331, a tie. From chapter 0.4's ResNet, one stage, seeds
            # 0 and 1: 2 epochs 0.452 and 0.449 (69 s each), 3 epochs 0.469 and 0.471 (106 s): 2 keep Part IV
            # within the book's budget.
            train={**CPU_SCHEDULE, "epochs": 2},
            blur_kernel=3, decoder="quarter_second_max",
            targets=mspn_targets(num_stages, setting, sigma_scale=CPU_SIGMA_SCALE), backbone_from=backbone_from,
        )
    else:  # gpu and coco: the paper's setting at 256x192: Adam 5e-4 per 32 images, warm-up, linear decay to 0
        base = TopDownRecipe(
            name=METHOD, model=model, dataset=dataset, input_size=(256, 192), model_kwargs=kwargs,
            train=dict(epochs=140 if preset == "coco" else 40, batch_size=64, optimizer="adam", lr=1e-3,
                       weight_decay=1e-5, schedule="warmup_linear", warmup_steps=500, num_workers=8, log_every=50,
                       amp=True, channels_last=True),
            blur_kernel=5, decoder="quarter_second_max",
            targets=mspn_targets(num_stages, setting),
        )
    fields = {**base.__dict__, **overrides}
    if "train" in overrides:
        fields["train"] = {**base.train, **overrides["train"]}
    if "model_kwargs" in overrides:
        fields["model_kwargs"] = {**base.model_kwargs, **overrides["model_kwargs"]}
    return TopDownRecipe(**fields)


# ------------------------------------------------------------------------------------------ Part IV's experiments

#: name -> (recipe keywords, what it is). Tables 3, 6 and 7 of the paper and Table 2's single stages.
EXPERIMENTS: dict[str, tuple[dict, str]] = {
    "mspn-1stage": (dict(num_stages=1), "MSPN, 1 stage"),
    "mspn-2stage": (dict(num_stages=2), "MSPN, 2 stages (CTF + CSFA)"),
    "mspn-3stage": (dict(num_stages=3), "MSPN, 3 stages"),
    "mspn-4stage": (dict(num_stages=4), "MSPN, 4 stages"),
    "hourglass-1stage": (dict(model="hourglass", num_stages=1), "Hourglass, 1 stage"),
    "hourglass-2stage": (dict(model="hourglass", num_stages=2), "Hourglass, 2 stages"),
    "hourglass-4stage": (dict(model="hourglass", num_stages=4), "Hourglass, 4 stages (CTF + CSFA)"),
    "hourglass-8stage": (dict(model="hourglass", num_stages=8), "Hourglass, 8 stages"),
    "mspn-2stage-base": (dict(num_stages=2, setting="base", model_kwargs={"cross_stage": False}), "MSPN-2 BaseNet"),
    "mspn-2stage-ctf": (dict(num_stages=2, model_kwargs={"cross_stage": False}), "MSPN-2 BaseNet + CTF"),
    "hourglass-4stage-base": (dict(model="hourglass", num_stages=4, setting="base", model_kwargs={"cross_stage": False}),
                              "Hourglass-4 BaseNet"),
    "hourglass-4stage-ctf": (dict(model="hourglass", num_stages=4, model_kwargs={"cross_stage": False}),
                             "Hourglass-4 BaseNet + CTF"),
    "mspn-2stage-k77": (dict(num_stages=2, setting=(7, 7)), "MSPN-2, kernels 7 / 7 (Table 7, setting 1)"),
    "mspn-2stage-k55": (dict(num_stages=2, setting=(5, 5)), "MSPN-2, kernels 5 / 5 (Table 7, setting 2)"),
    # Table 2's depth ladder, every rung from scratch: chapter 0.4's ResNet-18 cannot start a deeper network
    "single-r18": (dict(num_stages=1, model_kwargs={"depth": 18}, backbone_from=None), "single stage, ResNet-18, from scratch"),
    "single-r50": (dict(num_stages=1, model_kwargs={"depth": 50}, backbone_from=None), "single stage, ResNet-50, from scratch"),
    "single-r101": (dict(num_stages=1, model_kwargs={"depth": 101}, backbone_from=None), "single stage, ResNet-101, from scratch"),
    "single-r152": (dict(num_stages=1, model_kwargs={"depth": 152}, backbone_from=None), "single stage, ResNet-152, from scratch"),
}

#: which experiments train in the book's build under each preset (the rest come from the archive where it holds a
#: current record, :func:`archived_experiment`, else show the paper's numbers only). The cpu preset
#: trains the models its chapters need most (with a second seed of the one stage for the spread, first asked for in
#: chapter 4.1): 4.3 to 4.7 minutes of training on 2 cores (measured), most of Part IV's six-minute share.
TRAINED_AT: dict[str, tuple[str, ...]] = {
    "smoke": ("mspn-1stage", "mspn-2stage", "mspn-2stage-ctf", "mspn-2stage-base", "mspn-2stage-k77", "hourglass-2stage"),
    "cpu": ("mspn-1stage", "mspn-2stage"),
    "gpu": tuple(EXPERIMENTS),
    "coco": tuple(EXPERIMENTS),
}

#: seeds of build-trained experiments that come from the archive instead (:func:`seed_spread`; experiments the build
#: does not train take every seed from it): under ``cpu`` the two-stage MSPN's second seed, so that the two-stage
#: ablations are judged by a two-stage spread too, without paying for a second two-stage training in every build.
ARCHIVED_SEEDS: dict[str, dict[str, tuple[int, ...]]] = {"cpu": {"mspn-2stage": (1,)}}


def trains_in_build(name: str, preset: str = "cpu", seed: int = 0) -> bool:
    """Whether the book's build trains experiment ``name`` at ``seed`` under ``preset`` (:data:`TRAINED_AT`, less
    the seeds :data:`ARCHIVED_SEEDS` lists); otherwise its AP comes from the archive."""
    return name in TRAINED_AT[preset] and seed not in ARCHIVED_SEEDS.get(preset, {}).get(name, ())


def experiment_recipe(name: str, preset: str = "cpu") -> TopDownRecipe:
    """The recipe of experiment ``name`` (a key of :data:`EXPERIMENTS`) under ``preset``."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown MSPN experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    kwargs = dict(EXPERIMENTS[name][0])
    if preset == "smoke" and name not in ("mspn-1stage", "mspn-2stage"):
        kwargs["train"] = {"max_steps": 2}  # the chapters' code paths, in seconds
        kwargs["val_every_epoch"] = False
    return recipe(preset, **kwargs)


def run_experiment(name: str, preset: str = "cpu", *, seed: int = 0, device: str = "auto", progress: bool = True) -> dict:
    """Train experiment ``name`` (or load it from the model cache), evaluate it (flip test, ground-truth boxes;
    cached in the run folder) and write its record ``results/<preset>/<name>-seed<seed>.json`` (``mspn-`` prefixed
    where ``name`` lacks it).

    Returns a row: ``name``, ``what``, ``AP``, ``AP50``, ``AP75``, ``params_m``, ``gmacs`` (at the recipe's input
    size), ``train_s`` and ``trained`` (the :class:`~poselib.methods.topdown.TrainedTopDown`).
    """
    from dataclasses import asdict

    from poselib.engine.records import dataset_info, write_record

    r = experiment_recipe(name, preset)
    trained = topdown.train(r, seed=seed, device=device, progress=progress)
    metrics = topdown.evaluate_trained(trained, device=device)
    cost = paper_size_complexity(r.model, r.input_size, **r.model_kwargs)
    write_record(
        record_name(name, seed), method=METHOD, config={"recipe": asdict(r), "seed": seed, "experiment": name},
        preset=preset, dataset=dataset_info(r.dataset, trained.val_set.ann_path), metrics=metrics,
        params_m=cost["params_m"], gmacs=cost["gmacs"], wall_time_s=trained.result.wall_time_s,
        device=str(resolve_device(device)),
        extra={"run_dir": str(trained.run_dir)},
    )
    return {"name": name, "what": EXPERIMENTS[name][1], "AP": metrics["AP"], "AP50": metrics.get("AP50"),
            "AP75": metrics.get("AP75"), "params_m": cost["params_m"], "gmacs": cost["gmacs"],
            "train_s": trained.result.wall_time_s, "trained": trained}


def record_name(name: str, seed: int = 0) -> str:
    """The record file stem of experiment ``name`` at ``seed``: ``mspn-`` prefixed where ``name`` lacks it."""
    return f"{name if name.startswith(METHOD) else f'{METHOD}-{name}'}-seed{seed}"


def archived_experiment(name: str, preset: str = "cpu", *, seed: int = 0) -> ArchiveLookup:
    """The committed record of experiment ``name`` at ``seed`` under ``preset``
    (:func:`poselib.engine.records.find_archived`), if it belongs to the model the current recipe, training data
    and starting weights would train; otherwise the lookup says why not. Needs the preset's data set."""
    r = experiment_recipe(name, preset)
    val_ann, _ = dataset_split(r.dataset, "val")
    return find_archived(record_name(name, seed), preset, run_name=topdown.run_name(r, seed),
                         val_sha256=file_sha256(val_ann))


def seed_spread(name: str, preset: str = "cpu", *, seeds: Sequence[int] = (0, 1), device: str = "auto",
                progress: bool = True) -> dict[int, float]:
    """AP of experiment ``name`` for each of ``seeds``: the run-to-run spread that :func:`beyond_spread` weighs a
    difference against. A seed the build trains (:func:`trains_in_build`) is trained (or loaded from the model
    cache) and recorded by :func:`run_experiment`; the others come from the archive (NaN without a current
    record)."""
    result = {}
    for seed in seeds:
        if not trains_in_build(name, preset, seed):
            record = archived_experiment(name, preset, seed=seed).record
            result[seed] = float("nan") if record is None else float(record["metrics"]["AP"])
        else:
            result[seed] = run_experiment(name, preset, seed=seed, device=device, progress=progress)["AP"]
    return result


def spread_points(names: Sequence[str], preset: str = "cpu", *, seeds: Sequence[int] = (0, 1), device: str = "auto",
                  progress: bool = True) -> float:
    """The largest range of AP over ``seeds`` among experiments ``names`` (:func:`seed_spread`), in AP points
    (percent): the tolerance the chapters' ablation tables use. NaN when no experiment has two measured seeds."""
    ranges = []
    for name in names:
        values = [v for v in seed_spread(name, preset, seeds=seeds, device=device, progress=progress).values()
                  if not np.isnan(v)]
        if len(values) > 1:
            ranges.append(100 * float(np.ptp(values)))
    return max(ranges) if ranges else float("nan")


def beyond_spread(difference: float, spread: float, factor: float = 2.0) -> bool:
    """Whether an AP ``difference`` exceeds ``factor`` times a two-seed ``spread`` (same units; False when the
    spread is NaN).

    The factor defaults to 2 because two seeds' range is a rough estimate of the scatter: on average it is about
    1.1 standard deviations of one run, while a difference between two single runs has a standard deviation of
    about 1.4 of them.
    """
    return bool(not np.isnan(spread) and abs(difference) > factor * spread)


def verdict(difference: float, spread: float, factor: float = 2.0) -> str:
    """``"a gain"``, ``"a loss"`` or ``"a tie"`` for an AP ``difference`` judged by :func:`beyond_spread`;
    ``"not measured"`` when the difference is NaN."""
    if np.isnan(difference):
        return "not measured"
    if not beyond_spread(difference, spread, factor):
        return "a tie"
    return "a gain" if difference > 0 else "a loss"


def ablation_steps(table, steps: Sequence[tuple[str, str, str]], spread: float, factor: float = 2.0):
    """The steps of an ablation table, one row per ``(from, to, label)`` of experiments in ``table`` (an
    :func:`experiment_table`, AP in percent): ``paper change`` and ``our change`` (AP points), the two-seed
    ``spread`` (points) they are judged against, ``our verdict`` (:func:`verdict`) and ``direction``: ``"agrees"`` when ours is beyond
    the spread in the paper's direction, ``"opposite"`` when beyond it against the paper, ``"tie"`` within it,
    ``"not measured"`` without our AP, ``"no paper figure"`` when the paper gives no AP for a side."""
    import pandas as pd

    rows = []
    for start, end, label in steps:
        paper = float(table.loc[end, "paper AP"] - table.loc[start, "paper AP"])
        ours = float(table.loc[end, "our AP"] - table.loc[start, "our AP"])
        said = verdict(ours, spread, factor)
        if said in ("not measured", "a tie"):
            direction = "not measured" if said == "not measured" else "tie"
        elif np.isnan(paper):
            direction = "no paper figure"
        else:
            direction = "agrees" if np.sign(ours) == np.sign(paper) else "opposite"
        rows.append({"step": label, "from": start, "to": end, "paper change": paper, "our change": ours,
                     "spread": spread, "our verdict": said, "direction": direction})
    return pd.DataFrame(rows).set_index("step")


def paper_size_complexity(model: str, input_size: tuple[int, int] = (256, 192), **model_kwargs) -> dict[str, float]:
    """Parameters (M) and GMACs of registered ``model`` at ``input_size`` (256x192: the paper's), counted on the
    meta device (:func:`poselib.engine.flops.count_macs_meta`): a 4-stage network at full size takes about a
    second instead of most of a minute on a CPU."""
    from poselib.engine.flops import count_macs_meta
    from poselib.models import build_model

    return count_macs_meta(lambda: build_model(model, load_pretrained=False, **model_kwargs), input_size)


#: the paper's numbers (Li et al. 2019, COCO minival, 256x192): "FLOPs (G)" as printed and AP in percent.
#: Tables 2 and 3 give FLOPs; Tables 6 and 7 only AP.
PAPER: dict[str, dict[str, float]] = {
    "mspn-1stage": {"gflops": 4.4, "AP": 71.5},
    "mspn-2stage": {"gflops": 9.6, "AP": 74.5},
    "mspn-3stage": {"gflops": 14.7, "AP": 75.2},
    "mspn-4stage": {"gflops": 19.9, "AP": 75.9},
    "hourglass-1stage": {"gflops": 3.9, "AP": 65.4},
    "hourglass-2stage": {"gflops": 6.2, "AP": 70.9},
    "hourglass-4stage": {"gflops": 10.6, "AP": 73.0},  # Table 3 lists 71.3 without CTF and CSFA; Table 6: 73.0 with both
    "hourglass-8stage": {"gflops": 19.5, "AP": 71.6},
    "mspn-2stage-base": {"AP": 73.3},
    "mspn-2stage-ctf": {"AP": 74.2},
    "hourglass-4stage-base": {"AP": 71.3},
    "hourglass-4stage-ctf": {"AP": 72.5},
    "mspn-2stage-k77": {"AP": 74.2},
    "mspn-2stage-k55": {"AP": 74.0},
    "single-r50": {"gflops": 4.4, "AP": 71.5},
    "single-r101": {"gflops": 7.5, "AP": 73.1},
    "single-r152": {"gflops": 11.2, "AP": 73.6},
}


def experiment_table(names: Sequence[str], preset: str = "cpu", *, seed: int = 0, device: str = "auto",
                     progress: bool = True):
    """A DataFrame, one row per experiment: the paper's FLOPs and AP beside our GMACs of the paper-size model
    (256x192, :func:`paper_size_complexity`), our model's GMACs at the preset's size, and our AP (in percent,
    flip test, ground-truth boxes) with its ``source``: ``"this build"`` where the build trains it
    (:func:`trains_in_build`); else the committed record of the same model trained outside the build
    (:func:`archived_experiment`; ``"archive: <date>, commit <sha>"``); else NaN and why."""
    import math

    import pandas as pd

    rows = []
    for name in names:
        paper_recipe = experiment_recipe(name, "gpu")
        big = paper_size_complexity(paper_recipe.model, paper_recipe.input_size, **paper_recipe.model_kwargs)
        row = {"experiment": name, "what": EXPERIMENTS[name][1],
               "paper GFLOPs": PAPER.get(name, {}).get("gflops", math.nan), "our GMACs (256x192)": big["gmacs"],
               "params (M, 256x192)": big["params_m"], "paper AP": PAPER.get(name, {}).get("AP", math.nan)}
        if trains_in_build(name, preset, seed):
            result = run_experiment(name, preset, seed=seed, device=device, progress=progress)
            row.update({"our AP": 100 * result["AP"], f"our GMACs ({preset})": result["gmacs"],
                        "train (min)": result["train_s"] / 60, "source": "this build"})
        elif (found := archived_experiment(name, preset, seed=seed)).record is not None:
            record = found.record
            row.update({"our AP": 100 * record["metrics"]["AP"], f"our GMACs ({preset})": record["gmacs"],
                        "train (min)": record["wall_time_s"] / 60,
                        "source": f"archive: {record['created_utc'][:10]}, commit {record['git']['commit'][:7]}"})
        else:
            row.update({"our AP": math.nan, f"our GMACs ({preset})": math.nan, "train (min)": math.nan,
                        "source": f"not trained under {preset!r} ({found.problem})"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")


def heatmap_spread(heatmaps: torch.Tensor) -> torch.Tensor:
    """How wide each map's mass is around its peak, in cells: ``(N, K, h, w) -> (N, K)``.

    The square root of the mean squared distance to the argmax, weighted by the map's positive part (0 for an
    empty map). A Gaussian of sigma ``s`` gives about ``s * sqrt(2)``; a sharper, more confident map gives less.
    """
    n, k, h, w = heatmaps.shape
    positive = heatmaps.float().clamp_min(0).reshape(n, k, -1)
    index = positive.argmax(-1)
    ys = torch.arange(h, dtype=torch.float32).repeat_interleave(w)
    xs = torch.arange(w, dtype=torch.float32).repeat(h)
    d2 = (xs - (index % w).unsqueeze(-1).float()) ** 2 + (ys - (index // w).unsqueeze(-1).float()) ** 2
    mass = positive.sum(-1)
    return torch.where(mass > 0, ((positive * d2).sum(-1) / mass.clamp_min(1e-12)).sqrt(), torch.zeros_like(mass))
