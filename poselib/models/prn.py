"""The Pose Residual Network (PRN, Kocabas et al., ECCV 2018, section 3.4): a residual multilayer perceptron over
a person box's keypoint maps.

Input ``X`` and output ``Y`` are ``(N, K, H, W)`` box grids (the paper's ``H x W = 56 x 36``, ``K = 17``; the
released code stores them channel-last, which changes nothing but the flattening order). The network is

``Y = softmax(ReLU(Linear(h -> D)(hidden(X))) + X)``  (``residual=True``, the paper's Eq. 1)

where ``D = K*H*W`` and ``hidden`` is ``layers`` blocks ``Linear -> ReLU -> Dropout`` of ``hidden`` units (the
paper's best: one layer of 1024, dropout 0.5; the released PyTorch code: two). The residual sits after the output
ReLU, as in both released versions. ``softmax="global"`` normalises over all ``D`` values (the released PyTorch
code), ``"channel"`` over each keypoint channel's ``H*W`` cells (the maintainers report similar results).
Training uses binary cross-entropy (:func:`prn_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poselib.models.registry import register_model

PAPER_GRID: tuple[int, int] = (56, 36)


class PoseResidualNetwork(nn.Module):
    """Residual MLP ``(N, K, H, W) -> (N, K, H, W)`` probabilities (see the module doc)."""

    def __init__(
        self,
        num_keypoints: int = 17,
        grid: tuple[int, int] = PAPER_GRID,
        *,
        hidden: int = 1024,
        layers: int = 1,
        dropout: float = 0.5,
        residual: bool = True,
        softmax: str = "global",
    ):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        if softmax not in ("global", "channel"):
            raise ValueError(f"softmax must be 'global' or 'channel', got {softmax!r}")
        self.num_keypoints, self.grid = num_keypoints, (int(grid[0]), int(grid[1]))
        self.residual, self.softmax = residual, softmax
        size = num_keypoints * self.grid[0] * self.grid[1]
        blocks: list[nn.Module] = []
        width_in = size
        for _ in range(layers):
            blocks += [nn.Linear(width_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width_in = hidden
        self.hidden = nn.Sequential(*blocks)
        self.output = nn.Linear(hidden, size)

    def logits(self, x: Tensor) -> Tensor:
        """Pre-softmax output ``(N, K, H, W)``: ``ReLU(MLP(X)) (+ X)``."""
        if x.shape[1:] != (self.num_keypoints, *self.grid):
            raise ValueError(f"PRN expects (N, {self.num_keypoints}, {self.grid[0]}, {self.grid[1]}) inputs, got {tuple(x.shape)}")
        flat = x.flatten(1)
        out = F.relu(self.output(self.hidden(flat)))
        if self.residual:
            out = out + flat
        return out.view_as(x)

    def forward(self, x: Tensor) -> Tensor:
        out = self.logits(x)
        if self.softmax == "global":
            return torch.softmax(out.flatten(1), dim=1).view_as(x)
        return torch.softmax(out.flatten(2), dim=2).view_as(x)


def prn_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """Binary cross-entropy averaged over all ``N*K*H*W`` elements (the released code's ``BCELoss``)."""
    return F.binary_cross_entropy(pred.clamp(eps, 1 - eps), target)


@register_model("prn", input_size=PAPER_GRID, in_channels=17, description="Pose Residual Network (1 layer of 1024)")
def prn(**kwargs) -> PoseResidualNetwork:
    """PRN with the paper's best design (1 hidden layer of 1024 units, dropout 0.5, residual) on a 56x36 grid."""
    return PoseResidualNetwork(**kwargs)
