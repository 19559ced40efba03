"""Losses shared by the methods. Shapes: heatmaps ``(N, K, h, w)``, per-keypoint weights ``(N, K)``."""

from __future__ import annotations

import torch


def per_keypoint_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each keypoint's map, ``(N, K)``, zeroed where ``weights`` is 0.

    Each map's error is averaged over its ``h*w`` cells, so the value does not depend on the resolution.
    """
    error = (pred.float() - target.float()).pow(2).mean(dim=(2, 3))
    return error * weights.float()


def keypoint_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Heatmap L2 loss of Simple Baselines: mean over samples and keypoints of :func:`per_keypoint_mse`, times 0.5.

    Keypoints with weight 0 (unlabelled or outside the crop) contribute zero but still count in the mean, as in
    the reference implementations, so the loss scale does not jump with the number of labelled keypoints.
    """
    return 0.5 * per_keypoint_mse(pred, target, weights).mean()


def ohkm_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, topk: int = 8) -> torch.Tensor:
    """Online hard keypoint mining (CPN, MSPN): per sample, the mean of the ``topk`` largest keypoint losses.

    Returns a scalar: ``0.5 * mean_n( mean of the topk largest per_keypoint_mse[n] )``.
    """
    losses = per_keypoint_mse(pred, target, weights)
    k = min(topk, losses.shape[1])
    return 0.5 * losses.topk(k, dim=1).values.mean()
