"""Grouping keypoints into people with person boxes: the Pose Residual Network's inputs, targets and assignment,
and the paper's two naive baselines (Kocabas et al., ECCV 2018, section 3.4).

Keypoint candidates ("peaks") of one image are a ``(K, M, 3)`` tensor ``[x, y, score]`` per keypoint type, padded
with ``score <= 0``: detected peaks (:func:`peaks_from_heatmaps`), ground-truth keypoints
(:func:`peaks_from_keypoints`) or another method's detections. Boxes are COCO ``[x, y, w, h]`` in the same pixels.

For each box the peaks inside the box expanded by ``expand`` (0.21 of its size on each side, as the released code)
are drawn as one-hot cells of a ``grid`` (56 x 36 in the paper) and blurred with a Gaussian of ``input_sigma``
cells (1, replicate border), giving PRN's input ``X (B, K, H, W)`` (:func:`prn_inputs`). The cell of a point is
``int((x - int(bx)) * W / ceil(bw))``, clamped to the grid. The training target is the box's own person's
keypoints, one-hot, blurred with ``target_sigma`` 2 cells (zero border) (:func:`prn_targets`).

A grouping method maps ``X`` to ``Y`` of the same shape: PRN, **Max** (a Gaussian at each channel's maximum,
:func:`max_grouping`) or **UCR** (``Y = X * P`` with per-keypoint prior maps learned from ground truth,
:func:`ucr_prior`, :func:`ucr_grouping`). :func:`assign` then scores every (box, peak) pair of a keypoint type by
the sum of ``Y`` over a window (15 x 15 cells on the 56 x 36 grid) around the peak's cell times the peak's score,
and resolves the table greedily (best pair first, one peak per box and one box per peak, vectorised over all
keypoint types and people). Assigned keypoints keep their peak's coordinates; unassigned ones get ``Y``'s
maximum mapped back to the image with score 0, as the released evaluation does.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

EXPAND = 0.21
PAPER_GRID: tuple[int, int] = (56, 36)
PAPER_WINDOW = 15


def window_for_grid(grid: tuple[int, int]) -> int:
    """The assignment window for a grid: the paper's 15 cells scaled with the grid height, odd, at least 3."""
    size = max(3, int(round(PAPER_WINDOW * grid[0] / PAPER_GRID[0])))
    return size if size % 2 else size + 1


def gaussian_blur_grid(maps: Tensor, sigma: float, border: str) -> Tensor:
    """Separable Gaussian blur of ``(B, K, H, W)`` maps, truncated at 4 sigma, not renormalised (skimage's
    ``gaussian``); ``border`` is ``"nearest"`` (replicate) or ``"constant"`` (zeros)."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    b, k, h, w = maps.shape
    flat = maps.reshape(b * k, 1, h, w)
    mode = "replicate" if border == "nearest" else "constant"
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return flat.view(b, k, h, w)


def _as_boxes(boxes) -> Tensor:
    b = torch.as_tensor(boxes, dtype=torch.float32)
    if b.ndim != 2 or b.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (B, 4) [x, y, w, h], got {tuple(b.shape)}")
    return b


def _as_peaks(peaks) -> Tensor:
    p = torch.as_tensor(peaks, dtype=torch.float32)
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ValueError(f"peaks must have shape (K, M, 3) [x, y, score], got {tuple(p.shape)}")
    return p


def box_cells(points: Tensor, boxes: Tensor, grid: tuple[int, int], *, paired: bool = False) -> tuple[Tensor, Tensor]:
    """Grid cells of points in each box: ``points (..., 2)`` pixels, ``boxes (B, 4)``; returns long ``col, row``
    of shape ``(B, ...)`` clamped to the grid, as the released code maps them. ``paired``: ``points (B, ..., 2)``
    holds one set per box and the result has the points' shape."""
    height, width = grid
    shape = (boxes.shape[0],) + (1,) * (points.ndim - (2 if paired else 1))
    bx, by = boxes[:, 0].floor().view(shape), boxes[:, 1].floor().view(shape)
    bw, bh = boxes[:, 2].ceil().clamp(min=1).view(shape), boxes[:, 3].ceil().clamp(min=1).view(shape)
    col = ((points[..., 0] - bx) * width / bw).trunc().long().clamp(0, width - 1)
    row = ((points[..., 1] - by) * height / bh).trunc().long().clamp(0, height - 1)
    return col, row


def in_expanded_box(points: Tensor, boxes: Tensor, expand: float = EXPAND) -> Tensor:
    """``(B, ...)`` bool: the point lies strictly inside the box grown by ``expand`` of its size on each side."""
    shape = (boxes.shape[0],) + (1,) * (points.ndim - 1)
    x, y, w, h = (boxes[:, i].view(shape) for i in range(4))
    px, py = points[..., 0], points[..., 1]
    return (px > x - expand * w) & (px < x + (1 + expand) * w) & (py > y - expand * h) & (py < y + (1 + expand) * h)


