"""Object keypoint similarity (OKS) and greedy OKS non-maximum suppression.

``OKS = sum_i exp(-d_i^2 / (2 s^2 k_i^2)) [v_i > 0] / sum_i [v_i > 0]`` with ``d_i`` the distance in pixels
between predicted and labelled keypoint ``i``, ``s^2`` the person's segment area in pixels and ``k_i = 2 sigma_i``
the per-keypoint constant (:data:`poselib.keypoints.COCO_SIGMAS`). It is to keypoints what IoU is to boxes:
1 for a perfect pose, falling towards 0 as keypoints move by more than a few ``s k_i``.
"""

from __future__ import annotations

import numpy as np

from poselib.keypoints import COCO_SIGMAS


def _keypoint_array(name: str, value, count_axis: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[-1] % 3 == 0:  # flat COCO [x1, y1, v1, x2, ...] rows
        arr = arr.reshape(arr.shape[0], -1, 3)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape ({count_axis}, K, 3), got {arr.shape}")
    return arr


def oks(
    gt_keypoints,
    gt_areas,
    dt_keypoints,
    sigmas=COCO_SIGMAS,
    *,
    gt_boxes=None,
) -> np.ndarray:
    """OKS between every detection and every ground-truth person, exactly as ``COCOeval.computeOks``.

    Args:
        gt_keypoints: ``(G, K, 3)`` ``[x, y, v]`` in pixels (or COCO's flat ``(G, 3K)``).
        gt_areas: ``(G,)`` segment areas in pixels squared (COCO's ``area``).
        dt_keypoints: ``(D, K, 3)``; the third column is ignored.
        sigmas: ``(K,)`` per-keypoint constants.
        gt_boxes: ``(G, 4)`` COCO ``[x, y, w, h]``, needed only for people with no labelled keypoint: for them
            COCO measures each keypoint's distance to the box enlarged to three times its size. Without boxes
            such people get OKS 0 (COCOeval ignores them for keypoint AP anyway).

    Returns:
        ``(D, G)`` float64.
    """
    gt = _keypoint_array("gt_keypoints", gt_keypoints, "G")
    dt = _keypoint_array("dt_keypoints", dt_keypoints, "D")
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if not (gt.shape[1] == dt.shape[1] == sig.size):
        raise ValueError(f"keypoint counts differ: gt {gt.shape[1]}, dt {dt.shape[1]}, sigmas {sig.size}")
    areas = np.asarray(gt_areas, dtype=np.float64).reshape(-1)
    if areas.size != gt.shape[0]:
        raise ValueError(f"gt_areas has {areas.size} values for {gt.shape[0]} ground-truth people")
    variances = (2 * sig) ** 2
    scale = variances * (areas[:, None] + np.spacing(1)) * 2  # (G, K)
    labelled = gt[..., 2] > 0  # (G, K)
    num_labelled = labelled.sum(-1)  # (G,)

    dx = dt[:, None, :, 0] - gt[None, :, :, 0]  # (D, G, K)
    dy = dt[:, None, :, 1] - gt[None, :, :, 1]
    similarity = np.exp(-(dx**2 + dy**2) / scale)
    result = (similarity * labelled).sum(-1) / np.maximum(num_labelled, 1)

    unlabelled = num_labelled == 0
    if unlabelled.any():
        if gt_boxes is None:
            result[:, unlabelled] = 0.0
        else:
            boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
            x0 = boxes[:, 0] - boxes[:, 2]
            x1 = boxes[:, 0] + boxes[:, 2] * 2
            y0 = boxes[:, 1] - boxes[:, 3]
            y1 = boxes[:, 1] + boxes[:, 3] * 2
            xd, yd = dt[:, None, :, 0], dt[:, None, :, 1]
            out_x = np.maximum(0, x0[None, :, None] - xd) + np.maximum(0, xd - x1[None, :, None])
            out_y = np.maximum(0, y0[None, :, None] - yd) + np.maximum(0, yd - y1[None, :, None])
            outside = np.exp(-(out_x**2 + out_y**2) / scale).mean(-1)
            result[:, unlabelled] = outside[:, unlabelled]
    return result


def matched_oks(gt_keypoints, gt_areas, dt_keypoints, sigmas=COCO_SIGMAS) -> np.ndarray:
    """OKS of each detection with its own ground-truth person (row ``i`` with row ``i``): the diagonal of
    :func:`oks` without the rest of the matrix, e.g. for top-down crops made from ground-truth boxes.

    ``gt_keypoints (N, K, 3)`` (or flat ``(N, 3K)``), ``gt_areas (N,)``, ``dt_keypoints (N, K, 3)``. Returns ``(N,)``;
    a person with no labelled keypoint gets 0.
    """
    gt = _keypoint_array("gt_keypoints", gt_keypoints, "N")
    dt = _keypoint_array("dt_keypoints", dt_keypoints, "N")
    areas = np.asarray(gt_areas, dtype=np.float64).reshape(-1)
    if not (gt.shape[0] == dt.shape[0] == areas.size):
        raise ValueError(f"need one ground truth per detection: {gt.shape[0]} people, {dt.shape[0]} detections, "
                         f"{areas.size} areas")
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if not (gt.shape[1] == dt.shape[1] == sig.size):
        raise ValueError(f"keypoint counts differ: gt {gt.shape[1]}, dt {dt.shape[1]}, sigmas {sig.size}")
    scale = (2 * sig) ** 2 * (areas[:, None] + np.spacing(1)) * 2  # (N, K), as in oks()
    labelled = gt[..., 2] > 0
    similarity = np.exp(-((dt[..., 0] - gt[..., 0]) ** 2 + (dt[..., 1] - gt[..., 1]) ** 2) / scale)
    return (similarity * labelled).sum(-1) / np.maximum(labelled.sum(-1), 1)


def pairwise_oks(poses, areas, sigmas=COCO_SIGMAS, *, min_keypoint_score: float | None = None) -> np.ndarray:
    """Symmetric OKS between predicted poses ``(N, K, 3)`` (third column: score) as used for OKS-NMS.

    Follows HRNet/MSPN's ``oks_iou``: the scale is the mean of the two poses' ``areas (N,)``, and every keypoint
    counts, or, with ``min_keypoint_score``, only keypoints scored above it in both poses. Returns ``(N, N)``.
    """
    p = _keypoint_array("poses", poses, "N")
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    a = np.asarray(areas, dtype=np.float64).reshape(-1)
    if a.size != p.shape[0]:
        raise ValueError(f"areas has {a.size} values for {p.shape[0]} poses")
    mean_area = (a[:, None] + a[None, :]) / 2 + np.spacing(1)  # (N, N)
    d2 = ((p[:, None, :, :2] - p[None, :, :, :2]) ** 2).sum(-1)  # (N, N, K)
    similarity = np.exp(-d2 / ((2 * sig) ** 2) / mean_area[..., None] / 2)
    if min_keypoint_score is None:
        return similarity.mean(-1)
    confident = p[..., 2] > min_keypoint_score
    both = confident[:, None, :] & confident[None, :, :]
    count = both.sum(-1)
    return np.where(count > 0, (similarity * both).sum(-1) / np.maximum(count, 1), 0.0)


def oks_nms(
    poses,
    scores,
    areas,
    threshold: float = 0.9,
    *,
    sigmas=COCO_SIGMAS,
    min_keypoint_score: float | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression by OKS (HRNet, MSPN): the indices of the poses kept.

    Poses ``(N, K, 3)`` are visited by decreasing ``scores (N,)``; each kept pose removes every remaining pose
    whose :func:`pairwise_oks` with it exceeds ``threshold``. ``areas (N,)`` are the poses' scales in pixels
    squared (usually their box area). Returns ``(M,)`` int64 indices into the input, highest score first.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        return np.zeros(0, dtype=np.int64)
    overlap = pairwise_oks(poses, areas, sigmas, min_keypoint_score=min_keypoint_score)
    if overlap.shape[0] != s.size:
        raise ValueError(f"scores has {s.size} values for {overlap.shape[0]} poses")
    order = np.argsort(-s, kind="stable")
    suppressed = np.zeros(s.size, dtype=bool)
    keep = []
    # the loop runs once per kept pose; each step is a vector operation over all poses
    for index in order:
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= overlap[index] > threshold
    return np.asarray(keep, dtype=np.int64)
