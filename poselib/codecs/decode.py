"""Heatmap decoders: from ``(N, K, h, w)`` maps to keypoint coordinates, plus flip testing, post-blur and peak
finding for bottom-up maps.

Every decoder returns ``coords (N, K, 2)`` as ``(x, y)`` in heatmap cells (cell ``i`` is centred on input
coordinate ``s*i + (s-1)/2``, see :mod:`poselib.codecs.heatmap`) and ``scores (N, K)``, the map's maximum.
:func:`heatmap_coords_to_image` takes the coordinates back to image pixels. Inputs may be numpy arrays; outputs
are torch tensors on the input's device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from poselib.codecs.heatmap import _to_tensor, gaussian_kernel_1d
from poselib.geometry import apply_affine, heatmap_to_image
from poselib.keypoints import FLIP_INDEX

Tensor = torch.Tensor


def _check_maps(heatmaps) -> Tensor:
    hm = _to_tensor(heatmaps)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, h, w), got {tuple(hm.shape)}")
    if hm.shape[-1] < 1 or hm.shape[-2] < 1:
        raise ValueError(f"heatmaps are empty: shape {tuple(hm.shape)}")
    return hm


def _gather(hm: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``hm[n, k, y[n, k], x[n, k]]`` for integer ``x, y`` of shape ``(N, K)`` or ``(N, K, M)``; indices are
    clamped to the map so callers can ask for neighbours at the border and mask them afterwards."""
    h, w = hm.shape[-2:]
    flat_index = y.long().clamp(0, h - 1) * w + x.long().clamp(0, w - 1)
    flat = hm.flatten(-2)
    if flat_index.ndim == 2:
        return flat.gather(-1, flat_index.unsqueeze(-1)).squeeze(-1)
    return flat.gather(-1, flat_index)


def _argmax_xy(hm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Integer ``x, y`` (as float) and value of each map's maximum (the first one in raster order on ties)."""
    w = hm.shape[-1]
    scores, index = hm.flatten(-2).max(-1)
    return (index % w).to(hm.dtype), torch.div(index, w, rounding_mode="floor").to(hm.dtype), scores


def decode_argmax(heatmaps) -> tuple[Tensor, Tensor]:
    """The cell of each map's maximum. Error up to half a cell per axis (``stride/2`` input pixels)."""
    hm = _check_maps(heatmaps)
    x, y, scores = _argmax_xy(hm)
    return torch.stack([x, y], -1), scores


def decode_quarter_offset(
    heatmaps, mode: str = "neighbour", *, step: float = 0.25, suppress: int = 1
) -> tuple[Tensor, Tensor]:
    """The argmax moved a quarter cell towards where the true peak probably lies.

    ``mode="neighbour"`` (Simple Baselines, HRNet): in x and in y independently, ``step`` cells towards the
    higher of the two neighbours (``sign`` of their difference); no move on an axis at the map's border or on
    a tie. ``mode="second_max"`` (MSPN's test code): ``step`` cells along the unit vector towards the highest
    location outside a ``suppress x suppress`` window around the maximum. MSPN suppresses just the peak
    (``suppress=1``), so the second maximum is usually an adjacent cell and the move is a quarter of the way
    there; the result is clamped to the map as MSPN does. MSPN blurs the maps first (21x21 at 64x48); compose
    with :func:`gaussian_blur` for that.
    """
    hm = _check_maps(heatmaps)
    h, w = hm.shape[-2:]
    x, y, scores = _argmax_xy(hm)
    if mode == "neighbour":
        dx = torch.sign(_gather(hm, x + 1, y) - _gather(hm, x - 1, y)) * ((x > 0) & (x < w - 1))
        dy = torch.sign(_gather(hm, x, y + 1) - _gather(hm, x, y - 1)) * ((y > 0) & (y < h - 1))
        return torch.stack([x + step * dx, y + step * dy], -1), scores
    if mode != "second_max":
        raise ValueError(f"mode must be 'neighbour' or 'second_max', got {mode!r}")
    if suppress < 1 or suppress % 2 == 0:
        raise ValueError(f"suppress must be a positive odd window size, got {suppress}")
    radius = (suppress - 1) // 2
    xs = torch.arange(w, dtype=hm.dtype, device=hm.device)
    ys = torch.arange(h, dtype=hm.dtype, device=hm.device)
    near_x = (xs - x.unsqueeze(-1)).abs() <= radius  # (N, K, w)
    near_y = (ys - y.unsqueeze(-1)).abs() <= radius  # (N, K, h)
    window = near_y.unsqueeze(-1) & near_x.unsqueeze(-2)
    x2, y2, _ = _argmax_xy(hm.masked_fill(window, float("-inf")))
    direction = torch.stack([x2 - x, y2 - y], -1)
    length = direction.norm(dim=-1, keepdim=True)
    moved = torch.where(length > 1e-3, step * direction / length.clamp_min(1e-3), torch.zeros_like(direction))
    coords = torch.stack([x, y], -1) + moved
    coords = torch.stack([coords[..., 0].clamp(0, w - 1), coords[..., 1].clamp(0, h - 1)], -1)
    return coords, scores


def decode_top2_average(heatmaps) -> tuple[Tensor, Tensor]:
    """Score-weighted average of the two highest cells (MSA R-CNN).

    Negative values carry no weight; a map whose top two values are both ``<= 0`` decodes to its argmax.
    The score is the maximum.
    """
    hm = _check_maps(heatmaps)
    w = hm.shape[-1]
    if hm.shape[-1] * hm.shape[-2] < 2:
        return decode_argmax(hm)
    values, index = hm.flatten(-2).topk(2, dim=-1)
    xy = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], -1).to(hm.dtype)  # (N, K, 2, 2)
    weight = values.clamp_min(0)
    total = weight.sum(-1, keepdim=True)
    averaged = (weight.unsqueeze(-1) * xy).sum(-2) / total.clamp_min(1e-12)
    x, y, _ = _argmax_xy(hm)
    return torch.where(total > 0, averaged, torch.stack([x, y], -1)), values[..., 0]


