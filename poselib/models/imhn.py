"""Simple Pose's Identity Mapping Hourglass Network (IMHN) (Li, Su and Wang, AAAI 2020).

Layout of the released default network (``posenet.py`` with ``layers_transposed.py``), as the project's fact
sheet describes it:

- **Stem** (stride 4): 7x7 conv stride 2 (C/4), residual to C/2, 2x2 max-pool, residual (C/2) giving ``x``; six
  dilated 3x3 convs (dilations 3, 3, 4, 4, 5, 5) on ``x`` giving ``x1``; output ``concat(x, x1)`` with C channels.
- **Hourglass of order 4**: level ``i`` carries ``c_i = C + i*growth`` channels (256, 384, 512, 640, 768); skip
  residual, max-pool and residual to ``c_{i+1}``, the next level (innermost: one residual), residual back to
  ``c_i``, nearest x2 upsampling, 3x3 conv, added to the skip. It returns 5 maps: the level-0 output and the inner
  output of each lower level (before its up-residual), at strides 4, 8, 16, 32, 64.
- **Per-scale head**, each of the 5 scales (spatial attention = supervising all 5): two 3x3 convs to
  ``head_channels``, an SE block (reduction 16; channel attention), a 1x1 conv to the outputs.
- **Identity mappings** between stages: at every scale ``j`` the next stage adds ``M_pred(pred_j) +
  M_feat(feat_j)`` (1x1 conv + BN each, to ``c_j``) to its hourglass output at scale ``j``; at scale 0 the same
  term is also added to the next stage's input.

Activations are LeakyReLU(0.01); convolutions followed by BN have no bias. ``forward`` returns, per stage, the
list of per-scale predictions, finest first: ``outputs[t][j]`` is ``(N, num_outputs, H/4/2^j, W/4/2^j)``. The
input's sides must be multiples of :attr:`IMHN.size_divisor` (``4 * 2^order``). Switches: ``spatial_attention``
(False: only the finest scale has a head, and only it is mapped across stages), ``channel_attention`` (False: no
SE), ``identity_mapping`` (False: stages are chained through their features only, ``x + feat_0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poselib.models.registry import register_model

#: Output channels of the reference network (30 parts, 18 keypoints, person mask, keypoint maximum).
REFERENCE_OUTPUTS = 50
#: Output channels of poselib's Simple Pose: 17 COCO keypoints and 24 body parts.
COCO_OUTPUTS = 17 + 24


def _act() -> nn.Module:
    return nn.LeakyReLU(0.01, inplace=True)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(_act())
        super().__init__(*layers)


class Residual(nn.Module):
    """Bottleneck residual block: 1x1 (out/2), 3x3 (out/2), 1x1 (out), BN after each; 1x1+BN shortcut when the
    width changes; LeakyReLU after the sum."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(1, cout // 2)
        self.body = nn.Sequential(ConvBNAct(cin, mid, 1), ConvBNAct(mid, mid, 3), ConvBNAct(mid, cout, 1, act=False))
        self.shortcut = nn.Identity() if cin == cout else ConvBNAct(cin, cout, 1, act=False)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SqueezeExcitation(nn.Module):
    """SE block (Hu et al. 2018) with LeakyReLU: channel weights ``sigmoid(W2 lrelu(W1 mean(x))) (N, C)``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), _act(), nn.Linear(hidden, channels), nn.Sigmoid())
        self.last_weights: torch.Tensor | None = None  # kept for figures

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc(x.mean(dim=(2, 3)))
        self.last_weights = weights.detach()
        return x * weights[:, :, None, None]


class Hourglass(nn.Module):
    """Hourglass of order ``order`` on ``channels`` channels, growing by ``growth`` per level. Returns the
    ``order + 1`` feature maps described in the module doc, finest first."""

    def __init__(self, order: int, channels: int, growth: int):
        super().__init__()
        inner_channels = channels + growth
        self.order = order
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, inner_channels)
        self.inner = Hourglass(order - 1, inner_channels, growth) if order > 1 else Residual(inner_channels, inner_channels)
        self.up = Residual(inner_channels, channels)
        self.merge = ConvBNAct(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skip = self.skip(x)
        y = self.down(F.max_pool2d(x, 2))
        inner = self.inner(y) if self.order > 1 else [self.inner(y)]
        up = self.merge(F.interpolate(self.up(inner[0]), scale_factor=2, mode="nearest"))
        return [skip + up, *inner]


class Stem(nn.Module):
    """Stride-4 stem: ``(N, 3, H, W) -> (N, channels, H/4, W/4)``."""

    def __init__(self, channels: int = 256):
        super().__init__()
        half = channels // 2
        self.pre = nn.Sequential(ConvBNAct(3, channels // 4, 7, stride=2), Residual(channels // 4, half))
        self.post = Residual(half, half)
        self.dilated = nn.Sequential(*[ConvBNAct(half, half, 3, dilation=d) for d in (3, 3, 4, 4, 5, 5)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.post(F.max_pool2d(self.pre(x), 2))
        return torch.cat([x, self.dilated(x)], 1)


class Features(nn.Module):
    """One scale's head: two 3x3 convs, SE (optional), 1x1 conv to the outputs. Returns (features, predictions)."""

    def __init__(self, cin: int, channels: int, num_outputs: int, channel_attention: bool = True):
        super().__init__()
        self.convs = nn.Sequential(ConvBNAct(cin, channels, 3), ConvBNAct(channels, channels, 3))
        self.se = SqueezeExcitation(channels) if channel_attention else None
        self.out = nn.Conv2d(channels, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.convs(x)
        if self.se is not None:
            feat = self.se(feat)
        return feat, self.out(feat)


class IdentityMapping(nn.Module):
    """``M_pred(pred) + M_feat(feat)``: 1x1 conv + BN each, to ``channels``."""

    def __init__(self, num_outputs: int, head_channels: int, channels: int):
        super().__init__()
        self.pred = ConvBNAct(num_outputs, channels, 1, act=False)
        self.feat = ConvBNAct(head_channels, channels, 1, act=False)

    def forward(self, feat: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        return self.pred(pred) + self.feat(feat)


class IMHN(nn.Module):
    """Identity Mapping Hourglass Network; see the module doc. ``stride`` is 4; ``num_scales`` is ``order+1``
    with spatial attention, else 1."""

    stride = 4

    def __init__(
        self,
        num_stages: int = 4,
        num_outputs: int = COCO_OUTPUTS,
        channels: int = 256,
        growth: int = 128,
        order: int = 4,
        head_channels: int | None = None,
        *,
        spatial_attention: bool = True,
        channel_attention: bool = True,
        identity_mapping: bool = True,
        init_std: float | None = 0.001,
    ):
        super().__init__()
        if num_stages < 1 or order < 1:
            raise ValueError(f"need num_stages >= 1 and order >= 1, got {num_stages} and {order}")
        head_channels = channels if head_channels is None else head_channels
        self.num_stages, self.order, self.num_outputs = num_stages, order, num_outputs
        self.num_scales = order + 1 if spatial_attention else 1
        self.identity_mapping = identity_mapping
        self.size_divisor = 4 * 2**order
        level_channels = [channels + j * growth for j in range(self.num_scales)]
        self.stem = Stem(channels)
        self.hourglasses = nn.ModuleList(Hourglass(order, channels, growth) for _ in range(num_stages))
        self.heads = nn.ModuleList(
            nn.ModuleList(Features(c, head_channels, num_outputs, channel_attention) for c in level_channels)
            for _ in range(num_stages)
        )
        if identity_mapping:
            self.mappings = nn.ModuleList(
                nn.ModuleList(IdentityMapping(num_outputs, head_channels, c) for c in level_channels)
                for _ in range(num_stages - 1)
            )
        else:
            self.mappings = nn.ModuleList(ConvBNAct(head_channels, channels, 1, act=False) for _ in range(num_stages - 1))
        if init_std is not None:
            self._init(init_std)

    def _init(self, std: float) -> None:
        # the reference's initialisation: conv N(0, 0.001), zero bias; BN 1/0; Linear N(0, 0.01)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def se_blocks(self) -> list[list[SqueezeExcitation | None]]:
        """The SE block of every stage and scale, ``[stage][scale]`` (None without channel attention)."""
        return [[head.se for head in stage] for stage in self.heads]

    def forward(self, images: torch.Tensor, return_features: bool = False):
        h, w = images.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(f"input {h}x{w}: IMHN needs sides divisible by {self.size_divisor} (pad the image)")
        x = self.stem(images)
        carried: list[torch.Tensor] | None = None
        outputs, features = [], []
        for t in range(self.num_stages):
            maps = self.hourglasses[t](x)[: self.num_scales]
            if carried is not None and self.identity_mapping:
                maps = [m + c for m, c in zip(maps, carried)]
            stage_feats, stage_preds = zip(*(head(m) for head, m in zip(self.heads[t], maps)))
            outputs.append(list(stage_preds))
            features.append(list(stage_feats))
            if t + 1 < self.num_stages:
                if self.identity_mapping:
                    carried = [mp(f, p) for mp, f, p in zip(self.mappings[t], stage_feats, stage_preds)]
                    x = x + carried[0]
                else:
                    x = x + self.mappings[t](stage_feats[0])
        return (outputs, features) if return_features else outputs


@register_model("imhn-4stage", input_size=(384, 384), description="Simple Pose 4-stage IMHN (C=256, +128/level), 50 reference outputs")
def imhn_4stage(**kwargs) -> IMHN:
    """Simple Pose's 4-stage IMHN (the reference layout's 50 output channels unless ``num_outputs`` is given)."""
    return IMHN(**{"num_stages": 4, "num_outputs": REFERENCE_OUTPUTS, **kwargs})


@register_model("imhn-3stage", input_size=(384, 384), description="Simple Pose 3-stage IMHN (C=256, +128/level), 50 reference outputs")
def imhn_3stage(**kwargs) -> IMHN:
    """Simple Pose's 3-stage IMHN."""
    return IMHN(**{"num_stages": 3, "num_outputs": REFERENCE_OUTPUTS, **kwargs})


@register_model("imhn", input_size=(128, 128), description="IMHN with free widths (the book's small configurations)")
def imhn(**kwargs) -> IMHN:
    """IMHN with every size a keyword (defaults: 4 stages, C=256, COCO's 17 keypoints + 24 parts)."""
    return IMHN(**kwargs)


__all__ = ["COCO_OUTPUTS", "IMHN", "REFERENCE_OUTPUTS"]
