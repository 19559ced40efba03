"""Shared backbones: torchvision ResNets returning their stage features.

ImageNet weights come from torchvision's model zoo when they can be downloaded (the ``coco`` preset asks for
them); offline, :func:`resnet` raises :class:`PretrainedWeightsUnavailable` saying what failed and how to proceed.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn

RESNET_DEPTHS: tuple[int, ...] = (18, 34, 50, 101, 152)


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be downloaded or read."""


RESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
}


def resnet_channels(depth: int, width: int = 64) -> tuple[int, int, int, int]:
    """Channels of C2, C3, C4, C5 (strides 4, 8, 16, 32) for a ResNet of ``depth`` layers whose first stage
    has ``width`` channels (64 in the standard networks)."""
    expansion = 1 if depth < 50 else 4
    return tuple(width * 2**i * expansion for i in range(4))


def _narrow_resnet(depth: int, width: int) -> nn.Module:
    """A ResNet with torchvision's blocks and layout but ``width`` instead of 64 base channels.

    Modules are named as in torchvision (``conv1``, ``bn1``, ``layer1``..``layer4``) so the code paths match;
    there are no ImageNet weights for these widths.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

    block = BasicBlock if depth < 50 else Bottleneck
    net = nn.Module()
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    in_channels = width
    for i, blocks in enumerate(RESNET_LAYERS[depth]):
        planes, stride = width * 2**i, 1 if i == 0 else 2
        downsample = None
        if stride != 1 or in_channels != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(in_channels, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion))
        layers = [block(in_channels, planes, stride, downsample)]
        in_channels = planes * block.expansion
        layers += [block(in_channels, planes) for _ in range(1, blocks)]
        setattr(net, f"layer{i + 1}", nn.Sequential(*layers))
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net


def _torchvision_resnet(depth: int, pretrained: bool, dilation: tuple[bool, bool, bool]) -> torchvision.models.ResNet:
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth must be one of {RESNET_DEPTHS}, got {depth}")
    builder = getattr(torchvision.models, f"resnet{depth}")
    kwargs = {"replace_stride_with_dilation": list(dilation)} if any(dilation) else {}
    if any(dilation) and depth < 50:
        raise ValueError("dilation needs a bottleneck ResNet (depth 50 or more)")
    if not pretrained:
        return builder(weights=None, **kwargs)
    weights = torchvision.models.get_weight(f"ResNet{depth}_Weights.IMAGENET1K_V1")
    try:
        return builder(weights=weights, **kwargs)
    except Exception as error:  # URLError, HTTPError, hash mismatch, read-only cache...
        raise PretrainedWeightsUnavailable(
            f"could not load ImageNet weights for resnet{depth} from {weights.url}: {error}. "
            "Connect to the internet once (torchvision caches them under $TORCH_HOME/hub/checkpoints), place the "
            "file there by hand, or train from scratch with pretrained=False."
        ) from error


class ResNetFeatures(nn.Module):
    """A torchvision ResNet without its classifier, returning the stage outputs.

    ``forward(images (N,3,H,W)) -> OrderedDict`` with keys ``"c2".."c5"`` at strides 4, 8, 16, 32 (unless dilated)
    and channels :func:`resnet_channels`. ``width`` below 64 gives a narrow network of the same depth and layout
    (the CPU presets' small models); only ``width=64`` has ImageNet weights.
    """

    def __init__(
        self,
        depth: int = 50,
        *,
        width: int = 64,
        pretrained: bool = False,
        dilation: tuple[bool, bool, bool] = (False, False, False),
    ):
        super().__init__()
        if width != 64:
            if pretrained or any(dilation):
                raise ValueError(f"width={width}: ImageNet weights and dilation exist only for width 64")
            if depth not in RESNET_LAYERS:
                raise ValueError(f"ResNet depth must be one of {RESNET_DEPTHS}, got {depth}")
            net = _narrow_resnet(depth, width)
        else:
            net = _torchvision_resnet(depth, pretrained, dilation)
        self.depth = depth
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = resnet_channels(depth, width)

    def forward(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        c2 = self.layer1(self.stem(images))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return OrderedDict(c2=c2, c3=c3, c4=c4, c5=c5)


def resnet(
    depth: int = 50, *, width: int = 64, pretrained: bool = False, dilation: tuple[bool, bool, bool] = (False, False, False)
) -> ResNetFeatures:
    """A ResNet feature extractor (see :class:`ResNetFeatures`)."""
    return ResNetFeatures(depth, width=width, pretrained=pretrained, dilation=dilation)
