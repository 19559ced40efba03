"""Hourglass single-stage module with equal widths (Newell et al. 2016), for MSPN's comparisons (Tables 1, 3, 6).

MSPN's Table 1 contrasts the two single-stage modules by their channels per scale: an hourglass keeps the same
width (256) at every scale on the way down and up, MSPN's ResNet down path doubles it at each downsampling
(256, 512, 1024, 2048) while its up path stays at 256. To compare exactly that, our hourglass is a
:class:`~poselib.models.mspn.DownUnit` of Newell's residual modules (1x1 to width/2, 3x3, 1x1 back to width), all
``width`` wide, with a 2x2 max-pool before each coarser scale, plugged into the same
:class:`~poselib.models.mspn.MultiStageNetwork` (stem, upsample unit, predictions, cross-stage wiring) as MSPN.
It is therefore not Newell's network line for line (Newell's up path has residual modules on the skip branches
and its stem is heavier); the number of residual modules per scale, ``blocks=2``, makes each added stage cost about what
the paper's Table 3 lists per added hourglass stage (see Part IV's notebooks for the measured GMACs).
"""

from __future__ import annotations

import torch
from torch import nn

from poselib.keypoints import NUM_KEYPOINTS
from poselib.models.mspn import DownUnit, MultiStageNetwork
from poselib.models.registry import register_model


class Residual(nn.Module):
    """Newell's bottleneck residual module, post-activation: ``(B, C_in, h, w) -> (B, C_out, h, w)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = max(out_channels // 2, 1)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = (
            nn.Identity() if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def hourglass_down_unit(width: int = 256, blocks: int = 2, in_channels: int = 64) -> DownUnit:
    """An equal-width down path: ``blocks`` residual modules per scale, all ``width`` channels, max-pooling
    between scales. ``channels == (width,) * 4``."""
    if width < 2 or blocks < 1:
        raise ValueError(f"need width >= 2 and blocks >= 1, got width={width}, blocks={blocks}")
    layers = []
    for i in range(4):
        modules: list[nn.Module] = [] if i == 0 else [nn.MaxPool2d(2, stride=2)]
        modules += [Residual(in_channels if (i == 0 and b == 0) else width, width) for b in range(blocks)]
        layers.append(nn.Sequential(*modules))
    unit = DownUnit(layers, (width,) * 4, in_channels)
    for module in unit.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return unit


def hourglass(
    num_stages: int,
    *,
    width: int = 256,
    blocks: int = 2,
    stem_channels: int = 64,
    num_keypoints: int = NUM_KEYPOINTS,
    up_channels: int | None = None,
    cross_stage: bool = True,
) -> MultiStageNetwork:
    """Stacked equal-width hourglass modules in MSPN's framework; ``up_channels`` defaults to ``width`` (equal
    widths on the way up too)."""
    return MultiStageNetwork(
        lambda: hourglass_down_unit(width, blocks, stem_channels),
        num_stages,
        num_keypoints=num_keypoints,
        up_channels=width if up_channels is None else up_channels,
        stem_channels=stem_channels,
        cross_stage=cross_stage,
    )


def _register(num_stages: int) -> None:
    @register_model(
        f"hourglass-{num_stages}stage", input_size=(256, 192),
        description=f"{num_stages} equal-width (256) hourglass module(s) in MSPN's multi-stage framework",
    )
    def build(**kwargs) -> MultiStageNetwork:
        return hourglass(num_stages, **kwargs)


for _stages in (1, 2, 4, 8):
    _register(_stages)


@register_model("hourglass", input_size=(256, 192), description="equal-width hourglass, any number of stages (num_stages=)")
def _build_any(num_stages: int = 1, **kwargs) -> MultiStageNetwork:
    return hourglass(num_stages, **kwargs)
