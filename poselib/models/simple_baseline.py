"""Simple Baselines (Xiao et al., ECCV 2018): a ResNet followed by deconvolutions, the top-down model of Part 0.

The head upsamples C5 (stride 32) with ``num_deconv`` transposed convolutions (4x4, stride 2, BN, ReLU), each
doubling the resolution, then a 1x1 convolution predicts one heatmap per keypoint. Three deconvolutions give
stride-4 heatmaps: a 256x192 input yields 64x48 maps. MSPN's and RSN's chapters compare against this model.
"""

from __future__ import annotations

import torch
from torch import nn

from poselib.keypoints import NUM_KEYPOINTS
from poselib.models.backbones import resnet
from poselib.models.registry import register_model


class DeconvHead(nn.Module):
    """Transposed-convolution upsampling head: C5 ``(N, C_in, h, w) -> (N, K, h*2^n, w*2^n)``.

    With ``skip_channels`` (channels of C4, C3, C2, ...), the output of deconvolution ``i`` is added to a 1x1
    projection of the backbone feature at the same stride before the next one: lateral connections as in FPN or
    CPN's GlobalNet. The paper has none (its ImageNet-trained C5 already localises well); we switch them on for
    the CPU presets, which train from scratch in minutes and otherwise first learn little more than a mean pose.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int = NUM_KEYPOINTS,
        channels: int = 256,
        num_deconv: int = 3,
        skip_channels: tuple[int, ...] = (),
    ):
        super().__init__()
        self.deconvs = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for i in range(num_deconv)
        )
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), nn.BatchNorm2d(channels)) for c in skip_channels[:num_deconv]
        )
        self.final = nn.Conv2d(channels if num_deconv else in_channels, num_keypoints, 1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, features: torch.Tensor, skips: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """``features``: C5; ``skips``: finer backbone features, coarsest first (C4, C3, C2)."""
        x = features
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            if i < len(self.laterals):
                x = x + self.laterals[i](skips[i])
        return self.final(x)


class SimpleBaseline(nn.Module):
    """ResNet-``depth`` + :class:`DeconvHead`. ``forward(images (N,3,H,W)) -> heatmaps (N,K,H/stride,W/stride)``
    with ``stride = 32 / 2**num_deconv`` (4 by default). ``width`` narrows the ResNet (64: the standard one);
    ``skips`` adds lateral connections from C4, C3, C2 to the deconvolutions (off in the paper)."""

    def __init__(
        self,
        depth: int = 50,
        *,
        num_keypoints: int = NUM_KEYPOINTS,
        deconv_channels: int = 256,
        num_deconv: int = 3,
        width: int = 64,
        skips: bool = False,
        pretrained: bool = False,
    ):
        super().__init__()
        self.backbone = resnet(depth, width=width, pretrained=pretrained)
        channels = self.backbone.out_channels
        skip_channels = tuple(reversed(channels[:-1])) if skips else ()
        self.head = DeconvHead(channels[-1], num_keypoints, deconv_channels, num_deconv, skip_channels)
        self.stride = 32 // 2**num_deconv

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        return self.head(features["c5"], (features["c4"], features["c3"], features["c2"]))


def _register(depth: int) -> None:
    @register_model(f"simplebaseline-r{depth}", input_size=(256, 192), description=f"Simple Baselines, ResNet-{depth}, 3 deconvolutions of 256")
    def build(**kwargs) -> SimpleBaseline:
        return SimpleBaseline(depth, **kwargs)


for _depth in (18, 50, 101, 152):
    _register(_depth)
