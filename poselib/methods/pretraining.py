"""Pretrained backbones for the small presets: chapter 0.4's model stands in for ImageNet.

MultiPoseNet (Part I), Mask R-CNN (Part III) and MSPN (Part IV) start their ResNets from ImageNet weights, as the
``coco`` preset does (MSPN copies them into every stage's downsampling path). The narrow ResNet-18 of the ``smoke``
and ``cpu`` presets (16 base channels) has no ImageNet weights, and training some would cost hours. Chapter 0.4's
Simple Baselines model has exactly that backbone and is trained on SynthPose person crops anyway, so its backbone
is where those parts start at the small presets (their recipes' ``backbone_from`` names the preset of chapter
0.4's model). Like ImageNet weights, it is one fixed start: chapter 0.4's model at seed 0 (:data:`SOURCE_SEED`),
whatever the seed of the model that starts from it, so a seed's spread is that of the fine-tuning. Measured at
``cpu`` when this was introduced: Mask R-CNN's keypoint AP rose from 0.014 to 0.083 and its box AP from 0.14 to
0.27 for the same 200 steps.

Part V does not use it: RSN trains from scratch in its report, and the ResNet it is compared with must start
alike. Hourglass networks (Part IV's comparison) have no ResNet to start, as in the MSPN paper.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from poselib.methods import simple_baseline, topdown
from poselib.paths import cache_root


#: the seed of chapter 0.4's model that every pretrained start copies
SOURCE_SEED = 0


@dataclass(frozen=True)
class BackboneWeights:
    """A backbone's ``state`` (parameters and batch-norm statistics) and ``source``, the run folder of the model it
    was taken from (its name is that model's cache key, so it identifies the weights)."""

    state: dict[str, torch.Tensor]
    source: str


def simple_baseline_backbone(preset: str, *, seed: int = 0, device: str = "auto", progress: bool = True) -> BackboneWeights:
    """The ResNet of chapter 0.4's Simple Baselines model at ``preset`` and ``seed``, trained first if the model
    cache does not hold it (at ``cpu`` about five minutes on two cores; the book's Part 0 has trained it by then).
    Kept for the process per model cache, so the chapters that build several models read the checkpoint once."""
    return _cached_backbone(preset, seed, str(cache_root()), device, progress)


@functools.lru_cache(maxsize=8)
def _cached_backbone(preset: str, seed: int, cache: str, device: str, progress: bool) -> BackboneWeights:
    trained = topdown.train(simple_baseline.recipe(preset), seed=seed, device=device, progress=progress)
    state = {name: value.detach().cpu().clone() for name, value in trained.model.backbone.state_dict().items()}
    return BackboneWeights(state, trained.run_dir.name)


def backbone_source(preset: str) -> str:
    """The run folder name of the weights :func:`start_backbone` copies at ``preset`` (chapter 0.4's model at seed
    :data:`SOURCE_SEED`), computed without training it."""
    return topdown.run_name(simple_baseline.recipe(preset), SOURCE_SEED)


def start_backbone(module: nn.Module, backbone_from: str | None, *, device: str = "auto",
                   progress: bool = True) -> str | None:
    """Copy chapter 0.4's backbone (seed :data:`SOURCE_SEED`) at preset ``backbone_from`` into ``module`` and return
    its source (the run folder name, for the cache key of the model trained from it); ``None`` leaves ``module`` as
    built and returns None. See :func:`load_backbone` for what ``module`` may be."""
    if backbone_from is None:
        return None
    weights = simple_baseline_backbone(backbone_from, seed=SOURCE_SEED, device=device, progress=progress)
    load_backbone(module, weights)
    return weights.source


def load_backbone(module: nn.Module, weights: BackboneWeights) -> None:
    """Copy ``weights`` into ``module``: a :class:`~poselib.models.backbones.ResNetFeatures` (or a module with its
    children), or a network with a ``load_resnet_backbone(state)`` method that places a ResNet's weights itself
    (MSPN's :class:`~poselib.models.mspn.MultiStageNetwork`). A different depth or width raises ``ValueError``
    naming the source."""
    loader = getattr(module, "load_resnet_backbone", None)
    try:
        if loader is not None:
            loader(weights.state)
        else:
            module.load_state_dict(weights.state)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"the backbone of {weights.source} does not fit this network (depth and width must match "
                         f"chapter 0.4's model): {error}") from error


__all__ = ["SOURCE_SEED", "BackboneWeights", "backbone_source", "load_backbone", "simple_baseline_backbone", "start_backbone"]