def prn_inputs(
    peaks,
    boxes,
    grid: tuple[int, int] = PAPER_GRID,
    *,
    expand: float = EXPAND,
    sigma: float = 1.0,
    binary: bool = False,
    border: str = "nearest",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PRN inputs for every box of one image.

    Args:
        peaks: ``(K, M, 3)`` ``[x, y, score]`` keypoint candidates (``score <= 0``: padding).
        boxes: ``(B, 4)`` ``[x, y, w, h]`` person boxes, same pixels.
        grid: ``(H, W)`` cells of the box grid.
        binary: draw every peak as 1 (the training inputs) instead of its score.
        border: the blur's border mode, ``"nearest"`` (the released code) or ``"constant"``.

    Returns:
        ``X (B, K, H, W)``; ``col, row (B, K, M)`` long, each peak's cell in each box; ``inside (B, K, M)`` bool,
        the peak is valid and lies in the expanded box.
    """
    p, b = _as_peaks(peaks), _as_boxes(boxes)
    k, m = p.shape[:2]
    height, width = grid
    col, row = box_cells(p[..., :2], b, grid)
    inside = in_expanded_box(p[..., :2], b, expand) & (p[..., 2] > 0).unsqueeze(0)
    values = torch.ones_like(p[..., 2]) if binary else p[..., 2].clamp(min=0)
    x = torch.zeros(b.shape[0], k, height * width)
    flat = row * width + col
    # max over peaks falling into the same cell (scatter_reduce "amax" from zero keeps empty cells at 0)
    x.scatter_reduce_(2, flat, values.unsqueeze(0).expand_as(flat) * inside, reduce="amax")
    x = x.view(b.shape[0], k, height, width)
    return gaussian_blur_grid(x, sigma, border), col, row, inside


def prn_targets(keypoints, boxes, grid: tuple[int, int] = PAPER_GRID, *, sigma: float = 2.0) -> Tensor:
    """Training targets ``(B, K, H, W)``: box ``i``'s own labelled keypoints ``keypoints[i] (K, 3)``
    (``v > 0``), one-hot on the box grid (clamped), blurred by ``sigma`` cells with a zero border."""
    kp, b = torch.as_tensor(keypoints, dtype=torch.float32), _as_boxes(boxes)
    if kp.ndim != 3 or kp.shape[0] != b.shape[0] or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (B, K, 3) matching boxes {tuple(b.shape)}, got {tuple(kp.shape)}")
    height, width = grid
    n, k = kp.shape[:2]
    col, row = box_cells(kp[..., :2], b, grid, paired=True)  # (B, K)
    y = torch.zeros(n, k, height * width)
    y.scatter_(2, (row * width + col).unsqueeze(-1), (kp[..., 2] > 0).float().unsqueeze(-1))
    return gaussian_blur_grid(y.view(n, k, height, width), sigma, "constant")


def peaks_from_keypoints(keypoints, scores=None) -> Tensor:
    """Ground-truth (or any per-person) keypoints ``(P, K, 3)`` ``[x, y, v]`` as peaks ``(K, P, 3)`` with score 1
    for labelled keypoints (``v > 0``), or ``scores (P, K)`` when given."""
    kp = torch.as_tensor(keypoints, dtype=torch.float32)
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (P, K, 3), got {tuple(kp.shape)}")
    s = (kp[..., 2] > 0).float() if scores is None else torch.as_tensor(scores, dtype=torch.float32) * (kp[..., 2] > 0)
    return torch.cat([kp[..., :2], s.unsqueeze(-1)], -1).transpose(0, 1).contiguous()


def peaks_from_heatmaps(
    heatmaps: Tensor, stride: float, *, threshold: float = 0.1, max_peaks: int = 30, refine: bool = True
) -> Tensor:
    """Peaks ``(N, K, max_peaks, 3)`` of bottom-up maps ``(N, K, h, w)`` in input pixels (cell centre
    ``stride*i + (stride-1)/2``), found by :func:`poselib.codecs.decode.find_peaks`; ``refine`` moves each peak a
    quarter cell towards its higher neighbour (as top-down decoders do)."""
    from poselib.codecs.decode import find_peaks
    from poselib.geometry import heatmap_to_image

    coords, scores, valid = find_peaks(heatmaps, threshold=threshold, max_peaks=max_peaks)
    if refine:
        n, k, h, w = heatmaps.shape
        x, y = coords[..., 0].long(), coords[..., 1].long()
        flat = heatmaps.reshape(n, k, h * w)

        def at(dx: int, dy: int) -> Tensor:
            xx, yy = (x + dx).clamp(0, w - 1), (y + dy).clamp(0, h - 1)
            return flat.gather(2, yy * w + xx)

        coords = coords.clone()
        coords[..., 0] += 0.25 * torch.sign(at(1, 0) - at(-1, 0))
        coords[..., 1] += 0.25 * torch.sign(at(0, 1) - at(0, -1))
    xy = heatmap_to_image(coords, stride)
    return torch.cat([xy, (scores * valid).unsqueeze(-1)], -1)


def max_grouping(x: Tensor) -> Tensor:
    """The **Max** baseline: ``Y`` has a one-hot at each channel's maximum of ``X (B, K, H, W)`` (zero channels
    stay zero)."""
    flat = x.flatten(2)
    y = torch.zeros_like(flat)
    best = flat.argmax(-1, keepdim=True)
    y.scatter_(2, best, (flat.gather(2, best) > 0).to(x.dtype))
    return y.view_as(x)


def ucr_prior(targets: Iterable[Tensor]) -> Tensor:
    """**UCR** prior maps ``(K, H, W)``: the mean of ground-truth target maps (:func:`prn_targets`) over people,
    each channel scaled to maximum 1. ``targets`` yields ``(B, K, H, W)`` or ``(K, H, W)`` tensors."""
    total, count = None, 0
    for t in targets:
        t = t if t.ndim == 4 else t.unsqueeze(0)
        total = t.sum(0) if total is None else total + t.sum(0)
        count += t.shape[0]
    if total is None:
        raise ValueError("ucr_prior needs at least one target map")
    mean = total / count
    return mean / mean.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)


def ucr_grouping(x: Tensor, prior: Tensor) -> Tensor:
    """The **UCR** baseline (the paper's Eq. 2): ``Y_k = X_k * P_k``."""
    return x * prior.to(x)


def assign(
    y: Tensor, col: Tensor, row: Tensor, inside: Tensor, peak_scores: Tensor, window: int
) -> Tensor:
    """One peak per keypoint type per box: ``(B, K)`` long peak indices (``-1``: none).

    ``y (B, K, H, W)`` grouping output; ``col, row, inside (B, K, M)`` from :func:`prn_inputs`; ``peak_scores
    (K, M)``. The score of (box, peak) is ``y`` summed over the ``window x window`` cells around the peak's cell
    times the peak's score; pairs are taken best first, each box and each peak at most once per keypoint type.
    """
    b, k, h, w = y.shape
    m = col.shape[-1]
    assigned = torch.full((b, k), -1, dtype=torch.long, device=y.device)
    if b == 0 or m == 0:
        return assigned
    summed = F.avg_pool2d(y, window, stride=1, padding=window // 2, count_include_pad=True) * window * window
    score = summed.flatten(2).gather(2, row * w + col) * peak_scores.clamp(min=0).unsqueeze(0)
    score = torch.where(inside, score, torch.full_like(score, -1.0))
    table = score.permute(1, 0, 2).reshape(k, b * m)  # per keypoint type: boxes x peaks
    channels = torch.arange(k, device=y.device)
    for _ in range(min(b, m)):
        best, index = table.max(1)
        ok = best > 0
        if not ok.any():
            break
        box, peak = index // m, index % m
        assigned[box[ok], channels[ok]] = peak[ok]
        # the box and the peak are used up for this keypoint type
        view = table.view(k, b, m)
        view[channels[ok], box[ok], :] = -1.0
        view[channels[ok], :, peak[ok]] = -1.0
    return assigned


def grid_to_pixels(col: Tensor, row: Tensor, boxes: Tensor, grid: tuple[int, int]) -> Tensor:
    """Centres of grid cells ``(B, ...)`` back in pixels ``(B, ..., 2)`` (inverse of :func:`box_cells`)."""
    height, width = grid
    shape = (boxes.shape[0],) + (1,) * (col.ndim - 1)
    bx, by = boxes[:, 0].floor().view(shape), boxes[:, 1].floor().view(shape)
    bw, bh = boxes[:, 2].ceil().clamp(min=1).view(shape), boxes[:, 3].ceil().clamp(min=1).view(shape)
    return torch.stack([bx + (col.float() + 0.5) * bw / width, by + (row.float() + 0.5) * bh / height], -1)


GroupFn = Callable[[Tensor], Tensor]


def group(
    peaks,
    boxes,
    box_scores=None,
    grouping: GroupFn | torch.nn.Module = max_grouping,
    *,
    grid: tuple[int, int] = PAPER_GRID,
    window: int | None = None,
    expand: float = EXPAND,
) -> tuple[Tensor, Tensor]:
    """Poses of one image from peaks and boxes.

    ``grouping`` maps ``X (B, K, H, W)`` to ``Y``: a PRN (:class:`poselib.models.prn.PoseResidualNetwork`, run in
    eval mode on its device), :func:`max_grouping`, or ``functools.partial(ucr_grouping, prior=...)``.
    A PRN sees inputs exactly as in training (every peak drawn as 1 in the box grown by ``expand``, blurred with a
    replicate border). The baselines see the box itself cropped from the peaks' scores (no margin, zero border):
    a replicate border would make clamped peaks outside the box look strongest, which PRN learns to discount but
    Max would pick.
    Returns ``poses (B, K, 3)`` ``[x, y, score]`` (assigned peaks keep their coordinates and scores; the rest sit
    at ``Y``'s maximum with score 0) and ``scores (B,)``: box score times the mean keypoint score.
    """
    p, b = _as_peaks(peaks), _as_boxes(boxes)
    k = p.shape[0]
    nb = b.shape[0]
    s = torch.ones(nb) if box_scores is None else torch.as_tensor(box_scores, dtype=torch.float32).reshape(-1)
    if nb == 0:
        return torch.zeros(0, k, 3), torch.zeros(0)
    if p.shape[1] == 0:  # no candidates at all: one padding peak keeps the shapes regular
        p = torch.zeros(k, 1, 3)
    learned = isinstance(grouping, torch.nn.Module)
    x, col, row, inside = prn_inputs(p, b, grid, expand=expand if learned else 0.0, binary=learned,
                                     border="nearest" if learned else "constant")
    if learned:
        device = next(grouping.parameters()).device
        with torch.no_grad():
            y = grouping.eval()(x.to(device)).float().cpu()
    else:
        y = grouping(x)
    chosen = assign(y, col, row, inside, p[..., 2], window or window_for_grid(grid))
    height, width = grid
    best = y.flatten(2).argmax(-1)
    fallback = grid_to_pixels(best % width, best // width, b, grid)  # (B, K, 2)
    has = chosen >= 0
    index = chosen.clamp(min=0)
    picked = p[torch.arange(k).unsqueeze(0).expand(nb, k), index]  # (B, K, 3)
    xy = torch.where(has.unsqueeze(-1), picked[..., :2], fallback)
    kp_scores = torch.where(has, picked[..., 2], torch.zeros_like(picked[..., 2]))
    poses = torch.cat([xy, kp_scores.unsqueeze(-1)], -1)
    return poses, s * kp_scores.mean(-1)


class PRNSamples(Dataset):
    """PRN training samples from annotations only (no images): one per person with at least ``min_keypoints``
    labelled keypoints, input ``x (K, H, W)`` drawn from the labelled keypoints of *every* person of the image
    inside the person's expanded ground-truth box (the others are the distractors), target ``y (K, H, W)`` from
    the person's own.

    ``curriculum=True`` orders the samples from easy to hard (most labelled keypoints first, then largest box,
    section 3.5); train them without shuffling to keep that order within each epoch.
    """

    def __init__(
        self,
        people_by_image: dict[int, list[dict]],
        grid: tuple[int, int] = PAPER_GRID,
        *,
        min_keypoints: int = 2,
        curriculum: bool = True,
        expand: float = EXPAND,
    ):
        self.grid, self.expand = tuple(grid), expand
        self.images: dict[int, np.ndarray] = {}
        self.boxes: dict[int, np.ndarray] = {}
        items = []
        for image_id, anns in people_by_image.items():
            if not anns:
                continue
            kps = np.stack([np.asarray(a.get("keypoints") or [0] * 51, dtype=np.float32).reshape(-1, 3) for a in anns])
            self.images[image_id] = kps
            self.boxes[image_id] = np.asarray([a["bbox"] for a in anns], dtype=np.float32)
            for i, a in enumerate(anns):
                labelled = int((kps[i, :, 2] > 0).sum())
                if labelled >= min_keypoints and a["bbox"][2] > 0 and a["bbox"][3] > 0:
                    items.append((image_id, i, labelled, float(a["bbox"][2] * a["bbox"][3])))
        if curriculum:
            items.sort(key=lambda t: (-t[2], -t[3], t[0], t[1]))
        self.items = [(image_id, i) for image_id, i, _, _ in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        image_id, i = self.items[index]
        kps, box = self.images[image_id], self.boxes[image_id][i : i + 1]
        x, _, _, _ = prn_inputs(peaks_from_keypoints(kps), box, self.grid, expand=self.expand, binary=True)
        y = prn_targets(kps[i : i + 1], box, self.grid)
        return {"x": x[0], "y": y[0]}


__all__ = [
    "EXPAND",
    "PAPER_GRID",
    "PRNSamples",
    "assign",
    "box_cells",
    "gaussian_blur_grid",
    "grid_to_pixels",
    "group",
    "in_expanded_box",
    "max_grouping",
    "peaks_from_heatmaps",
    "peaks_from_keypoints",
    "prn_inputs",
    "prn_targets",
    "ucr_grouping",
    "ucr_prior",
    "window_for_grid",
]
