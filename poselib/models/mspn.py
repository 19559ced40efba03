"""MSPN (Li et al. 2019, "Rethinking on Multi-Stage Networks"): the multi-stage framework of Parts IV and V.

Contract (stable; Part V's RSN plugs its own single-stage module in through it):

- :class:`DownUnit`: the downsampling path of one stage. ``layers`` is an ``nn.ModuleList`` of exactly 4 modules
  (ResNet ``layer1``..``layer4`` style): ``layers[0]`` takes the ``in_channels``-channel stride-4 feature map and
  keeps stride 4, each later layer halves the resolution. ``channels`` holds the output channels of the 4 layers.
- :func:`resnet_down_unit` ``(depth, width=64)``: ResNet-18/34/50/101/152 layers with torchvision's blocks; ``width``
  scales every channel (64: the standard network), so tiny CPU models use the same code.
- :class:`MultiStageNetwork` ``(down_unit_factory, num_stages, num_keypoints=17, up_channels=256,
  cross_channels=None, stem_channels=64, cross_stage=True)``: stem (7x7/2 conv + 3x3/2 max-pool, ``stem_channels``
  wide) in stage 1 only; every stage = a down unit from ``down_unit_factory()`` + an :class:`UpsampleUnit` with a
  prediction at each of its 4 scales; between stages a 1x1 "cross" conv turns the finest up feature into the next
  stage's input (``cross_channels`` = ``stem_channels`` by default; it must equal the down unit's
  ``in_channels``), and, when ``cross_stage``, cross-stage aggregation adds ``skip1(down feature) +
  skip2(up feature)`` of stage ``s`` right after each layer of stage ``s+1``.
  ``forward(images (B,3,H,W)) -> outputs[stage][unit]``: a list per stage of 4 heatmaps, unit 0 coarsest (from
  ``layers[3]``) .. unit 3 finest, each ``(B, K, H/4, W/4)`` (coarser predictions are upsampled bilinearly).
  Attributes ``stride = 4``, ``num_stages``, ``num_keypoints``. The test output is ``outputs[-1][-1]``.
- Targets and loss for any :class:`MultiStageNetwork` live in :mod:`poselib.methods.mspn`
  (``MSPNTargets``, ``mspn_loss``, ``mspn_step``).

Layer details follow the reference sheet (section 4.1), which reproduces mmpose's parameter counts: lateral
1x1 conv + BN (no ReLU), top-down path bilinear (``align_corners=True``) + 1x1 conv + BN, ReLU after the sum;
prediction 1x1 conv + BN + ReLU then 3x3 conv to K + BN; skip1 1x1 C->C + BN + ReLU, skip2 1x1 256->C + BN + ReLU,
cross 1x1 256->64 + BN + ReLU. Convolutions have no bias (mmpose; the official code adds biases, +0.1 % params).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from poselib.keypoints import NUM_KEYPOINTS
from poselib.models.backbones import RESNET_LAYERS, resnet
from poselib.models.registry import register_model


#: Initial scale of the BN on the heatmap logits. MSPN trains towards targets of peak 255 with this BN's scale at 1;
#: our targets peak at 1, so a scale of 1/255 gives the same initial prediction relative to the target (with
#: scale 1 the unit-variance initial output swamps peak-1 targets and small models learn nothing for epochs).
HEATMAP_BN_INIT = 1 / 255


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, relu: bool = True) -> nn.Sequential:
    """``kernel_size`` conv (same padding, no bias) + BN (+ ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DownUnit(nn.Module):
    """The downsampling path of one stage: 4 layers, strides 4, 8, 16, 32 relative to the image.

    ``layers[0]`` consumes an ``in_channels``-channel stride-4 map; ``channels[i]`` is the output width of
    ``layers[i]``. ``forward(x, skips=None) -> [f1, f2, f3, f4]`` (finest first); ``skips[i]``, when given, is
    added right after ``layers[i]`` (cross-stage aggregation) and the sum is what the next layer consumes.
    """

    def __init__(self, layers: Sequence[nn.Module], channels: Sequence[int], in_channels: int):
        super().__init__()
        if len(layers) != 4 or len(channels) != 4:
            raise ValueError(f"a DownUnit needs exactly 4 layers and 4 channel counts, got {len(layers)} and {len(channels)}")
        self.layers = nn.ModuleList(layers)
        self.channels: tuple[int, int, int, int] = tuple(int(c) for c in channels)  # type: ignore[assignment]
        self.in_channels = int(in_channels)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        features = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if skips is not None:
                x = x + skips[i]
            features.append(x)
        return features


def resnet_down_unit(depth: int, width: int = 64, in_channels: int | None = None) -> DownUnit:
    """ResNet-``depth`` ``layer1``..``layer4`` (torchvision BasicBlock/Bottleneck, stride on the 3x3 conv) as a
    :class:`DownUnit`. ``width`` is the first layer's base width (64: the standard ResNet, channels 256..2048 for
    depth >= 50); ``in_channels`` (default ``width``) is the width of the stride-4 input."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

    if depth not in RESNET_LAYERS:
        raise ValueError(f"ResNet depth must be one of {tuple(RESNET_LAYERS)}, got {depth}")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    block = BasicBlock if depth < 50 else Bottleneck
    channels_in = width if in_channels is None else int(in_channels)
    first_in = channels_in
    layers, channels = [], []
    for i, blocks in enumerate(RESNET_LAYERS[depth]):
        planes, stride = width * 2**i, 1 if i == 0 else 2
        out = planes * block.expansion
        downsample = None
        if stride != 1 or channels_in != out:
            downsample = nn.Sequential(conv1x1(channels_in, out, stride), nn.BatchNorm2d(out))
        stage = [block(channels_in, planes, stride, downsample)] + [block(out, planes) for _ in range(1, blocks)]
        layers.append(nn.Sequential(*stage))
        channels.append(out)
        channels_in = out
    unit = DownUnit(layers, channels, first_in)
    for module in unit.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return unit


class UpsampleUnit(nn.Module):
    """The light upsampling path: one ``up_channels``-wide level per scale, each with a heatmap prediction.

    ``forward(features [f1..f4] finest first) -> (ups, heatmaps)``, both coarsest first: ``ups[j]`` the
    ``up_channels`` feature of level ``j`` at its own resolution, ``heatmaps[j]`` ``(B, K, h1, w1)`` at the finest
    resolution (the resolution of ``f1``).
    """

    def __init__(self, in_channels: Sequence[int], up_channels: int = 256, num_keypoints: int = NUM_KEYPOINTS):
        super().__init__()
        coarse_first = list(reversed(list(in_channels)))
        self.laterals = nn.ModuleList(conv_bn(c, up_channels, 1, relu=False) for c in coarse_first)
        self.top_downs = nn.ModuleList(conv_bn(up_channels, up_channels, 1, relu=False) for _ in coarse_first[1:])
        self.predictions = nn.ModuleList(
            nn.Sequential(conv_bn(up_channels, up_channels, 1), conv_bn(up_channels, num_keypoints, 3, relu=False))
            for _ in coarse_first
        )
        for prediction in self.predictions:
            nn.init.constant_(prediction[1][1].weight, HEATMAP_BN_INIT)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        coarse_first = list(reversed(list(features)))
        finest_size = coarse_first[-1].shape[-2:]
        ups: list[torch.Tensor] = []
        heatmaps: list[torch.Tensor] = []
        for j, feature in enumerate(coarse_first):
            x = self.laterals[j](feature)
            if j > 0:
                up = F.interpolate(ups[-1], size=feature.shape[-2:], mode="bilinear", align_corners=True)
                x = x + self.top_downs[j - 1](up)
            x = self.refine_level(j, F.relu(x))
            ups.append(x)
            hm = self.predictions[j](x)
            if hm.shape[-2:] != finest_size:
                hm = F.interpolate(hm, size=finest_size, mode="bilinear", align_corners=True)
            heatmaps.append(hm)
        return ups, heatmaps

    def refine_level(self, level: int, feature: torch.Tensor) -> torch.Tensor:
        """Hook on level ``level``'s feature after the top-down sum (identity here; RSN's init stage refines it).
        Its output feeds the level's prediction, the next level's top-down path and the next stage."""
        return feature


class CrossStage(nn.Module):
    """What stage ``s`` hands to stage ``s+1``: the ``cross`` conv on the finest up feature (the next stage's
    input) and, with ``aggregate``, per scale ``skip1(down) + skip2(up)`` (1x1 conv + BN + ReLU each)."""

    def __init__(self, down_channels: Sequence[int], up_channels: int, cross_channels: int, aggregate: bool):
        super().__init__()
        self.cross = conv_bn(up_channels, cross_channels, 1)
        self.aggregate = aggregate
        if aggregate:
            self.skip1 = nn.ModuleList(conv_bn(c, c, 1) for c in down_channels)
            self.skip2 = nn.ModuleList(conv_bn(up_channels, c, 1) for c in down_channels)

    def forward(
        self, down: Sequence[torch.Tensor], ups: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``down`` finest first, ``ups`` coarsest first; returns ``(next_input, skips finest first or None)``."""
        next_input = self.cross(ups[-1])
        if not self.aggregate:
            return next_input, None
        n = len(down)
        skips = [self.skip1[i](down[i]) + self.skip2[i](ups[n - 1 - i]) for i in range(n)]
        return next_input, skips


