"""Affine augmentation applied identically to images, keypoints and masks.

A sample is cut out of its image by one ``2x3`` matrix built with :func:`poselib.geometry.crop_affine` from a
region (``center``, ``size = (w, h)`` in image pixels) and the random choices of :func:`sample_augmentation`
(scale, rotation, horizontal flip, translation, half-body). The same matrix then warps the image
(:func:`warp_image`), the keypoints (:func:`warp_keypoints`) and the masks (:func:`warp_mask`), so they stay in
register; :func:`poselib.geometry.invert_affine` maps predictions back.

The defaults of :class:`AugmentConfig` are those of Simple Baselines and MSPN for top-down training.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from poselib.geometry import apply_affine, crop_affine
from poselib.keypoints import FLIP_INDEX, LOWER_BODY, UPPER_BODY

_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
_MAX_CHANNELS = 128  # OpenCV 5 rejects arrays of more channels than this in warpAffine, so wider ones go in chunks


@dataclass(frozen=True)
class AugmentConfig:
    """Random affine augmentation.

    ``scale`` multiplies the size of the region cut from the image, so a scale above 1 shows more context and a
    smaller person. It is drawn as ``1 + scale_std * N(0, 1)`` clipped to ``scale_range`` (Simple Baselines'
    scale factor 0.35 gives ``[0.65, 1.35]``), or uniformly over ``scale_range`` when ``scale_std`` is None.
    With probability ``rotation_prob`` the region turns by ``rotation_std * N(0, 1)`` degrees clipped to
    ``±rotation_limit`` (two standard deviations), or uniformly within ``±rotation_limit`` when ``rotation_std``
    is None. ``flip_prob`` mirrors horizontally. ``translate`` shifts the region's centre by up to that
    fraction of its size along each axis. With probability ``half_body_prob``, a person with more than
    ``half_body_min_keypoints`` labelled keypoints is cropped to its upper or lower body (:func:`half_body_box`).
    """

    scale_range: tuple[float, float] = (0.65, 1.35)
    scale_std: float | None = 0.35
    rotation_limit: float = 90.0
    rotation_std: float | None = 45.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 8
    translate: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        for name in ("rotation_prob", "flip_prob", "half_body_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.rotation_limit < 0 or self.translate < 0:
            raise ValueError("rotation_limit and translate must be non-negative")

    @classmethod
    def bottom_up(cls) -> AugmentConfig:
        """The whole-image augmentation of bottom-up methods (HigherHRNet / associative embedding): uniform scale
        in ``[0.75, 1.5]``, uniform rotation within ±30°, flip 0.5, translation up to 40 px of 512, no
        half-body."""
        return cls(
            scale_range=(0.75, 1.5),
            scale_std=None,
            rotation_limit=30.0,
            rotation_std=None,
            rotation_prob=1.0,
            flip_prob=0.5,
            half_body_prob=0.0,
            translate=40.0 / 512.0,
        )


def sample_augmentation(rng: np.random.Generator, config: AugmentConfig) -> dict:
    """Draw one set of augmentation choices.

    Returns ``{"scale": float, "rotation": float (degrees, counter-clockwise), "flip": bool,
    "half_body": bool, "translate": ndarray (2,) (fractions of the region size)}``. The generator always
    advances by the same amount, whatever the choices, so later draws do not depend on them.
    """
    uniform = rng.random(7)
    normal = rng.standard_normal(2)
    low, high = config.scale_range
    if config.scale_std is None:
        scale = low + (high - low) * uniform[0]
    else:
        scale = float(np.clip(1.0 + config.scale_std * normal[0], low, high))
    if uniform[1] >= config.rotation_prob:
        rotation = 0.0
    elif config.rotation_std is None:
        rotation = (2.0 * uniform[2] - 1.0) * config.rotation_limit
    else:
        rotation = float(np.clip(config.rotation_std * normal[1], -config.rotation_limit, config.rotation_limit))
    return {
        "scale": float(scale),
        "rotation": float(rotation),
        "flip": bool(uniform[3] < config.flip_prob),
        "half_body": bool(uniform[4] < config.half_body_prob),
        "translate": (2.0 * uniform[5:7] - 1.0) * config.translate,
    }


def augmented_affine(
    center: np.ndarray,
    size: np.ndarray,
    out_size_hw: tuple[int, int],
    params: dict | None = None,
) -> np.ndarray:
    """The ``2x3`` matrix taking the region (``center``, ``size = (w, h)``, image pixels) into an
    ``out_size_hw`` output after the choices ``params`` of :func:`sample_augmentation` (None: no augmentation)."""
    center = np.asarray(center, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    out_h, out_w = out_size_hw
    if params is None:
        return crop_affine(center, size, (out_w, out_h))
    size = size * params["scale"]
    center = center + np.asarray(params["translate"], dtype=np.float64) * size
    return crop_affine(center, size, (out_w, out_h), rotation_deg=params["rotation"], flip=params["flip"])


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    out_size_hw: tuple[int, int],
    interpolation: str = "linear",
    border_value: float = 0.0,
) -> np.ndarray:
    """Warp an ``(H, W)`` or ``(H, W, C)`` image by ``matrix`` (image -> output) into ``out_size_hw``.

    ``interpolation`` is ``"linear"``, ``"nearest"`` or ``"cubic"``; pixels from outside the image get
    ``border_value``. Returns an array of the input's dtype and channel count.
    """
    if interpolation not in _INTERPOLATION:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}, got {interpolation!r}")
    out_h, out_w = out_size_hw
    matrix = np.asarray(matrix, dtype=np.float64)
    channels = image.shape[2] if image.ndim == 3 else None
    chunks = [image] if channels is None or channels <= _MAX_CHANNELS else [
        image[..., i : i + _MAX_CHANNELS] for i in range(0, channels, _MAX_CHANNELS)
    ]
    warped = [
        cv2.warpAffine(
            np.ascontiguousarray(chunk),
            matrix,
            (out_w, out_h),
            flags=_INTERPOLATION[interpolation],
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=border_value,
        )
        for chunk in chunks
    ]
    # OpenCV drops a trailing channel axis of length 1; put it back so shapes are predictable
    warped = [w if chunk.ndim == w.ndim else w[..., None] for chunk, w in zip(chunks, warped)]
    return warped[0] if len(warped) == 1 else np.concatenate(warped, axis=-1)


def warp_keypoints(
    keypoints: np.ndarray,
    matrix: np.ndarray,
    out_size_hw: tuple[int, int],
    flip: bool = False,
) -> np.ndarray:
    """Move ``(K, 3)`` or ``(P, K, 3)`` keypoints ``[x, y, v]`` by ``matrix`` into an ``out_size_hw`` output.

    With ``flip`` (the matrix mirrors), left and right keypoints swap channels (:data:`poselib.keypoints.FLIP_INDEX`)
    so that channel ``k`` still means keypoint ``k``. Keypoints that are unlabelled (``v = 0``) or land outside
    the output's span ``[-0.5, W-0.5) x [-0.5, H-0.5)`` get ``x = y = v = 0``. Returns float32 of the input shape.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape[-1] != 3 or keypoints.ndim not in (2, 3):
        raise ValueError(f"keypoints must have shape (K, 3) or (P, K, 3), got {keypoints.shape}")
    out_h, out_w = out_size_hw
    xy = apply_affine(keypoints[..., :2], matrix)
    visibility = keypoints[..., 2].copy()
    if flip:
        xy, visibility = xy[..., FLIP_INDEX, :], visibility[..., FLIP_INDEX]
    inside = (xy[..., 0] >= -0.5) & (xy[..., 0] < out_w - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] < out_h - 0.5)
    keep = inside & (visibility > 0)
    out = np.zeros(keypoints.shape, dtype=np.float32)
    out[..., :2] = np.where(keep[..., None], xy, 0.0)
    out[..., 2] = np.where(keep, visibility, 0.0)
    return out


