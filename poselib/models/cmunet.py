"""CMU-Net: the multi-stage network of CMU-Pose (Cao et al. 2017), Simple Pose's baseline (stride 8).

VGG-19's first ten convolutions (to conv4_2) and two more (256, 128 channels) make the features ``F`` at stride
8. Stage 1 runs, per output branch, three 3x3 convs (128), a 1x1 conv (512) and a 1x1 conv to the branch's
outputs; every later stage sees ``concat(F, all previous predictions)`` and runs five 7x7 convs (128), a 1x1 conv
(128) and a 1x1 conv to the outputs. ReLU everywhere except after the output convs. CMU-Pose has two branches
(38 PAF channels and 19 keypoint channels for its 18 keypoints plus background); Simple Pose's experiments 4 and
5 use the same network with body-part heatmaps. ``width`` scales every channel count (1.0 is the paper's).

``forward`` returns, per stage, a one-element list holding all branches' outputs concatenated,
``outputs[t][0]`` of shape ``(N, sum(branches), H/8, W/8)``: the same layout as the IMHN's, with one scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from poselib.models.registry import register_model

#: VGG-19 conv1_1 ... conv4_2 widths, "M" for a 2x2 max-pool.
_VGG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512)


def _conv(cin: int, cout: int, kernel: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def _scaled(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class CMUNet(nn.Module):
    """CMU-Pose's network; see the module doc. ``stride`` is 8."""

    stride = 8
    num_scales = 1

    def __init__(self, num_stages: int = 3, branches: Sequence[int] = (38, 19), width: float = 1.0):
        super().__init__()
        if num_stages < 1 or not branches:
            raise ValueError(f"need num_stages >= 1 and at least one branch, got {num_stages} and {branches}")
        self.num_stages, self.branches = num_stages, tuple(int(b) for b in branches)
        self.num_outputs = sum(self.branches)
        self.size_divisor = 8
        layers: list[nn.Module] = []
        cin = 3
        for spec in _VGG:
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += _conv(cin, _scaled(spec, width), 3)
                cin = _scaled(spec, width)
        feat = _scaled(128, width)
        layers += _conv(cin, _scaled(256, width), 3) + _conv(_scaled(256, width), feat, 3)
        self.backbone = nn.Sequential(*layers)
        c128, c512 = _scaled(128, width), _scaled(512, width)
        stages = []
        for t in range(num_stages):
            branch_modules = []
            for out in self.branches:
                if t == 0:
                    body = _conv(feat, c128, 3) + _conv(c128, c128, 3) + _conv(c128, c128, 3) + _conv(c128, c512, 1)
                    body += _conv(c512, out, 1, relu=False)
                else:
                    cin = feat + self.num_outputs
                    body = _conv(cin, c128, 7)
                    for _ in range(4):
                        body += _conv(c128, c128, 7)
                    body += _conv(c128, c128, 1) + _conv(c128, out, 1, relu=False)
                branch_modules.append(nn.Sequential(*body))
            stages.append(nn.ModuleList(branch_modules))
        self.stages = nn.ModuleList(stages)

    def forward(self, images: torch.Tensor) -> list[list[torch.Tensor]]:
        feat = self.backbone(images)
        outputs: list[list[torch.Tensor]] = []
        x = feat
        for stage in self.stages:
            pred = torch.cat([branch(x) for branch in stage], 1)
            outputs.append([pred])
            x = torch.cat([feat, pred], 1)
        return outputs


@register_model("cmunet-3stage", input_size=(368, 368), description="CMU-Net (CMU-Pose's VGG-19 + 3 stages), 38 PAF + 19 heatmap outputs")
def cmunet_3stage(**kwargs) -> CMUNet:
    """The 3-stage CMU-Net of Simple Pose's experiments 4 and 5 (CMU-Pose's branches unless given)."""
    return CMUNet(**{"num_stages": 3, **kwargs})


@register_model("cmunet", input_size=(128, 128), description="CMU-Net with free widths and branches (the book's small configurations)")
def cmunet(**kwargs) -> CMUNet:
    """CMU-Net with every size a keyword."""
    return CMUNet(**kwargs)


__all__ = ["CMUNet"]
