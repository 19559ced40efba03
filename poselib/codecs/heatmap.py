"""Heatmap targets: Gaussian keypoint maps at one or several resolutions, and masks at heatmap resolution.

Stride convention (:mod:`poselib.geometry`): a heatmap at stride ``s`` has cell ``i`` covering input pixels
``s*i .. s*i+s-1``, so cell ``i`` is centred on input coordinate ``s*i + (s-1)/2``. A keypoint at input ``x``
therefore sits at cell coordinate ``u = (x - (s-1)/2) / s`` (:func:`poselib.geometry.image_to_heatmap`), and a
keypoint at ``x = s*i + (s-1)/2`` peaks exactly on cell ``i``. Gaussian targets are centred on the exact
sub-cell ``u`` (no rounding); MSPN-style kernel targets, like MSPN's, start from an impulse on the nearest cell.

All functions take torch tensors (CPU or CUDA) or numpy arrays and return float32 tensors (on the input's
device, or ``device`` when given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from poselib.geometry import image_to_heatmap

Tensor = torch.Tensor


def _to_tensor(x, device: torch.device | str | None = None) -> Tensor:
    """A float tensor view of ``x`` (float32 unless it already is a floating tensor)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))
    if not t.is_floating_point():
        t = t.float()
    return t if device is None else t.to(device)


def gaussian_sigma_from_kernel(kernel_size: int) -> float:
    """OpenCV's Gaussian sigma for a kernel size when none is given: ``0.3*((k-1)/2 - 1) + 0.8``.

    MSPN and RSN specify their targets by blur kernel size (7, 9, 11, 15); this is the sigma, in heatmap
    cells, that size implies.
    """
    _check_kernel_size(kernel_size)
    return 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8


def _check_kernel_size(kernel_size: int) -> None:
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")


def gaussian_kernel_1d(kernel_size: int, sigma: float = 0.0, *, device=None, dtype=torch.float32) -> Tensor:
    """The 1-D Gaussian kernel ``cv2.GaussianBlur`` uses, ``(kernel_size,)`` summing to 1.

    ``sigma <= 0`` picks OpenCV's default for the size (including its fixed tables for small sizes), so blurs
    built from this kernel match ``cv2.GaussianBlur(x, (k, k), 0)``.
    """
    _check_kernel_size(kernel_size)
    kernel = cv2.getGaussianKernel(int(kernel_size), float(sigma), ktype=cv2.CV_64F).ravel()
    return torch.as_tensor(kernel, dtype=dtype, device=device)


def _blurred_impulse_1d(centre: np.ndarray, length: int, kernel: np.ndarray) -> np.ndarray:
    """Profile of ``cv2.GaussianBlur`` applied to a unit impulse at integer ``centre`` on ``0..length-1``.

    ``centre``: ``(...,)`` integer-valued; returns ``(..., length)``. OpenCV's default border is
    ``BORDER_REFLECT_101``, so an impulse near an edge also receives the kernel's mass from its mirror images
    ``-c`` and ``2(length-1) - c`` (one reflection suffices while the kernel radius is below ``length``).
    """
    radius = (kernel.size - 1) // 2
    if radius >= length:
        raise ValueError(f"blur kernel of size {kernel.size} is too large for a heatmap side of {length}")
    positions = np.arange(length)

    def tap(mirror: np.ndarray) -> np.ndarray:
        offset = (positions - mirror[..., None]).astype(np.int64) + radius
        inside = (offset >= 0) & (offset < kernel.size)
        return np.where(inside, kernel[np.clip(offset, 0, kernel.size - 1)], 0.0)

    last = length - 1
    profile = tap(centre) + tap(-centre) * (centre > 0)[..., None]
    return profile + tap(2 * last - centre) * (centre < last)[..., None]


def _keypoint_array(keypoints) -> np.ndarray:
    """``keypoints`` as a float32 numpy array ``(N, K, 3)`` (a CPU copy of a device tensor)."""
    if isinstance(keypoints, Tensor):
        keypoints = keypoints.detach().cpu().numpy()
    kpts = np.asarray(keypoints, dtype=np.float32)
    if kpts.ndim != 3 or kpts.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (N, K, 3), got {tuple(kpts.shape)}")
    return kpts