class Stage(nn.Module):
    """One stage: ``down`` (:class:`DownUnit`), ``up`` (:class:`UpsampleUnit`), and ``to_next``
    (:class:`CrossStage`, ``None`` in the last stage)."""

    def __init__(self, down: DownUnit, up: UpsampleUnit, to_next: CrossStage | None):
        super().__init__()
        self.down, self.up, self.to_next = down, up, to_next


class MultiStageNetwork(nn.Module):
    """Stages of (down unit + upsample unit) with cross-stage aggregation; see the module docstring.

    ``forward(images (B,3,H,W)) -> list[list[Tensor]]``: ``outputs[s][j]`` is stage ``s``'s heatmaps from level
    ``j`` (0 coarsest .. 3 finest), each ``(B, K, H/4, W/4)``. H and W must be multiples of 32.
    """

    stride = 4

    def __init__(
        self,
        down_unit_factory: Callable[[], DownUnit],
        num_stages: int,
        num_keypoints: int = NUM_KEYPOINTS,
        up_channels: int = 256,
        cross_channels: int | None = None,
        stem_channels: int = 64,
        cross_stage: bool = True,
    ):
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"num_stages must be at least 1, got {num_stages}")
        cross_channels = stem_channels if cross_channels is None else cross_channels
        self.num_stages, self.num_keypoints, self.cross_stage = num_stages, num_keypoints, cross_stage
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        for s in range(num_stages):
            down = down_unit_factory()
            if not isinstance(down, DownUnit):
                raise TypeError(f"down_unit_factory must return a DownUnit, got {type(down).__name__}")
            expected = stem_channels if s == 0 else cross_channels
            if getattr(down, "in_channels", expected) != expected:
                raise ValueError(
                    f"stage {s + 1}: the down unit takes {down.in_channels} channels but gets {expected} "
                    f"({'stem_channels' if s == 0 else 'cross_channels'})"
                )
            up = UpsampleUnit(down.channels, up_channels, num_keypoints)
            to_next = CrossStage(down.channels, up_channels, cross_channels, cross_stage) if s < num_stages - 1 else None
            stages.append(Stage(down, up, to_next))
        self.stages = nn.ModuleList(stages)

    def load_resnet_backbone(self, state: Mapping[str, torch.Tensor]) -> None:
        """Start the stem and every stage's down unit from a ResNet's weights: ``state`` is a
        :class:`~poselib.models.backbones.ResNetFeatures` state dict (``stem.*``, ``layer1.*`` .. ``layer4.*``).

        MSPN starts from ImageNet weights this way: the stem and *each* stage's downsampling path get the same
        ResNet (reference sheet 4.1, after mmpose); the upsample units and cross-stage convs keep their own start.
        Raises ``ValueError`` when a down unit is no ResNet of the same depth and width as the source.
        """
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head == "stem":
                mapped[key] = value
            elif head in ("layer1", "layer2", "layer3", "layer4"):
                for s in range(self.num_stages):
                    mapped[f"stages.{s}.down.layers.{int(head[-1]) - 1}.{rest}"] = value
            else:
                raise ValueError(f"not a ResNetFeatures state: unexpected key {key!r}")
        own = self.state_dict()
        covered = {k for k in own if k.startswith("stem.") or ".down." in k}
        unknown = sorted(set(mapped) - set(own))
        missing = sorted(covered - set(mapped))
        wrong = sorted(k for k in set(mapped) & set(own) if mapped[k].shape != own[k].shape)
        if unknown or missing or wrong:
            raise ValueError(
                "the ResNet does not fit this network's down units (depth and width must match): "
                f"{len(unknown)} of its tensors have no place here (e.g. {unknown[:2]}), {len(missing)} tensors of the "
                f"down units get none (e.g. {missing[:2]}), {len(wrong)} differ in shape (e.g. {wrong[:2]})"
            )
        self.load_state_dict(mapped, strict=False)

    def forward(self, images: torch.Tensor) -> list[list[torch.Tensor]]:
        x = self.stem(images)
        skips = None
        outputs = []
        for stage in self.stages:
            down = stage.down(x, skips)
            ups, heatmaps = stage.up(down)
            outputs.append(heatmaps)
            if stage.to_next is not None:
                x, skips = stage.to_next(down, ups)
        return outputs