def decode_taylor(heatmaps, *, blur_kernel: int | None = None, eps: float = 1e-10) -> tuple[Tensor, Tensor]:
    """DARK's second-order refinement: Newton step ``-H^-1 g`` on the log-heatmap at the argmax.

    The log of a Gaussian is a quadratic, so on an undistorted Gaussian target this recovers the sub-cell
    centre exactly. Derivatives use DARK's finite differences (``±1`` for the gradient, ``±2`` for the
    Hessian), so the step is taken only at least two cells from the border and where the Hessian is that of
    a maximum; elsewhere the argmax stands. ``blur_kernel`` applies DARK's distribution modulation
    (:func:`gaussian_blur`) first; the score is the un-blurred maximum either way.
    """
    hm = _check_maps(heatmaps)
    h, w = hm.shape[-2:]
    x, y, scores = _argmax_xy(hm)
    smooth = gaussian_blur(hm, blur_kernel) if blur_kernel else hm
    if blur_kernel:
        x, y, _ = _argmax_xy(smooth)
    log = smooth.clamp_min(eps).log()

    def at(dx: int, dy: int) -> Tensor:
        return _gather(log, x + dx, y + dy)

    centre = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    interior = (x >= 2) & (x <= w - 3) & (y >= 2) & (y <= h - 3)
    valid = interior & (det > eps) & (hxx < 0)
    safe_det = torch.where(valid, det, torch.ones_like(det))
    offset_x = -(hyy * gx - hxy * gy) / safe_det
    offset_y = -(hxx * gy - hxy * gx) / safe_det
    # a step beyond the neighbouring cell means the quadratic model does not describe this peak (noise)
    offset = torch.stack([offset_x, offset_y], -1).clamp(-1.0, 1.0) * valid.unsqueeze(-1)
    return torch.stack([x, y], -1) + offset, scores


#: Decoders by name, for benchmarks, CLIs and notebook tables.
DECODERS: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "argmax": decode_argmax,
    "quarter_offset": decode_quarter_offset,
    "quarter_second_max": lambda hm: decode_quarter_offset(hm, mode="second_max"),
    "top2_average": decode_top2_average,
    "taylor": decode_taylor,
}


def flip_back(
    heatmaps_of_flipped_input, flip_index: Sequence[int] = FLIP_INDEX, shift: bool = False
) -> Tensor:
    """Maps predicted on a horizontally mirrored input, brought back to the original's frame.

    ``(N, K, h, w) -> (N, K, h, w)``: mirror each map and swap left/right channels (``out[:, k]`` is the
    mirrored ``in[:, flip_index[k]]``). Under poselib's convention mirroring the input (``x -> W-1-x`` with
    ``W = s*w``) maps cell ``u`` to ``w-1-u`` exactly, so no shift is needed. ``shift=True`` reproduces Simple
    Baselines' one-cell shift to the right (``out[..., 1:] = out[..., :-1]``), which compensates for the
    half-pixel bias of that code's own coordinate convention; it biases poselib's maps by one cell.
    """
    hm = _check_maps(heatmaps_of_flipped_input)
    index = torch.as_tensor(list(flip_index), dtype=torch.long, device=hm.device)
    if index.numel() != hm.shape[1]:
        raise ValueError(f"flip_index has {index.numel()} entries but heatmaps have {hm.shape[1]} channels")
    out = hm.flip(-1).index_select(1, index)
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], -1)
    return out