def _output_device(keypoints, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return keypoints.device if isinstance(keypoints, Tensor) else torch.device("cpu")


def _sigma_levels(sigmas: Sequence, num_keypoints: int) -> np.ndarray:
    """``sigmas`` (``L`` entries, each one value or one per keypoint) as ``(L, K)`` float32, all positive."""
    rows = []
    for sigma in sigmas:
        row = np.asarray(sigma.detach().cpu() if isinstance(sigma, Tensor) else sigma, dtype=np.float32).reshape(-1)
        if row.size == 1:
            row = np.repeat(row, num_keypoints)
        if row.size != num_keypoints:
            raise ValueError(f"sigma has {row.size} values but keypoints have {num_keypoints} channels")
        if (row <= 0).any():
            raise ValueError(f"sigma must be positive, got {row.tolist()}")
        rows.append(row)
    if not rows:
        raise ValueError("need at least one sigma")
    return np.stack(rows)


def _cell_coordinates(kpts: np.ndarray, heatmap_size: tuple[int, int], stride: float):
    """Sub-cell coordinates ``u, v (N, K)`` and weights ``(N, K)``: 1 for a labelled keypoint inside the map."""
    h, w = heatmap_size
    uv = image_to_heatmap(kpts[..., :2], stride)
    u, v = uv[..., 0], uv[..., 1]
    inside = (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
    return u, v, ((kpts[..., 2] > 0) & inside).astype(np.float32)


def _check_size(heatmap_size: tuple[int, int], stride: float) -> tuple[int, int]:
    h, w = (int(v) for v in heatmap_size)
    if h < 1 or w < 1 or stride <= 0:
        raise ValueError(f"need a positive heatmap_size and stride, got {heatmap_size} and {stride}")
    return h, w


def encode_gaussian_levels(
    keypoints,
    heatmap_size: tuple[int, int],
    stride: float,
    sigmas: Sequence,
    *,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Gaussian heatmap targets of the same keypoints at several widths on one grid, in one pass.

    ``keypoints``, ``heatmap_size`` and ``stride`` as in :func:`encode_heatmaps`; ``sigmas``: ``L`` standard
    deviations in heatmap cells, each one value or one per keypoint ``(K,)``. Returns ``heatmaps (N, L, K, h, w)``,
    level ``l`` being :func:`encode_heatmaps` with ``sigmas[l]``, and ``weights (N, K)`` as there.

    Computed in numpy on the CPU, whatever the input: a training sample's few small maps cost far less there than
    in torch, whose per-operation overhead dominates at this size (``poselib bench encode``). A device tensor
    input is copied over and the result returned on its device.
    """
    out_device = _output_device(keypoints, device)
    kpts = _keypoint_array(keypoints)
    h, w = _check_size(heatmap_size, stride)
    two_var = 2.0 * np.square(_sigma_levels(sigmas, kpts.shape[1]))[None, :, :, None]  # (1, L, K, 1)
    u, v, weights = _cell_coordinates(kpts, (h, w), stride)
    gx = np.exp(-np.square(np.arange(w, dtype=np.float32) - u[:, None, :, None]) / two_var)  # (N, L, K, w)
    gy = np.exp(-np.square(np.arange(h, dtype=np.float32) - v[:, None, :, None]) / two_var)  # (N, L, K, h)
    heatmaps = gy[..., :, None] * (gx * weights[:, None, :, None])[..., None, :]
    return (torch.from_numpy(heatmaps.astype(np.float32, copy=False)).to(out_device),
            torch.from_numpy(weights).to(out_device))


def encode_heatmaps(
    keypoints,
    heatmap_size: tuple[int, int],
    stride: float,
    sigma: float | Tensor | Sequence[float] = 2.0,
    *,
    kernel_size: int | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Gaussian heatmap targets for single-person crops.

    Args:
        keypoints: ``(N, K, 3)`` ``[x, y, v]`` in input (crop) pixels.
        heatmap_size: ``(h, w)`` in cells.
        stride: input pixels per heatmap cell.
        sigma: Gaussian standard deviation in heatmap cells, one value or one per keypoint ``(K,)``.
        kernel_size: if given, the MSPN-style target instead: a unit impulse on the nearest cell blurred with
            ``cv2.GaussianBlur(·, (k, k), 0)`` and rescaled to peak 1 (``sigma`` is then ignored).

    Returns:
        ``heatmaps (N, K, h, w)``: unnormalised ``exp(-d^2 / (2 sigma^2))`` with ``d`` the distance in cells to
        the keypoint's exact sub-cell position (peak 1 when it falls on a cell centre); and
        ``weights (N, K)``: 1 for a labelled keypoint (``v > 0``) inside the map, else 0 with an all-zero map.
        "Inside" means within the area the cells cover, cell coordinates ``[-0.5, w - 0.5)``.
    """
    if kernel_size is None:
        heatmaps, weights = encode_gaussian_levels(keypoints, heatmap_size, stride, [sigma], device=device)
        return heatmaps[:, 0], weights
    out_device = _output_device(keypoints, device)
    kpts = _keypoint_array(keypoints)
    h, w = _check_size(heatmap_size, stride)
    u, v, weights = _cell_coordinates(kpts, (h, w), stride)
    _check_kernel_size(kernel_size)
    kernel = cv2.getGaussianKernel(int(kernel_size), 0.0, ktype=cv2.CV_64F).ravel()
    # floor(u + 0.5) rather than round(): rounding halves to even would depend on parity
    gx = _blurred_impulse_1d(np.clip(np.floor(u + 0.5), 0, w - 1), w, kernel)
    gy = _blurred_impulse_1d(np.clip(np.floor(v + 0.5), 0, h - 1), h, kernel)
    # the 2-D peak is the product of the 1-D peaks, so normalising each gives a peak of exactly 1
    gx = gx / gx.max(-1, keepdims=True)
    gy = gy / gy.max(-1, keepdims=True)
    heatmaps = (gy[..., :, None] * (gx * weights[..., None])[..., None, :]).astype(np.float32)
    return torch.from_numpy(heatmaps).to(out_device), torch.from_numpy(weights).to(out_device)


def encode_multi_person(
    keypoints,
    heatmap_size: tuple[int, int],
    stride: float,
    sigma: float | Tensor | Sequence[float] = 2.0,
    *,
    kernel_size: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """One heatmap per keypoint type for all people in an image (bottom-up targets).

    ``keypoints``: ``(P, K, 3)`` in input pixels (``P`` may be 0). Returns ``(K, h, w)``, the pixel-wise maximum
    over people of :func:`encode_heatmaps`' maps, so nearby people keep separate peaks instead of summing.
    """
    out_device = _output_device(keypoints, device)
    kpts = _keypoint_array(keypoints)
    h, w = _check_size(heatmap_size, stride)
    if kpts.shape[0] == 0:
        return torch.zeros((kpts.shape[1], h, w), device=out_device)
    heatmaps, _ = encode_heatmaps(kpts, heatmap_size, stride, sigma, kernel_size=kernel_size)
    return heatmaps.amax(0).to(out_device)


class HeatmapSpec(NamedTuple):
    """One output resolution: ``heatmap_size (h, w)``, ``stride``, and either ``sigma`` or ``kernel_size``."""

    heatmap_size: tuple[int, int]
    stride: float
    sigma: float | Tensor | Sequence[float] = 2.0
    kernel_size: int | None = None


def encode_multi_resolution(
    keypoints, specs: Sequence[HeatmapSpec | tuple], *, device: torch.device | str | None = None
) -> list[tuple[Tensor, Tensor]]:
    """The same keypoints encoded at several resolutions (multi-stage or multi-scale supervision).

    ``specs``: :class:`HeatmapSpec` or plain tuples ``(heatmap_size, stride[, sigma[, kernel_size]])``.
    Returns one ``(heatmaps (N, K, h_i, w_i), weights (N, K))`` pair per spec, in order.
    """
    out_device = _output_device(keypoints, device)
    kpts = _keypoint_array(keypoints)  # converted once for all specs
    out = []
    for spec in specs:
        spec = spec if isinstance(spec, HeatmapSpec) else HeatmapSpec(*spec)
        out.append(encode_heatmaps(kpts, spec.heatmap_size, spec.stride, spec.sigma, kernel_size=spec.kernel_size,
                                   device=out_device))
    return out


def resize_mask(
    mask, stride: int, mode: str = "area", *, output_size: tuple[int, int] | None = None
) -> Tensor:
    """A pixel mask ``(H, W)`` or ``(N, H, W)`` at heatmap resolution ``(h, w)`` or ``(N, h, w)``.

    Cell ``i`` summarises input pixels ``s*i .. s*i+s-1`` (the geometry convention); ``output_size`` defaults to
    ``(ceil(H/s), ceil(W/s))`` and pixels beyond the image count as absent.

    ``mode="area"``: the fraction of the cell's in-image pixels that are set (values in ``[0, 1]``); use it for
    person segmentation, where a cell half covered by a person should be half a person.
    ``mode="max"``: 1 if any pixel of the cell is set; use it for *ignore* masks (unlabelled people, crowds),
    so that a cell touching an unlabelled person is never trained as background. For a keep-mask (1 = use)
    pass ``1 - keep`` and invert the result.
    """
    m = _to_tensor(mask)
    if m.ndim not in (2, 3):
        raise ValueError(f"mask must have shape (H, W) or (N, H, W), got {tuple(m.shape)}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    if mode not in ("area", "max"):
        raise ValueError(f"mode must be 'area' or 'max', got {mode!r}")
    stride = int(stride)
    squeeze = m.ndim == 2
    m = m.unsqueeze(0) if squeeze else m
    height, width = m.shape[-2:]
    h, w = output_size if output_size is not None else (math.ceil(height / stride), math.ceil(width / stride))
    # pad (or crop) to exactly h*s by w*s input pixels; padded pixels are outside the image
    pad_h, pad_w = h * stride - height, w * stride - width
    grid = F.pad(m, (0, pad_w, 0, pad_h)).unsqueeze(1)
    if mode == "max":
        out = F.max_pool2d(grid, stride)
    else:
        inside = F.pad(torch.ones_like(m[:1]), (0, pad_w, 0, pad_h)).unsqueeze(1)
        total = F.avg_pool2d(grid, stride)
        count = F.avg_pool2d(inside, stride)
        out = torch.where(count > 0, total / count.clamp_min(1e-12), torch.zeros_like(total))
    out = out.squeeze(1)
    return out.squeeze(0) if squeeze else out
