"""RSN, Res-Steps-Net (Cai et al., COCO 2019 technical report; ECCV 2020): a ResNet whose bottleneck fuses
features of several receptive fields, plugged into MSPN's multi-stage framework as its down unit.

The Residual Steps Block (:class:`ResidualStepsBlock`, report eq. 1) splits a 1x1 convolution's output into
``branches`` groups; branch ``i`` runs ``i`` 3x3 convolutions and adds, before each of its steps, the output of the
previous branch at the same depth. The branches' last outputs are concatenated, fused by a 1x1 convolution and
added to the identity. Table 1's receptive fields follow from this wiring (see :mod:`poselib.models.receptive_field`).

Widths (the report's RSN-50 and RSN-101): the report's costs (Table 4) only fit a bottleneck with ResNet-50's
layout and widths (expansion 4, 256..2048 output channels) whose branch width is derived from the bottleneck's
base width ``planes`` (64..512) as ``floor(planes * 26 / 64)``, as in Res2Net. RSN-18 uses expansion 1 with the
branch width derived from the block's *input* channels, as the released RSN-18 code does. mmpose's RSN-50
(expansion 1, 64..512 channels) stays available as ``design="mmpose"``; the formula of the released RSN-50 file
(expansion 4 with the width from the input channels) as ``design="released"``. The book's Part V explains the choice.

The init stage's Refine Block (:class:`RefineBlock`) and Feature Fusion Block (:class:`FeatureFusionBlock`,
report eq. 3) act on the init stage's up-path outputs (:class:`RefinedUpsampleUnit`, switched by :func:`rsn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from poselib.keypoints import NUM_KEYPOINTS
from poselib.models import hourglass as hourglass_models
from poselib.models import mspn as mspn_models
from poselib.models.mspn import DownUnit, MultiStageNetwork, UpsampleUnit
from poselib.models.registry import register_model

#: Residual blocks per layer (layer1..layer4) for each depth.
RSN_LAYERS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: Branch counts studied in the report's Table 3.
BRANCH_RANGE: tuple[int, ...] = (2, 3, 4, 5, 6)
#: ``b = floor(reference_channels * STEPS_BASE_WIDTH / 64)`` channels per branch at four branches.
STEPS_BASE_WIDTH = 26
DESIGNS: tuple[str, ...] = ("report", "mmpose", "released")


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """``kernel_size`` x ``kernel_size`` convolution (same padding, no bias) + BN (+ ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def branch_channels(reference_channels: int, branches: int = 4) -> int:
    """Channels of each branch: the four-branch width ``4 * floor(ref * 26 / 64)`` shared among ``branches``.

    The 1x1 convolution's output width stays that of the four-branch design whatever the branch count, so more
    branches means narrower ones: this is what makes the cost *fall* with the branch count as in Table 3.
    """
    if branches not in BRANCH_RANGE:
        raise ValueError(f"branches={branches}: the report studies {BRANCH_RANGE[0]} to {BRANCH_RANGE[-1]}")
    width = 4 * (reference_channels * STEPS_BASE_WIDTH // 64)
    if width // branches < 1:
        raise ValueError(f"{reference_channels} reference channels give no channel per branch at {branches} branches")
    return width // branches


class ResidualStepsBlock(nn.Module):
    """The RSN bottleneck (report eq. 1): ``(N, in, H, W) -> (N, out, H/stride, W/stride)``.

    1x1 conv (stride here, as in the released code) + BN + ReLU to ``branches * width`` channels, split into
    ``f_1..f_n``; ``y_(i,0) = f_i``, ``y_(i,j) = K_(i,j)(y_(i,j-1) + y_(i-1,j))`` for ``j < i`` and
    ``K_(i,i)(y_(i,i-1))`` for ``j = i`` (each ``K`` a 3x3 conv + BN + ReLU); ``concat(y_(1,1), ..., y_(n,n))``,
    1x1 conv + BN, plus the shortcut (1x1 conv + BN when the shape changes), ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, width: int, branches: int = 4):
        super().__init__()
        if branches < 1 or width < 1:
            raise ValueError(f"branches={branches} and width={width} must be positive")
        self.branches, self.width = branches, width
        self.conv_in = conv_bn(in_channels, branches * width, 1, stride)
        # steps[i][j] is K_(i+1, j+1): branch i+1 has i+1 steps
        self.steps = nn.ModuleList(nn.ModuleList(conv_bn(width, width, 3) for _ in range(i + 1)) for i in range(branches))
        self.conv_out = conv_bn(branches * width, out_channels, 1, relu=False)
        self.shortcut = (
            conv_bn(in_channels, out_channels, 1, stride, relu=False)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def branch_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[y_(1,1), y_(2,2), ..., y_(n,n)]``, each ``(N, width, H/stride, W/stride)``."""
        splits = torch.split(self.conv_in(x), self.width, dim=1)
        previous: list[torch.Tensor] = []  # y_(i-1, 1..i-1)
        outputs = []
        for i, branch in enumerate(self.steps):
            current = []
            y = splits[i]
            for j, step in enumerate(branch):
                if j < len(previous):  # j < i in the report's 1-based terms
                    y = y + previous[j]
                y = step(y)
                current.append(y)
            previous = current
            outputs.append(current[-1])
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.conv_out(torch.cat(self.branch_outputs(x), dim=1))
        return self.relu(fused + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck as in the released code: 1x1 + 3x3 (stride here) + 1x1 to ``planes * expansion``, each
    with BN (ReLU but on the last), plus the shortcut, ReLU. With ``expansion=1`` it is the baseline block of the
    report's ResNet-18 (the released ``Res18.coco``), whose only difference from RSN-18 is the bottleneck."""

    def __init__(self, in_channels: int, planes: int, stride: int = 1, *, expansion: int = 1):
        super().__init__()
        out_channels = planes * expansion
        self.body = nn.Sequential(
            conv_bn(in_channels, planes, 1), conv_bn(planes, planes, 3, stride), conv_bn(planes, out_channels, 1, relu=False)
        )
        self.shortcut = (
            conv_bn(in_channels, out_channels, 1, stride, relu=False)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


@dataclass(frozen=True)
class StepsDesign:
    """How an RSN of some depth sets its widths: ``expansion`` (output = planes * expansion) and whether the
    branch width derives from the block's input channels (``"input"``) or its base width planes (``"planes"``)."""

    expansion: int
    width_from: str


def steps_design(depth: int, design: str = "report") -> StepsDesign:
    """The width rule of RSN-``depth`` under ``design`` (see the module docstring)."""
    if design not in DESIGNS:
        raise ValueError(f"design {design!r} is not one of {DESIGNS}")
    if depth not in RSN_LAYERS:
        raise ValueError(f"RSN depth must be one of {tuple(RSN_LAYERS)}, got {depth}")
    if depth < 50 or design == "mmpose":
        return StepsDesign(1, "input")
    return StepsDesign(4, "planes" if design == "report" else "input")


def make_layers(
    block: Callable[[int, int, int, int], nn.Module], blocks: tuple[int, ...], width: int, stem_channels: int, expansion: int
) -> tuple[list[nn.Sequential], tuple[int, ...]]:
    """Four ResNet layers of ``block(in_channels, planes, stride, index_in_layer)``: layer ``i`` has ``blocks[i]``
    blocks of base width ``width * 2**i``, output ``planes * expansion`` channels, stride 2 on its first block
    for ``i > 0``. Returns the layers and their output channels."""
    layers, channels = [], []
    in_channels = stem_channels
    for i, count in enumerate(blocks):
        planes = width * 2**i
        modules = []
        for k in range(count):
            modules.append(block(in_channels, planes, 2 if (i > 0 and k == 0) else 1, k))
            in_channels = planes * expansion
        layers.append(nn.Sequential(*modules))
        channels.append(in_channels)
    return layers, tuple(channels)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan out) convolutions, unit BN, as the released code initialises its down units."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rsn_layers(
    depth: int = 18, *, branches: int = 4, width: int = 64, stem_channels: int | None = None, design: str = "report"
) -> tuple[list[nn.Sequential], tuple[int, ...]]:
    """RSN-``depth``'s four layers of :class:`ResidualStepsBlock` and their output channels.

    ``width`` is the base width of layer1 (64 in the paper; smaller for the CPU presets); ``stem_channels`` (the
    input of layer1) defaults to ``width``.
    """
    rule = steps_design(depth, design)
    stem_channels = width if stem_channels is None else stem_channels

    def block(in_channels: int, planes: int, stride: int, index: int) -> nn.Module:
        reference = in_channels if rule.width_from == "input" else planes
        return ResidualStepsBlock(
            in_channels, planes * rule.expansion, stride, width=branch_channels(reference, branches), branches=branches
        )

    layers, channels = make_layers(block, RSN_LAYERS[depth], width, stem_channels, rule.expansion)
    return layers, channels


def bottleneck_layers(depth: int = 18, *, width: int = 64, stem_channels: int | None = None) -> tuple[list[nn.Sequential], tuple[int, ...]]:
    """The report's ResNet baseline layers: :class:`Bottleneck` with expansion 1 for 18 layers (released
    ``Res18.coco``), expansion 4 for 50 and 101 (ResNet-50/101 as in MSPN)."""
    if depth not in RSN_LAYERS:
        raise ValueError(f"depth must be one of {tuple(RSN_LAYERS)}, got {depth}")
    expansion = 1 if depth < 50 else 4
    stem_channels = width if stem_channels is None else stem_channels

    def block(in_channels: int, planes: int, stride: int, index: int) -> nn.Module:
        return Bottleneck(in_channels, planes, stride, expansion=expansion)

    return make_layers(block, RSN_LAYERS[depth], width, stem_channels, expansion)


class RefineBlock(nn.Module):
    """Refine Block (report section 2.4, Fig. 2c): ``x + K2(K1(x))`` with two 3x3 conv + BN (ReLU after the
    first), then ReLU, as in a ResNet basic block. Shape-preserving ``(N, C, H, W) -> (N, C, H, W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels, 3), conv_bn(channels, channels, 3, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.body(x))


class FeatureFusionBlock(nn.Module):
    """Feature Fusion Block (report eq. 3, Fig. 2d): ``f_out = K(f_in) + K(f_in) * alpha`` where ``K`` is a 3x3
    conv + BN + ReLU and ``alpha (N, C, 1, 1) = sigmoid(1x1(ReLU(1x1(global_pool(K(f_in))))))``.

    The report's top path starts after ``K`` ("the first component of the block is a conv3x3, then the block is
    divided into three paths"); the hidden width of the two 1x1 convolutions is ``channels // reduction``.
    Shape-preserving. ``last_weights`` keeps the most recent ``alpha`` (detached) for figures.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.conv = conv_bn(channels, channels, 3)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )
        self.last_weights: torch.Tensor | None = None

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """``alpha (N, C)`` for input ``x``."""
        return self.attention(self.conv(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        alpha = self.attention(features)
        self.last_weights = alpha.detach().flatten(1)
        return features + features * alpha


# ---------------------------------------------------------------------------------------------------------------
# Down units and networks (MSPN's framework, poselib.models.mspn)


def rsn_down_unit(
    depth: int = 50, branches: int = 4, width: int = 64, *, in_channels: int | None = None, design: str = "report"
) -> DownUnit:
    """RSN-``depth`` layer1..layer4 as an MSPN :class:`~poselib.models.mspn.DownUnit`.

    ``branches`` 2..6 (Table 3), ``width`` the base width of layer1 (64: the paper's network), ``in_channels`` the
    width of the stride-4 input (default ``width``), ``design`` the width rule (``"report"``, ``"mmpose"``,
    ``"released"``; see the module docstring).
    """
    layers, channels = rsn_layers(depth, branches=branches, width=width, stem_channels=in_channels, design=design)
    unit = DownUnit(layers, channels, width if in_channels is None else in_channels)
    init_weights(unit)
    return unit


def baseline_down_unit(depth: int = 50, width: int = 64, *, in_channels: int | None = None) -> DownUnit:
    """The report's ResNet baseline of the same depth as a :class:`~poselib.models.mspn.DownUnit`.

    50 and 101 layers: MSPN's ResNet down unit (torchvision bottlenecks). 18 layers: the released ``Res18.coco``
    baseline, whose blocks are 1x1-3x3-1x1 bottlenecks of expansion 1 (:class:`Bottleneck`), not torchvision's
    basic blocks: with them RSN-18 and ResNet-18 differ only in the bottleneck, as the report requires, and the
    cost ratio matches Table 4 (basic blocks would make ResNet-18 dearer than RSN-18).
    """
    if depth >= 50:
        return mspn_models.resnet_down_unit(depth, width, in_channels)
    layers, channels = bottleneck_layers(depth, width=width, stem_channels=in_channels)
    unit = DownUnit(layers, channels, width if in_channels is None else in_channels)
    init_weights(unit)
    return unit


class RefinedUpsampleUnit(UpsampleUnit):
    """MSPN's :class:`~poselib.models.mspn.UpsampleUnit` whose level features pass through a Refine Block and/or a
    Feature Fusion Block right after the top-down sum (the init stage of the report's Fig. 2b). The refined
    features feed the level's prediction, the next level's top-down path and the next stage (cross conv, skip2).
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        up_channels: int = 256,
        num_keypoints: int = NUM_KEYPOINTS,
        *,
        refine: bool = True,
        fusion: bool = True,
    ):
        super().__init__(in_channels, up_channels, num_keypoints)
        self.refine_blocks = nn.ModuleList(RefineBlock(up_channels) for _ in in_channels) if refine else None
        self.fusion_blocks = nn.ModuleList(FeatureFusionBlock(up_channels) for _ in in_channels) if fusion else None

    def refine_level(self, level: int, feature: torch.Tensor) -> torch.Tensor:
        if self.refine_blocks is not None:
            feature = self.refine_blocks[level](feature)
        if self.fusion_blocks is not None:
            feature = self.fusion_blocks[level](feature)
        return feature


FAMILIES: tuple[str, ...] = ("rsn", "resnet")


def rsn(
    depth: int = 50,
    *,
    num_stages: int = 1,
    family: str = "rsn",
    branches: int = 4,
    width: int = 64,
    design: str = "report",
    refine: bool = False,
    fusion: bool = False,
    up_channels: int = 256,
    num_keypoints: int = NUM_KEYPOINTS,
    cross_stage: bool = True,
) -> MultiStageNetwork:
    """An RSN (``family="rsn"``) or its ResNet counterpart (``"resnet"``) in MSPN's framework.

    ``num_stages`` stages of the ``depth``-layer down unit (``width`` 64 and ``up_channels`` 256: the paper's
    sizes; the stem and cross conv are ``width`` wide). ``refine``/``fusion`` switch on the Refine Block and the
    Feature Fusion Block in the init stage. ``forward(images (B,3,H,W)) -> outputs[stage][unit]``, each
    ``(B, K, H/4, W/4)``; see :class:`~poselib.models.mspn.MultiStageNetwork`.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")
    if family == "rsn":
        factory = lambda: rsn_down_unit(depth, branches, width, design=design)  # noqa: E731
    else:
        factory = lambda: baseline_down_unit(depth, width)  # noqa: E731
    net = MultiStageNetwork(
        factory, num_stages, num_keypoints=num_keypoints, up_channels=up_channels, stem_channels=width,
        cross_stage=cross_stage,
    )
    if refine or fusion:
        init = net.stages[0]
        init.up = RefinedUpsampleUnit(init.down.channels, up_channels, num_keypoints, refine=refine, fusion=fusion)
    net.family, net.depth = family, depth
    return net


def rsn_hourglass_down_unit(width: int = 256, blocks: int = 2, in_channels: int = 64, branches: int = 4) -> DownUnit:
    """Part IV's equal-width hourglass down path (:func:`poselib.models.hourglass.hourglass_down_unit`) with each
    residual module (1x1 to ``width/2``, 3x3, 1x1 back) replaced by a :class:`ResidualStepsBlock` whose branch
    width derives from the same base width ``width/2``, so that only the bottleneck differs."""
    if width < 2 or blocks < 1:
        raise ValueError(f"need width >= 2 and blocks >= 1, got width={width}, blocks={blocks}")
    steps = branch_channels(width // 2, branches)
    layers = []
    for i in range(4):
        modules: list[nn.Module] = [] if i == 0 else [nn.MaxPool2d(2, stride=2)]
        modules += [
            ResidualStepsBlock(in_channels if (i == 0 and b == 0) else width, width, width=steps, branches=branches)
            for b in range(blocks)
        ]
        layers.append(nn.Sequential(*modules))
    unit = DownUnit(layers, (width,) * 4, in_channels)
    init_weights(unit)
    return unit


def rsn_hourglass(
    num_stages: int = 2,
    *,
    family: str = "rsn",
    width: int = 256,
    blocks: int = 2,
    stem_channels: int = 64,
    branches: int = 4,
    num_keypoints: int = NUM_KEYPOINTS,
) -> MultiStageNetwork:
    """The report's "hourglass" rows: stacked equal-width hourglass modules in MSPN's framework, with RSN
    bottlenecks (``family="rsn"``) or Newell's residual modules (``"resnet"``, Part IV's
    :func:`~poselib.models.hourglass.hourglass`). No RB or FFB, as in the report."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")
    if family == "resnet":
        return hourglass_models.hourglass(num_stages, width=width, blocks=blocks, stem_channels=stem_channels, num_keypoints=num_keypoints)
    return MultiStageNetwork(
        lambda: rsn_hourglass_down_unit(width, blocks, stem_channels, branches), num_stages,
        num_keypoints=num_keypoints, up_channels=width, stem_channels=stem_channels,
    )


# ---------------------------------------------------------------------------------------------------------------
# Registered models (``poselib flops NAME``), at the report's 256x192


def _register(name: str, description: str, **fixed) -> None:
    @register_model(name, input_size=(256, 192), description=description)
    def build(**kwargs) -> MultiStageNetwork:
        return rsn(**{**fixed, **kwargs})


@register_model("rsn", input_size=(256, 192), description="RSN or its ResNet counterpart, any configuration (keywords of rsn())")
def _build_any(**kwargs) -> MultiStageNetwork:
    return rsn(**kwargs)


for _depth in (18, 50, 101):
    _register(f"rsn-{_depth}", f"RSN-{_depth}, single stage (report Table 4)", depth=_depth)
    _register(f"resnet-{_depth}", f"ResNet-{_depth} counterpart of RSN-{_depth}, single stage (report Table 4)",
              depth=_depth, family="resnet")
for _branches in BRANCH_RANGE:
    _register(f"rsn-50-branches-{_branches}", f"RSN-50 with {_branches} branches per bottleneck (report Table 3)",
              depth=50, branches=_branches)
_register("rsn-50-mmpose", "RSN-50 as in mmpose: expansion 1, 64..512 channels", depth=50, design="mmpose")


@register_model("rsn-hourglass-2stage", input_size=(256, 192), description="2 equal-width hourglass modules of RSN bottlenecks, no RB/FFB (report Table 4)")
def _build_rsn_hourglass(**kwargs) -> MultiStageNetwork:
    return rsn_hourglass(2, **kwargs)


@register_model("resnet-hourglass-2stage", input_size=(256, 192), description="2 equal-width hourglass modules of residual bottlenecks (Part IV's hourglass-2stage; report Table 4)")
def _build_resnet_hourglass(**kwargs) -> MultiStageNetwork:
    return rsn_hourglass(2, family="resnet", **kwargs)


_register("4xrsn-50", "4-stage RSN-50 with RB and FFB in the init stage (report Tables 2, 4)", depth=50,
          num_stages=4, refine=True, fusion=True)
_register("4xresnet-50", "4-stage ResNet-50 with RB and FFB in the init stage (report Tables 2, 4)", depth=50,
          num_stages=4, refine=True, fusion=True, family="resnet")


@register_model("rsn-hourglass", input_size=(256, 192), description="equal-width hourglass of RSN or residual bottlenecks, any configuration (keywords of rsn_hourglass())")
def _build_any_hourglass(**kwargs) -> MultiStageNetwork:
    return rsn_hourglass(**kwargs)
