"""RSN (Cai et al. 2019/2020) as a top-down method: MSPN's recipe with another down unit.

Targets (coarse-to-fine kernels), loss (coarse units x 1/4, OHKM on the finest), decoding and the training loop
are MSPN's (:mod:`poselib.methods.mspn`, :mod:`poselib.methods.topdown`); only the model differs, built by
:func:`poselib.models.rsn.rsn` (or :func:`~poselib.models.rsn.rsn_hourglass`). :func:`recipe` names a model of
either family, ``"rsn"`` or its ResNet counterpart ``"resnet"``, so that the two are trained identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from poselib.methods import mspn
from poselib.methods.topdown import CPU_SCHEDULE, TopDownRecipe
from poselib.models.rsn import BRANCH_RANGE
from poselib.presets import check_preset

METHOD = "rsn"

#: Model widths of the CPU presets: base width 16 (a quarter of the paper's), 32-channel upsample units.
SMALL_MODEL: dict = {"width": 16, "up_channels": 32}
#: Equal-width hourglass at CPU scale (Part IV's small hourglass).
SMALL_HOURGLASS: dict = {"width": 32, "stem_channels": 16}

#: The CPU preset's schedule: Part 0's (``topdown.CPU_SCHEDULE``; mmpose trains RSN-18 at an even higher 2e-2) for two
#: epochs, for the RSN-18 / ResNet-18 pair with two seeds each. Even so the part runs over its six-minute share on
#: two cores (the README's cost table; an RSN-18 step costs 2.2 to 2.6 ResNet-18 steps at these widths, see
#: ``poselib bench step rsn``). Models are far from converged. Against Adam at 5e-3, seed 0: RSN-18 0.178 against
#: 0.133 AP, ResNet-18 0.235 against 0.212.
CPU_TRAIN: dict = {**CPU_SCHEDULE, "epochs": 2}
SMOKE_TRAIN: dict = dict(epochs=1, batch_size=16, optimizer="adam", lr=2e-3, schedule="constant", num_workers=0,
                         log_every=2, max_steps=6)


def recipe(
    preset: str = "cpu",
    *,
    depth: int = 18,
    family: str = "rsn",
    branches: int = 4,
    num_stages: int = 1,
    refine: bool = False,
    fusion: bool = False,
    design: str = "report",
    hourglass: bool = False,
    **overrides,
) -> TopDownRecipe:
    """The recipe of one RSN (``family="rsn"``) or ResNet (``"resnet"``) model under ``preset``.

    ``depth`` 18/50/101, ``branches`` 2..6 (RSN only), ``num_stages``, ``refine``/``fusion`` (RB and FFB in the
    init stage), ``design`` (RSN-50/101 widths, see :mod:`poselib.models.rsn`), ``hourglass`` (the report's
    equal-width hourglass rows; ``depth`` is then unused). ``smoke`` and ``cpu`` use narrow models
    (:data:`SMALL_MODEL`) on 128x96 crops; ``gpu`` and ``coco`` the paper's widths at 256x192. Keyword
    ``overrides`` replace recipe fields (``train`` and ``model_kwargs`` are merged).
    """
    check_preset(preset)
    small = preset in ("smoke", "cpu")
    if hourglass:
        model = "rsn-hourglass"
        kwargs: dict = {"family": family, "num_stages": num_stages, **(SMALL_HOURGLASS if small else {})}
    else:
        model = "rsn"
        kwargs = {"depth": depth, "family": family, "num_stages": num_stages, **(SMALL_MODEL if small else {"width": 64, "up_channels": 256})}
        if refine or fusion:
            kwargs.update(refine=refine, fusion=fusion)
        if family == "rsn" and design != "report":
            kwargs["design"] = design
    if family == "rsn" and branches != 4:
        kwargs["branches"] = branches
    base = mspn.recipe(preset, num_stages=num_stages, model=model)
    fields = {**base.__dict__, "name": METHOD, "model": model, "model_kwargs": kwargs}
    if small:  # chapters evaluate once at the end (train_and_evaluate); per-epoch validation would add a minute
        fields["val_every_epoch"] = False
    if preset == "cpu":
        fields["train"] = dict(CPU_TRAIN)
    elif preset == "smoke":
        fields["train"] = dict(SMOKE_TRAIN)
    if small and family == "rsn":
        # At the small widths an RSN branch has 6 channels, and the CPU's channels-last batch norm is several times
        # slower than the contiguous one at so few channels. `poselib bench step rsn-18 --input 128x96 --kwargs
        # '{"width": 16, "up_channels": 32}'` (2 cores): 334 ms per step channels-last against 296 contiguous; the
        # `cpu` training of seed 0 took 105 s against 90. For `resnet-18` it goes the other way (140 against 188 ms),
        # so only the RSN family changes format; the computation is the same either way.
        fields["train"] = {**fields["train"], "channels_last": False}
    train = {**fields["train"], **overrides.pop("train", {})}
    model_kwargs = {**kwargs, **overrides.pop("model_kwargs", {})}
    return TopDownRecipe(**{**fields, **overrides, "train": train, "model_kwargs": model_kwargs})


# ---------------------------------------------------------------------------------------------------------------
# The report's numbers (Cai et al. 2019, COCO val2017 with MegDet boxes; "GFLOPs" at 256x192), typed in as the
# report's, for the tables that put ours beside them.

#: Table 2: RB and FFB on the 4-stage networks: name -> (AP, GFLOPs).
REPORT_TABLE2: dict[str, tuple[float, float]] = {
    "4xResNet-50": (76.8, 19.9), "4xResNet-50 + RB": (77.0, 22.0), "4xResNet-50 + FFB": (77.0, 21.8),
    "4xResNet-50 + RB + FFB": (77.2, 23.9), "4xRSN-50": (78.6, 26.5), "4xRSN-50 + RB": (78.8, 28.6),
    "4xRSN-50 + FFB": (78.8, 28.4), "4xRSN-50 + RB + FFB": (79.0, 30.5),
}
#: Table 3: branches -> (AP, GFLOPs) of RSN-50.
REPORT_TABLE3: dict[int, tuple[float, float]] = {2: (74.4, 6.9), 3: (74.5, 6.5), 4: (74.7, 6.3), 5: (74.3, 6.2), 6: (73.8, 5.7)}
#: Table 4 at 256x192: our registered model -> (the report's row, AP, GFLOPs).
REPORT_TABLE4: dict[str, tuple[str, float, float]] = {
    "resnet-18": ("ResNet-18", 70.7, 2.3), "rsn-18": ("RSN-18", 73.2, 2.5),
    "resnet-50": ("ResNet-50", 72.2, 4.4), "rsn-50": ("RSN-50", 74.7, 6.3),
    "resnet-hourglass-2stage": ("ResNet-hourglass-2stage", 72.3, 6.1),
    "rsn-hourglass-2stage": ("RSN-hourglass-2stage", 75.0, 9.3),
    "resnet-101": ("ResNet-101", 73.2, 7.5), "rsn-101": ("RSN-101", 75.8, 11.5),
    "4xresnet-50": ("4xResNet-50", 77.2, 23.9), "4xrsn-50": ("4xRSN-50", 79.0, 30.5),
}


def model_cost(name: str, input_size: tuple[int, int] = (256, 192), **kwargs) -> dict[str, float]:
    """GMACs and parameters (millions) of registered model ``name`` (built with ``kwargs``) at ``input_size``,
    counted on the meta device (:func:`poselib.engine.flops.count_macs_meta`): about a second even for the
    four-stage RSN-50."""
    from poselib.engine.flops import count_macs_meta
    from poselib.models import build_model

    return count_macs_meta(lambda: build_model(name, **kwargs), input_size)


def train_and_evaluate(recipe_: TopDownRecipe, *, seed: int = 0, device: str = "auto", progress: bool = True) -> dict:
    """Train ``recipe_`` (or load it from the model cache) and evaluate it on the validation split with
    ground-truth boxes (flip test, the recipe's decoding). The metrics are cached beside the trained model, so
    a chapter that asks again for the same model and seed neither trains nor evaluates it twice.

    Returns ``{"trained": TrainedTopDown, "metrics": {...}, "train_s": seconds of the original training}``.
    """
    from poselib.methods import topdown

    trained = topdown.train(recipe_, seed=seed, device=device, progress=progress)
    metrics = topdown.evaluate_trained(trained, device=device)
    return {"trained": trained, "metrics": metrics, "train_s": trained.result.wall_time_s}


# ---------------------------------------------------------------------------------------------------------------
# What Part V's chapters train under each preset (one place, so that the chapters share the cached models).


@dataclass(frozen=True)
class PartPlan:
    """The experiments of Part V under one preset.

    ``seeds``: seeds of the RSN-18 / ResNet-18 pair (the run-to-run spread every comparison is judged by);
    ``branches``: branch counts trained for Table 3 (4 is the RSN-18 of ``seeds[0]``); ``blocks``: train the
    RB / FFB variants (Table 2); ``depths``: depths trained for Table 4 (both families); ``hourglass``: train the
    hourglass pair; ``stages``: stages of the multi-stage pair trained (0: none).
    """

    seeds: tuple[int, ...]
    branches: tuple[int, ...]
    blocks: bool
    depths: tuple[int, ...]
    hourglass: bool
    stages: int


def part_plan(preset: str) -> PartPlan:
    """The :class:`PartPlan` of ``preset``. ``cpu`` pays for the RSN-18 / ResNet-18 pair with two seeds each and the
    paper-size cost counts, nothing more (the part already runs over its six-minute share on two cores);
    ``smoke`` runs every code path with a few training steps; ``gpu`` and ``coco`` train everything."""
    check_preset(preset)
    if preset == "smoke":
        return PartPlan(seeds=(0,), branches=(2, 4), blocks=True, depths=(18,), hourglass=False, stages=0)
    if preset == "cpu":
        return PartPlan(seeds=(0, 1), branches=(4,), blocks=False, depths=(18,), hourglass=False, stages=0)
    return PartPlan(seeds=(0, 1), branches=BRANCH_RANGE, blocks=True, depths=(18, 50, 101), hourglass=True, stages=4)