def mspn(
    num_stages: int,
    depth: int = 50,
    *,
    width: int = 64,
    num_keypoints: int = NUM_KEYPOINTS,
    up_channels: int = 256,
    cross_stage: bool = True,
    pretrained: bool = False,
) -> MultiStageNetwork:
    """MSPN with ``num_stages`` ResNet-``depth`` single-stage modules. ``width`` narrows the ResNet (and the
    stem and cross conv with it); ``width=64, up_channels=256`` is the paper's network. ``pretrained`` starts the
    stem and every stage's ResNet from torchvision's ImageNet weights (downloaded once; width 64 only)."""
    network = MultiStageNetwork(
        lambda: resnet_down_unit(depth, width),
        num_stages,
        num_keypoints=num_keypoints,
        up_channels=up_channels,
        stem_channels=width,
        cross_stage=cross_stage,
    )
    if pretrained:
        network.load_resnet_backbone(resnet(depth, width=width, pretrained=True).state_dict())
    return network


def _register(num_stages: int) -> None:
    @register_model(
        f"mspn-r50-{num_stages}stage", input_size=(256, 192),
        description=f"MSPN, {num_stages} stage(s) of ResNet-50 + 256-ch upsample units",
    )
    def build(depth: int = 50, **kwargs) -> MultiStageNetwork:
        return mspn(num_stages, depth, **kwargs)