def flip_average(
    heatmaps, heatmaps_of_flipped_input, flip_index: Sequence[int] = FLIP_INDEX, shift: bool = False
) -> Tensor:
    """Flip test: the mean of the maps and the flipped-back maps of the mirrored input, ``(N, K, h, w)``."""
    hm = _check_maps(heatmaps)
    return 0.5 * (hm + flip_back(heatmaps_of_flipped_input, flip_index, shift))


def gaussian_blur(heatmaps, kernel_size: int, sigma: float = 0.0) -> Tensor:
    """Post-Gaussian blur of each map (MSPN, DARK): ``(N, K, h, w) -> (N, K, h, w)``.

    A separable depthwise convolution with OpenCV's kernel for ``kernel_size`` (``sigma <= 0``: OpenCV's
    default sigma for that size), zero beyond the border as in MSPN (which pads the maps with zeros before
    blurring). Each map is then rescaled so that its maximum equals its maximum before blurring, keeping the
    maxima usable as confidence scores.
    """
    hm = _check_maps(heatmaps)
    n, k, h, w = hm.shape
    kernel = gaussian_kernel_1d(kernel_size, sigma, device=hm.device, dtype=hm.dtype)
    radius = (kernel_size - 1) // 2
    flat = hm.reshape(n * k, 1, h, w)
    blurred = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, radius))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(radius, 0)).view(n, k, h, w)
    before = hm.amax((-2, -1), keepdim=True)
    after = blurred.amax((-2, -1), keepdim=True)
    scale = torch.where(after > 1e-12, before / after.clamp_min(1e-12), torch.ones_like(after))
    return blurred * scale


def find_peaks(
    heatmaps, threshold: float = 0.1, kernel: int = 3, max_peaks: int = 30
) -> tuple[Tensor, Tensor, Tensor]:
    """Local maxima of bottom-up maps by max-pool NMS.

    A cell is a peak when it equals the maximum of its ``kernel x kernel`` neighbourhood and exceeds
    ``threshold``; its lower neighbours therefore never are. (Cells of an exactly flat top are all peaks.)

    Returns, padded to ``max_peaks`` per map and sorted by score (highest first):
    ``coords (N, K, max_peaks, 2)`` ``(x, y)`` in cells, ``scores (N, K, max_peaks)`` and
    ``valid (N, K, max_peaks)`` bool; padding entries have zero coords and scores.
    """
    hm = _check_maps(heatmaps)
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be a positive odd size, got {kernel}")
    if max_peaks < 1:
        raise ValueError(f"max_peaks must be positive, got {max_peaks}")
    n, k, h, w = hm.shape
    pooled = F.max_pool2d(hm.reshape(n * k, 1, h, w), kernel, stride=1, padding=kernel // 2).view(n, k, h, w)
    is_peak = (hm == pooled) & (hm > threshold)
    candidates = hm.masked_fill(~is_peak, float("-inf")).flatten(-2)
    take = min(max_peaks, h * w)
    scores, index = candidates.topk(take, dim=-1)
    valid = torch.isfinite(scores)
    coords = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], -1).to(hm.dtype)
    coords = coords * valid.unsqueeze(-1)
    scores = torch.where(valid, scores, torch.zeros_like(scores))
    if take < max_peaks:
        pad = max_peaks - take
        coords = F.pad(coords, (0, 0, 0, pad))
        scores = F.pad(scores, (0, pad))
        valid = F.pad(valid, (0, pad))
    return coords, scores, valid


def heatmap_coords_to_image(coords, stride: float, crop_to_image=None):
    """Heatmap cells ``(N, K, 2)`` to image pixels ``(N, K, 2)``.

    Cells go to crop (network input) pixels by the stride convention (:func:`poselib.geometry.heatmap_to_image`),
    then through ``crop_to_image``: ``(N, 2, 3)`` or ``(2, 3)`` affine matrices (the inverse of the crop matrix,
    :func:`poselib.geometry.invert_affine`), or ``None`` for crop pixels. Keeps the input type (tensor or array).
    """
    xy = heatmap_to_image(coords if isinstance(coords, (Tensor, np.ndarray)) else np.asarray(coords), stride)
    if crop_to_image is None:
        return xy
    return apply_affine(xy, crop_to_image)