def warp_mask(
    mask: np.ndarray,
    matrix: np.ndarray,
    out_size_hw: tuple[int, int],
    mode: str = "area",
) -> np.ndarray:
    """Warp an ``(H, W)`` or ``(H, W, C)`` mask by ``matrix`` into ``out_size_hw``.

    ``mode="nearest"`` keeps the dtype and the labels (instance or label masks). ``mode="area"`` returns the
    float32 fraction of each output pixel covered by the mask, in ``[0, 1]``; when the warp shrinks the mask by
    more than 2x it is first reduced by area averaging, because bilinear sampling alone would skip thin parts.
    """
    if mode == "nearest":
        return warp_image(mask, matrix, out_size_hw, interpolation="nearest")
    if mode != "area":
        raise ValueError(f"mode must be 'nearest' or 'area', got {mode!r}")
    matrix = np.asarray(matrix, dtype=np.float64)
    values = mask.astype(np.float32)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        height, width = mask.shape[:2]
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        fx, fy = small_w / width, small_h / height
        small = cv2.resize(values, (small_w, small_h), interpolation=cv2.INTER_AREA)
        values = small if small.ndim == values.ndim else small[..., None]
        # the reduced mask's pixel centres: x' = (x + 0.5) * fx - 0.5, so undo that before ``matrix``
        to_small = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
        full = np.vstack([matrix, [0.0, 0.0, 1.0]])
        matrix = (full @ np.linalg.inv(to_small))[:2]
    return np.clip(warp_image(values, matrix, out_size_hw, interpolation="linear"), 0.0, 1.0)


def half_body_box(
    keypoints: np.ndarray,
    rng: np.random.Generator,
    aspect_ratio: float,
    padding: float = 1.5,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The half-body region of Simple Baselines / MSPN for one person's ``(K, 3)`` keypoints.

    Picks the upper body (keypoints 0-10) or the lower body (11-16) by a fair coin, falling back to the other
    half when the chosen one has fewer than 3 labelled keypoints. The region is centred on the mean of the
    chosen keypoints, spans their extent widened to ``aspect_ratio`` (w/h) and times ``padding``. Returns
    ``(center (2,), size (2,) = (w, h))`` in image pixels, as :func:`poselib.geometry.box_to_center_size`
    does, or None when fewer than 2 keypoints are available.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    labelled = keypoints[:, 2] > 0
    upper = [k for k in UPPER_BODY if labelled[k]]
    lower = [k for k in LOWER_BODY if labelled[k]]
    # Simple Baselines compares randn() with 0.5 (upper body ~69% of the time); a fair coin is the stated intent
    if rng.random() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    points = keypoints[chosen, :2]
    center = points.mean(axis=0)
    width, height = np.maximum(points.max(axis=0) - points.min(axis=0), 1.0)
    if width > aspect_ratio * height:
        height = width / aspect_ratio
    else:
        width = height * aspect_ratio
    return center, np.array([width, height], dtype=np.float64) * padding


__all__ = [
    "AugmentConfig",
    "augmented_affine",
    "half_body_box",
    "sample_augmentation",
    "warp_image",
    "warp_keypoints",
    "warp_mask",
]