for _stages in (1, 2, 3, 4):
    _register(_stages)


@register_model("mspn", input_size=(256, 192), description="MSPN of any depth and number of stages (depth=, num_stages=)")
def _build_any(num_stages: int = 1, depth: int = 50, **kwargs) -> MultiStageNetwork:
    """MSPN with ``num_stages`` and ``depth`` as keywords (the recipes' and Table 2's entry point)."""
    return mspn(num_stages, depth, **kwargs)


@torch.no_grad()
def aggregation_norms(model: MultiStageNetwork, images: torch.Tensor) -> torch.Tensor:
    """Root-mean-square size of the three summands of cross-stage aggregation, ``(num_stages - 1, 4, 3)``.

    For each later stage ``s+1`` and each layer ``i`` (finest first): the stage's own layer output, ``skip1`` of
    stage ``s``'s down feature and ``skip2`` of its up feature, i.e. how much of what stage ``s+1`` works on comes
    from stage ``s``. Zeros for the skips when ``cross_stage`` is off.
    """
    x = model.stem(images)
    skip1: list[torch.Tensor] | None = None
    skip2: list[torch.Tensor] | None = None
    rows = []
    for stage in model.stages:
        features = []
        row = []
        for i, layer in enumerate(stage.down.layers):
            own = layer(x)
            a = skip1[i] if skip1 is not None else torch.zeros_like(own)
            b = skip2[i] if skip2 is not None else torch.zeros_like(own)
            row.append([t.pow(2).mean().sqrt() for t in (own, a, b)])
            x = own + a + b
            features.append(x)
        if skip1 is not None or stage is not model.stages[0]:
            rows.append(row)
        ups, _ = stage.up(features)
        if stage.to_next is not None:
            x = stage.to_next.cross(ups[-1])
            if stage.to_next.aggregate:
                n = len(features)
                skip1 = [stage.to_next.skip1[i](features[i]) for i in range(n)]
                skip2 = [stage.to_next.skip2[i](ups[n - 1 - i]) for i in range(n)]
            else:
                skip1 = skip2 = None
    return torch.tensor([[[float(v) for v in cell] for cell in row] for row in rows]).reshape(-1, 4, 3)
