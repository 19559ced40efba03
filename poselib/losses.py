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


# ---------------------------------------------------------------------------------------------------------------
# Simple Pose (Li, Su and Wang 2020): focal L2 over keypoint and body-part heatmaps at several scales


def focal_l2_factor(pred: torch.Tensor, target: torch.Tensor, *, thre: float = 0.01, alpha: float = 0.1,
                    beta: float = 0.02, gamma: float = 2.0) -> torch.Tensor:
    """The focal term of Simple Pose's equations (2) and (3), elementwise: ``|1 - Sd|^gamma`` with
    ``Sd = S - alpha`` where the target exceeds ``thre`` (foreground) and ``Sd = 1 - S - beta`` elsewhere.

    So a foreground pixel weighs ``|1 - S + alpha|^gamma`` and a background pixel ``|S + beta|^gamma``: easy
    pixels (foreground near 1, background near 0) are down-weighted. The paper uses ``alpha=0.1, beta=0.02,
    gamma=2``; the released code ``alpha=beta=0, gamma=1`` (and ``>=`` instead of ``>`` for the foreground).
    """
    foreground = target > thre
    sd = torch.where(foreground, pred - alpha, 1.0 - pred - beta)
    return (1.0 - sd).abs().pow(gamma)


def focal_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *, num_keypoints: int = 17,
             eta: float = 2.0, thre: float = 0.01, alpha: float = 0.1, beta: float = 0.02, gamma: float = 2.0,
             focal_channels: str = "all") -> torch.Tensor:
    """Equation (3) for one stage and scale, per image: ``(N,)``.

    ``sum_j sum_p [eta * 1(j <= K) + 1] * W(p) * (S_j(p) - S*_j(p))^2 * |1 - Sd_j(p)|^gamma`` over channels ``j``
    (the first ``num_keypoints`` are keypoints) and pixels ``p``. ``pred, target``: ``(N, C, h, w)``; ``mask``:
    ``(N, h, w)`` (the paper's ``W``, 0 where annotations are missing) or None. ``gamma=0`` gives the weighted
    plain L2 loss. ``focal_channels="keypoints"`` applies the focal term to keypoint channels only (the paper's
    experiment 11).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if focal_channels not in ("all", "keypoints"):
        raise ValueError(f"focal_channels must be 'all' or 'keypoints', got {focal_channels!r}")
    pred, target = pred.float(), target.float()
    loss = (pred - target).square()
    if gamma != 0:
        factor = focal_l2_factor(pred, target, thre=thre, alpha=alpha, beta=beta, gamma=gamma)
        if focal_channels == "keypoints":
            factor = torch.cat([factor[:, :num_keypoints], torch.ones_like(factor[:, num_keypoints:])], 1)
        loss = loss * factor
    channel_weight = torch.ones(pred.shape[1], device=pred.device)
    channel_weight[:num_keypoints] += eta
    loss = loss * channel_weight[None, :, None, None]
    if mask is not None:
        loss = loss * mask.float()[:, None]
    return loss.sum(dim=(1, 2, 3))


#: The paper's scale weights lambda_i, finest scale first (equation 4).
SIMPLE_POSE_SCALE_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0, 16.0, 64.0)


def multi_scale_focal_l2(outputs: list[list[torch.Tensor]], targets: list[torch.Tensor], masks: list[torch.Tensor] | None = None,
                         *, scale_weights: tuple[float, ...] = SIMPLE_POSE_SCALE_WEIGHTS, **focal) -> torch.Tensor:
    """Equation (4): ``sum_t sum_i lambda_i FL_i^t / sum_i lambda_i``, averaged over the batch.

    ``outputs[t][i]``: stage ``t``'s prediction at scale ``i`` (finest first) ``(N, C, h_i, w_i)``; ``targets[i]``
    and ``masks[i]`` the matching targets and masks (a network supervised at fewer scales uses the first ones).
    ``focal``: keyword arguments of :func:`focal_l2` (``gamma=0`` for plain L2). The sum over pixels follows the
    paper and the released code, which divides by the batch size only.
    """
    total = outputs[0][0].new_zeros(())
    for stage in outputs:
        num_scales = len(stage)
        weights = scale_weights[:num_scales]
        stage_loss = sum(w * focal_l2(p, targets[i], None if masks is None else masks[i], **focal).mean()
                         for i, (w, p) in enumerate(zip(weights, stage)))
        total = total + stage_loss / sum(weights)
    return total
