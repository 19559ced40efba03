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
    """Transposed-convolution upsampling head: ``(N, C_in, h, w) -> (N, K, h*2^n, w*2^n)``."""

    def __init__(self, in_channels: int, num_keypoints: int = NUM_KEYPOINTS, channels: int = 256, num_deconv: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels if num_deconv else in_channels, num_keypoints, 1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.final(self.deconv(features))


class SimpleBaseline(nn.Module):
    """ResNet-``depth`` + :class:`DeconvHead`. ``forward(images (N,3,H,W)) -> heatmaps (N,K,H/stride,W/stride)``
    with ``stride = 32 / 2**num_deconv`` (4 by default)."""

    def __init__(
        self,
        depth: int = 50,
        *,
        num_keypoints: int = NUM_KEYPOINTS,
        deconv_channels: int = 256,
        num_deconv: int = 3,
        width: int = 64,
        pretrained: bool = False,
    ):
        super().__init__()
        self.backbone = resnet(depth, width=width, pretrained=pretrained)
        self.head = DeconvHead(self.backbone.out_channels[-1], num_keypoints, deconv_channels, num_deconv)
        self.stride = 32 // 2**num_deconv

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)["c5"])


def _register(depth: int) -> None:
    @register_model(f"simplebaseline-r{depth}", input_size=(256, 192), description=f"Simple Baselines, ResNet-{depth}, 3 deconvolutions of 256")
    def build(**kwargs) -> SimpleBaseline:
        return SimpleBaseline(depth, **kwargs)


for _depth in (18, 50, 101, 152):
    _register(_depth)
