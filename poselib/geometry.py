"""Affine geometry shared by data transforms and decoders.

Coordinate convention (used everywhere in poselib): an image is a grid of pixels whose *centres* lie at integer
coordinates, so pixel ``(row r, column c)`` is the point ``(x=c, y=r)`` and the image spans ``[-0.5, W-0.5]``.
This is the convention of COCO keypoints and of ``cv2.warpAffine``. A heatmap at stride ``s`` has cell ``i``
covering input pixels ``s*i .. s*i+s-1``; its centre is at input coordinate ``s*i + (s-1)/2``
(see :func:`heatmap_to_image`).

Affine matrices are ``2x3`` arrays mapping ``(x, y, 1)`` column vectors.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def image_to_heatmap(xy: np.ndarray | torch.Tensor, stride: float):
    """Input-pixel coordinates to heatmap-cell coordinates: ``u = (x - (s-1)/2) / s``."""
    return (xy - (stride - 1) / 2.0) / stride


def heatmap_to_image(uv: np.ndarray | torch.Tensor, stride: float):
    """Heatmap-cell coordinates to input-pixel coordinates: ``x = s*u + (s-1)/2``."""
    return uv * stride + (stride - 1) / 2.0


def box_to_center_size(box_xywh, aspect_ratio: float = 0.75, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Expand a COCO ``[x, y, w, h]`` box to a given ``width/height`` aspect ratio, then pad it.

    Returns ``(center (2,), size (2,) as (w, h))`` in image pixels. The box is widened or heightened, never
    shrunk, so the person stays inside; ``padding`` multiplies both sides (1.25 is the Simple Baselines/MSPN
    choice).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    center = np.array([x + (w - 1) * 0.5, y + (h - 1) * 0.5], dtype=np.float64)
    w, h = max(w, 1.0), max(h, 1.0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w * padding, h * padding], dtype=np.float64)


def crop_affine(
    center, size, output_size: tuple[int, int], rotation_deg: float = 0.0, flip: bool = False
) -> np.ndarray:
    """The ``2x3`` matrix taking image coordinates into a crop.

    The region of ``size = (w, h)`` image pixels around ``center``, rotated by ``rotation_deg`` (counter-clockwise
    in the image as seen), maps onto an ``output_size = (out_w, out_h)`` crop; ``flip`` mirrors the crop
    horizontally. Pixel centres map to pixel centres: the region's edges map to the crop's edges
    ``-0.5`` and ``out - 0.5``.
    """
    out_w, out_h = output_size
    cx, cy = float(center[0]), float(center[1])
    sx, sy = out_w / float(size[0]), out_h / float(size[1])
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # translate centre to origin, rotate, scale, optionally mirror, translate to the crop centre
    rot = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    to_origin = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    scale = np.diag([sx * (-1.0 if flip else 1.0), sy, 1.0])
    to_crop = np.array([[1.0, 0.0, (out_w - 1) / 2.0], [0.0, 1.0, (out_h - 1) / 2.0], [0.0, 0.0, 1.0]])
    return (to_crop @ scale @ rot @ to_origin)[:2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``2x3`` affine matrix (also accepts a batch ``(N, 2, 3)``)."""
    m = np.asarray(matrix, dtype=np.float64)
    full = np.zeros(m.shape[:-2] + (3, 3))
    full[..., :2, :] = m
    full[..., 2, 2] = 1.0
    return np.linalg.inv(full)[..., :2, :]


def apply_affine(points, matrix):
    """Apply ``2x3`` matrices to points.

    ``points``: ``(..., P, 2)``; ``matrix``: ``(2, 3)`` or ``(..., 2, 3)`` broadcasting over the leading
    dimensions. Works on numpy arrays and torch tensors alike and returns the same type.
    """
    if isinstance(points, torch.Tensor):
        m = torch.as_tensor(matrix, dtype=points.dtype, device=points.device)
        return points @ m[..., :2].transpose(-1, -2) + m[..., 2].unsqueeze(-2)
    m = np.asarray(matrix, dtype=np.float64)
    return np.asarray(points) @ np.swapaxes(m[..., :2], -1, -2) + m[..., None, :, 2]
