"""Figures every chapter uses: poses over images, heatmaps, training curves and result bars.

Coordinates follow :mod:`poselib.geometry`: pixel centres lie at integer coordinates, so an ``H x W`` image spans
``[-0.5, W-0.5] x [-0.5, H-0.5]``. Poses are ``(P, 17, 3)`` arrays ``[x, y, v]`` (COCO visibility
``0`` absent, ``1`` labelled but occluded, ``2`` visible) or, for predictions, ``[x, y, score]``. Boxes are COCO
``[x, y, w, h]`` covering pixel centres ``x .. x+w-1`` (as :func:`poselib.geometry.box_to_center_size` reads them).

Matplotlib functions return the :class:`~matplotlib.axes.Axes` or :class:`~matplotlib.figure.Figure` they drew
and never call ``plt.show()`` or select a backend. :func:`draw_poses_cv2` needs only OpenCV, and matplotlib
is imported only when a matplotlib function is called, so ``poselib predict`` stays light.

Colours: limbs and keypoints on the person's left side are warm (:data:`LEFT_COLOR`), on the right side cool
(:data:`RIGHT_COLOR`), in the middle (nose, torso crossbars, face links) :data:`CENTER_COLOR`;
``colors="person"`` gives each person one colour of :data:`PERSON_COLORS` instead.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from poselib.imaging import to_uint8
from poselib.keypoints import KEYPOINT_NAMES, LEFT_KEYPOINTS, NUM_KEYPOINTS, RIGHT_KEYPOINTS, SKELETON

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LEFT_COLOR: str = "#ff7f0e"  # orange: the person's left side
RIGHT_COLOR: str = "#1f8fff"  # blue: the person's right side
CENTER_COLOR: str = "#2ecc40"  # green: nose, shoulder and hip crossbars, eye-to-eye
#: One colour per person for ``colors="person"`` (matplotlib's tab10), cycled.
PERSON_COLORS: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)

#: Width in inches of a single-image figure made when no ``ax`` is given (the book's text column is ~8 in).
FIGURE_WIDTH: float = 6.0

#: A front-facing person (facing the viewer, so their left side is on the image right), ``(17, 2)`` ``[x, y]``
#: with ``y`` pointing down, for :func:`skeleton_diagram`.
CANONICAL_POSE: np.ndarray = np.array(
    [
        [0.00, 0.00],  # nose
        [0.08, -0.07], [-0.08, -0.07],  # eyes
        [0.16, -0.02], [-0.16, -0.02],  # ears
        [0.32, 0.38], [-0.32, 0.38],  # shoulders
        [0.44, 0.78], [-0.44, 0.78],  # elbows
        [0.52, 1.04], [-0.52, 1.04],  # wrists
        [0.19, 1.14], [-0.19, 1.14],  # hips
        [0.21, 1.62], [-0.21, 1.62],  # knees
        [0.23, 2.10], [-0.23, 2.10],  # ankles
    ]
)


# --------------------------------------------------------------------------------------------------- inputs


def as_rgb_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Any image poselib handles to a ``uint8`` RGB array ``(H, W, 3)``.

    Accepts ``uint8`` ``(H, W, 3)`` (returned as is), ``(H, W)`` grey, a normalised float tensor or array
    ``(3, H, W)`` or ``(1, 3, H, W)`` (un-normalised with :func:`poselib.imaging.to_uint8`), and float
    ``(H, W, 3)`` arrays on the ``0..1`` scale.
    """
    if isinstance(image, torch.Tensor) or (
        isinstance(image, np.ndarray) and image.ndim in (3, 4) and image.shape[-3] == 3 and image.dtype != np.uint8
    ):
        tensor = torch.as_tensor(image)
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(tensor.shape)}")
        return to_uint8(tensor)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return array


def _as_numpy(value: Any, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _as_poses(poses: Any) -> np.ndarray:
    """``None``, ``(17, 2|3)`` or ``(P, 17, 2|3)`` to a float ``(P, 17, 3)`` array (missing third column = 2)."""
    if poses is None:
        return np.zeros((0, NUM_KEYPOINTS, 3))
    array = _as_numpy(poses)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] != NUM_KEYPOINTS or array.shape[2] not in (2, 3):
        raise ValueError(f"expected poses of shape (P, {NUM_KEYPOINTS}, 3) or ({NUM_KEYPOINTS}, 3), got {array.shape}")
    if array.shape[2] == 2:
        array = np.concatenate([array, np.full(array.shape[:2] + (1,), 2.0)], axis=2)
    return array


def _as_boxes(boxes: Any) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4))
    return _as_numpy(boxes).reshape(-1, 4)


def _as_heatmap(heatmaps: Any) -> np.ndarray:
    """``(h, w)`` or ``(K, h, w)`` (leading batch dimensions of size 1 allowed) to ``(h, w)``, max over ``K``."""
    array = _as_numpy(heatmaps, dtype=np.float32)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3:
        array = array.max(axis=0)
    if array.ndim != 2:
        raise ValueError(f"expected heatmaps of shape (K, h, w) or (h, w), got {array.shape}")
    return array


def keypoint_states(
    poses: np.ndarray, *, min_score: float = 0.0, ground_truth: bool | None = None, show_occluded: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Which keypoints to draw, and which of those to draw hollow.

    ``poses``: ``(P, 17, 3)``. Ground truth (``ground_truth=None`` infers it from every third value being 0, 1
    or 2) draws ``v > 0`` and marks ``v == 1`` occluded (hidden when ``show_occluded`` is false; ``min_score``
    is ignored). Predictions draw keypoints with ``score > min_score``, none occluded. Keypoints with
    non-finite coordinates are never drawn. Returns boolean ``(present (P, 17), occluded (P, 17))``.
    """
    third = poses[..., 2]
    if ground_truth is None:
        ground_truth = bool(np.isin(third, (0.0, 1.0, 2.0)).all())
    finite = np.isfinite(poses[..., :2]).all(axis=-1)
    if ground_truth:
        present = (third > 0) & finite
        occluded = present & (third == 1)
        if not show_occluded:
            present &= ~occluded
            occluded[:] = False
    else:
        present = (third > min_score) & finite
        occluded = np.zeros_like(present)
    return present, occluded


def _side_color(index: int) -> str:
    if index in LEFT_KEYPOINTS:
        return LEFT_COLOR
    if index in RIGHT_KEYPOINTS:
        return RIGHT_COLOR
    return CENTER_COLOR


def _limb_side_color(a: int, b: int) -> str:
    color_a, color_b = _side_color(a), _side_color(b)
    # a limb joining the two sides (shoulders, hips, eyes) or touching the nose belongs to the centre
    return color_a if color_a == color_b else CENTER_COLOR


def pose_colors(colors: Any, num_persons: int) -> list[tuple[list[Any], list[Any]]]:
    """Per person, the colours of its limbs (one per :data:`~poselib.keypoints.SKELETON` edge) and keypoints.

    ``colors``: ``None`` (left warm, right cool, centre green), ``"person"`` (one :data:`PERSON_COLORS` entry
    per person), one colour for everyone, or a sequence of colours, one per person. Colours are whatever
    matplotlib accepts (names, hex, RGB tuples on ``0..1``).
    """
    if colors is None:
        limbs = [_limb_side_color(a, b) for a, b in SKELETON]
        keypoints = [_side_color(k) for k in range(NUM_KEYPOINTS)]
        return [(limbs, keypoints)] * num_persons
    if isinstance(colors, str) and colors == "person":
        per_person = [PERSON_COLORS[p % len(PERSON_COLORS)] for p in range(num_persons)]
    elif _is_single_color(colors):
        per_person = [colors] * num_persons
    else:
        per_person = [colors[p % len(colors)] for p in range(num_persons)]
    return [([c] * len(SKELETON), [c] * NUM_KEYPOINTS) for c in per_person]


def _is_single_color(color: Any) -> bool:
    if isinstance(color, str):
        return True
    return (
        isinstance(color, (tuple, list, np.ndarray))
        and len(color) in (3, 4)
        and all(isinstance(c, (int, float, np.number)) for c in color)
    )


def _rgb255(color: Any) -> tuple[int, int, int]:
    """A hex string or a ``0..1`` RGB tuple to ``0..255`` ints, without importing matplotlib when avoidable."""
    if isinstance(color, str) and color.startswith("#") and len(color) in (7, 9):
        return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)
    if isinstance(color, str):
        from matplotlib.colors import to_rgb  # named colours only

        color = to_rgb(color)
    return tuple(int(round(float(c) * 255)) for c in color[:3])


# ------------------------------------------------------------------------------------------ matplotlib poses


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _new_axes(height: int, width: int) -> Axes:
    plt = _pyplot()
    fig_height = min(max(FIGURE_WIDTH * height / max(width, 1), 2.0), 8.0)
    _, ax = plt.subplots(figsize=(FIGURE_WIDTH, fig_height), layout="constrained")
    return ax


def _image_extent(height: int, width: int) -> tuple[float, float, float, float]:
    # (left, right, bottom, top): pixel centres on integers, origin at the top
    return (-0.5, width - 0.5, height - 0.5, -0.5)


def draw_box(ax: Axes, box_xywh: Any, *, color: Any = "lime", label: str | None = None, linewidth: float = 1.5) -> None:
    """Draw a COCO ``[x, y, w, h]`` box on ``ax`` in image coordinates, with an optional label at its top left.

    The rectangle's edges are at ``x - 0.5`` and ``x + w - 0.5``: the outer edges of the pixels the box covers.
    """
    from matplotlib.patches import Rectangle

    x, y, w, h = (float(v) for v in _as_numpy(box_xywh).reshape(4))
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=color, linewidth=linewidth, zorder=4))
    if label is not None:
        ax.text(
            x - 0.5, y - 0.5, label, color="black", fontsize=7, va="bottom", ha="left", zorder=5,
            bbox=dict(facecolor=color, edgecolor="none", alpha=0.8, pad=1.0),
        )


def draw_poses(
    image: np.ndarray | torch.Tensor,
    poses: Any = None,
    ax: Axes | None = None,
    *,
    boxes: Any = None,
    scores: Any = None,
    title: str | None = None,
    min_score: float = 0.0,
    show_occluded: bool = True,
    linewidth: float | None = None,
    kps_size: float | None = None,
    colors: Any = None,
    ground_truth: bool | None = None,
    box_color: Any = "lime",
) -> Axes:
    """Draw an image with people's skeletons, boxes and scores.

    Args:
        image: ``uint8`` RGB ``(H, W, 3)`` or a normalised float tensor ``(3, H, W)``.
        poses: ``(P, 17, 3)`` or ``(17, 3)`` ``[x, y, v]`` (ground truth) or ``[x, y, score]`` (predictions),
            numpy or torch, in image pixels.
        ax: axes to draw into; a new figure :data:`FIGURE_WIDTH` inches wide when ``None``.
        boxes: ``(P, 4)`` COCO ``[x, y, w, h]`` boxes.
        scores: ``(P,)`` per-person scores, written as labels at the box (or the pose) top left.
        min_score: predictions draw keypoints whose score is above it.
        show_occluded: draw ground-truth ``v == 1`` keypoints hollow (else hide them and their limbs).
        linewidth: limb width in points (default 2).
        kps_size: keypoint marker area in points squared (default 4 x linewidth squared).
        colors: ``None``, ``"person"``, one colour, or one colour per person (see :func:`pose_colors`).
        ground_truth: whether the third column is COCO visibility; ``None`` infers it (all values in {0,1,2}).

    Keypoints not drawn take their limbs with them. Returns the axes, with the axis turned off.
    """
    from matplotlib.collections import LineCollection

    rgb = as_rgb_uint8(image)
    height, width = rgb.shape[:2]
    if ax is None:
        ax = _new_axes(height, width)
    ax.imshow(rgb, extent=_image_extent(height, width), interpolation="nearest")

    poses = _as_poses(poses)
    boxes = _as_boxes(boxes)
    linewidth = 2.0 if linewidth is None else linewidth
    kps_size = 4.0 * linewidth**2 if kps_size is None else kps_size
    present, occluded = keypoint_states(
        poses, min_score=min_score, ground_truth=ground_truth, show_occluded=show_occluded
    )
    palette = pose_colors(colors, max(len(poses), len(boxes)))

    segments, segment_colors = [], []
    filled_xy, filled_colors, hollow_xy, hollow_colors = [], [], [], []
    for p, pose in enumerate(poses):
        limb_colors, keypoint_colors = palette[p]
        for (a, b), color in zip(SKELETON, limb_colors):
            if present[p, a] and present[p, b]:
                segments.append(pose[[a, b], :2])
                segment_colors.append(color)
        for k in np.flatnonzero(present[p]):
            if occluded[p, k]:
                hollow_xy.append(pose[k, :2])
                hollow_colors.append(keypoint_colors[k])
            else:
                filled_xy.append(pose[k, :2])
                filled_colors.append(keypoint_colors[k])

    if segments:
        ax.add_collection(
            LineCollection(
                segments, colors=segment_colors, linewidths=linewidth, capstyle="round", alpha=0.9,
                zorder=2, gid="limbs",
            )
        )
    if filled_xy:
        xy = np.array(filled_xy)
        ax.scatter(
            xy[:, 0], xy[:, 1], s=kps_size, c=filled_colors, edgecolors="white", linewidths=0.6,
            zorder=3, gid="keypoints",
        )
    if hollow_xy:
        xy = np.array(hollow_xy)
        ax.scatter(
            xy[:, 0], xy[:, 1], s=kps_size, facecolors="none", edgecolors=hollow_colors,
            linewidths=max(linewidth * 0.6, 1.0), zorder=3, gid="occluded",
        )

    score_values = None if scores is None else _as_numpy(scores).reshape(-1)
    for p, box in enumerate(boxes):
        color = palette[p][0][0] if colors is not None else box_color
        label = None if score_values is None or p >= len(score_values) else f"{score_values[p]:.2f}"
        draw_box(ax, box, color=color, label=label)
    if score_values is not None and len(boxes) == 0:
        for p, pose in enumerate(poses[: len(score_values)]):
            if present[p].any():
                x, y = pose[present[p], :2].min(axis=0)
                ax.text(
                    x, y - 2, f"{score_values[p]:.2f}", fontsize=7, color="black", va="bottom", ha="left",
                    zorder=5, bbox=dict(facecolor="white", edgecolor="none", alpha=0.7, pad=1.0),
                )

    # scatter and text autoscale the axes; keep them on the image
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


# ---------------------------------------------------------------------------------------------- OpenCV poses

_CV2_SHIFT = 4  # fractional bits: OpenCV draws at 1/16 pixel precision with integer coordinates


def _cv2_point(xy: np.ndarray) -> tuple[int, int]:
    scale = 1 << _CV2_SHIFT
    return int(round(float(xy[0]) * scale)), int(round(float(xy[1]) * scale))


def draw_poses_cv2(
    image: np.ndarray | torch.Tensor,
    poses: Any = None,
    *,
    boxes: Any = None,
    scores: Any = None,
    min_score: float = 0.0,
    show_occluded: bool = True,
    colors: Any = None,
    ground_truth: bool | None = None,
    thickness: int | None = None,
    box_color: Any = "#00ff00",
) -> np.ndarray:
    """:func:`draw_poses` with OpenCV: returns an anti-aliased ``uint8`` RGB ``(H, W, 3)`` copy of ``image``.

    Same inputs and colours as :func:`draw_poses`; ``thickness`` is the limb width in pixels (default grows with
    the image, 2 px at 256 px). Coordinates keep sub-pixel precision; pixel centres are integers, as in OpenCV.
    """
    canvas = np.ascontiguousarray(as_rgb_uint8(image)).copy()
    height, width = canvas.shape[:2]
    poses = _as_poses(poses)
    boxes = _as_boxes(boxes)
    thickness = max(1, round(min(height, width) / 128)) if thickness is None else int(thickness)
    radius = thickness + 1
    present, occluded = keypoint_states(
        poses, min_score=min_score, ground_truth=ground_truth, show_occluded=show_occluded
    )
    palette = pose_colors(colors, max(len(poses), len(boxes)))

    for p, pose in enumerate(poses):
        limb_colors, keypoint_colors = palette[p]
        for (a, b), color in zip(SKELETON, limb_colors):
            if present[p, a] and present[p, b]:
                cv2.line(
                    canvas, _cv2_point(pose[a]), _cv2_point(pose[b]), _rgb255(color), thickness,
                    cv2.LINE_AA, _CV2_SHIFT,
                )
        for k in np.flatnonzero(present[p]):
            center, color = _cv2_point(pose[k]), _rgb255(keypoint_colors[k])
            if occluded[p, k]:
                cv2.circle(canvas, center, radius << _CV2_SHIFT, color, 1, cv2.LINE_AA, _CV2_SHIFT)
            else:
                cv2.circle(canvas, center, radius << _CV2_SHIFT, color, -1, cv2.LINE_AA, _CV2_SHIFT)

    score_values = None if scores is None else _as_numpy(scores).reshape(-1)
    font_scale = max(0.35, min(height, width) / 640)
    for p, box in enumerate(boxes):
        color = _rgb255(palette[p][0][0] if colors is not None else box_color)
        x, y, w, h = box
        top_left = _cv2_point(np.array([x - 0.5, y - 0.5]))
        bottom_right = _cv2_point(np.array([x + w - 0.5, y + h - 0.5]))
        cv2.rectangle(canvas, top_left, bottom_right, color, max(1, thickness // 2), cv2.LINE_AA, _CV2_SHIFT)
        if score_values is not None and p < len(score_values):
            _cv2_label(canvas, f"{score_values[p]:.2f}", (int(round(x)), int(round(y))), color, font_scale)
    if score_values is not None and len(boxes) == 0:
        for p, pose in enumerate(poses[: len(score_values)]):
            if present[p].any():
                x, y = pose[present[p], :2].min(axis=0)
                origin = (int(round(x)), int(round(y)))
                _cv2_label(canvas, f"{score_values[p]:.2f}", origin, (255, 255, 255), font_scale)
    return canvas


def _cv2_label(
    canvas: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int], scale: float
) -> None:
    """Black text on a filled ``color`` tag whose bottom-left corner is at ``origin``."""
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    y = max(y, text_h + baseline)
    cv2.rectangle(canvas, (x, y - text_h - baseline), (x + text_w, y), color, -1)
    cv2.putText(canvas, text, (x, y - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


# ------------------------------------------------------------------------------------------------- heatmaps


def heatmap_overlay(
    image: np.ndarray | torch.Tensor | None,
    heatmaps: Any,
    ax: Axes | None = None,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    interpolation: str = "nearest",
    fade: bool = False,
) -> Axes:
    """Overlay heatmaps on an image so that each cell sits over the input pixels it stands for.

    ``heatmaps``: ``(K, h, w)`` (drawn as the max over ``K``) or ``(h, w)``, numpy or torch, at stride
    ``s = W / w`` of the ``(H, W)`` image. Both are drawn with ``extent = (-0.5, W-0.5, H-0.5, -0.5)``, so cell
    ``i`` covers pixels ``s*i - 0.5 .. s*(i+1) - 0.5`` and its centre lands on ``s*i + (s-1)/2``
    (:func:`poselib.geometry.heatmap_to_image`). ``image=None`` draws the heatmap alone at stride 1.
    ``vmin``/``vmax`` default to the heatmap's range. ``fade`` scales the opacity of each cell with its value,
    so that the image shows through where the heatmap is low.
    """
    heatmap = _as_heatmap(heatmaps)
    if image is None:
        height, width = heatmap.shape
        rgb = None
    else:
        rgb = as_rgb_uint8(image)
        height, width = rgb.shape[:2]
    if ax is None:
        ax = _new_axes(height, width)
    extent = _image_extent(height, width)
    if rgb is not None:
        ax.imshow(rgb, extent=extent, interpolation="nearest")
    opacity: float | np.ndarray = alpha if rgb is not None else 1.0
    if fade and rgb is not None:
        low = float(heatmap.min()) if vmin is None else vmin
        high = float(heatmap.max()) if vmax is None else vmax
        opacity = alpha * np.clip((heatmap - low) / max(high - low, 1e-12), 0.0, 1.0)
    ax.imshow(heatmap, extent=extent, alpha=opacity, cmap=cmap, vmin=vmin, vmax=vmax, interpolation=interpolation)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def _grid(count: int, ncols: int, size: float, aspect: float = 1.0) -> tuple[Figure, np.ndarray]:
    """A figure of ``ceil(count / ncols)`` rows of square-ish panels; panels past ``count`` are hidden."""
    if count < 1:
        raise ValueError("nothing to draw: got 0 panels")
    plt = _pyplot()
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * size, nrows * size * aspect), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def heatmap_grid(
    heatmaps: Any,
    *,
    image: np.ndarray | torch.Tensor | None = None,
    names: Sequence[str] | None = KEYPOINT_NAMES,
    ncols: int = 6,
    size: float = 1.6,
    alpha: float = 0.6,
    cmap: str = "jet",
    shared_scale: bool = True,
    fade: bool = False,
) -> Figure:
    """One small panel per heatmap channel, optionally over the image.

    ``heatmaps``: ``(K, h, w)`` numpy or torch. Titles come from ``names`` when it has ``K`` entries, else the
    channel index. With ``shared_scale`` all panels share one colour scale, so weak channels look weak;
    ``fade`` is :func:`heatmap_overlay`'s.
    """
    array = _as_numpy(heatmaps, dtype=np.float32)
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected heatmaps of shape (K, h, w), got {array.shape}")
    num_channels, h, w = array.shape
    if image is not None:
        rgb = as_rgb_uint8(image)
        aspect = rgb.shape[0] / rgb.shape[1]
    else:
        rgb, aspect = None, h / w
    vmin, vmax = (float(array.min()), float(array.max())) if shared_scale else (None, None)
    titles = names if names is not None and len(names) == num_channels else [str(k) for k in range(num_channels)]

    fig, axes = _grid(num_channels, ncols, size, aspect=min(max(aspect, 0.5), 2.0))
    for k in range(num_channels):
        heatmap_overlay(rgb, array[k], axes[k], alpha=alpha, cmap=cmap, vmin=vmin, vmax=vmax, fade=fade)
        axes[k].set_title(titles[k].replace("_", " "), fontsize=7)
    return fig


# ---------------------------------------------------------------------------------------------------- grids


def image_grid(
    images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor,
    poses: Sequence[Any] | None = None,
    *,
    ncols: int = 4,
    titles: Sequence[str] | None = None,
    size: float = 3.0,
    boxes: Sequence[Any] | None = None,
    **draw_kwargs: Any,
) -> Figure:
    """A grid of images, each with its poses drawn by :func:`draw_poses`.

    ``images``: a list of ``uint8`` ``(H, W, 3)`` arrays or ``(3, H, W)`` tensors (or an ``(N, 3, H, W)``
    batch); ``poses`` and ``boxes``: lists with one ``(P, 17, 3)`` / ``(P, 4)`` entry (or ``None``) per image.
    Further keyword arguments go to :func:`draw_poses`. Panels are ``size`` inches wide, as tall as the first
    image's aspect ratio asks; unused ones are hidden.
    """
    images = [as_rgb_uint8(image) for image in images]
    # panels take the first image's shape so that landscape images don't float in square boxes
    aspect = images[0].shape[0] / images[0].shape[1] if images else 1.0
    fig, axes = _grid(len(images), ncols, size, aspect=min(max(aspect, 0.5), 2.0))
    for i, image in enumerate(images):
        draw_poses(
            image,
            None if poses is None else poses[i],
            axes[i],
            boxes=None if boxes is None else boxes[i],
            title=None if titles is None else titles[i],
            **draw_kwargs,
        )
    return fig


# --------------------------------------------------------------------------------------------------- curves


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSON-lines metrics file (blank lines skipped)."""
    records = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {line_number}: not a JSON object ({error.msg})") from error
    return records


def _as_records(source: Any) -> list[dict]:
    if isinstance(source, (str, os.PathLike)):
        return read_jsonl(source)
    return list(source)


def ema(values: Sequence[float], smooth: float) -> np.ndarray:
    """Exponential moving average with weight ``smooth`` on the past (0 = none), bias-corrected at the start
    (as TensorBoard), so that the first point is the first value rather than pulled towards zero."""
    values = np.asarray(values, dtype=np.float64)
    if smooth <= 0.0 or len(values) == 0:
        return values
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    out = np.empty_like(values)
    running = 0.0
    for i, value in enumerate(values):
        running = smooth * running + (1.0 - smooth) * value
        out[i] = running / (1.0 - smooth ** (i + 1))
    return out


def _series(records: list[dict], key: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, ys)`` of the records holding a finite number under ``key``; ``x`` falls back to the record
    position when no record has it."""
    use_position = not any(x in record for record in records)
    xs, ys = [], []
    for position, record in enumerate(records):
        value = record.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        if use_position:
            xs.append(position)
        elif isinstance(record.get(x), (int, float)):
            xs.append(record[x])
        else:
            continue
        ys.append(value)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def plot_curves(
    log: Any,
    keys: Sequence[str] | str = ("loss",),
    *,
    x: str = "step",
    ax: Axes | None = None,
    smooth: float = 0.0,
    title: str | None = None,
    logy: bool = False,
) -> Axes:
    """Training curves from JSON-lines metrics.

    ``log``: a path to a JSONL file (one object per line: ``step``, ``epoch``, ``loss``, ``lr``, ``AP``...), a
    list of such dicts, or a dict ``run name -> path or list`` to compare runs (one colour per run, one line
    style per key). A record missing a key (or holding a non-number there) is skipped for that key; when no
    record has ``x`` the record position is used. ``smooth`` in ``[0, 1)`` draws a bias-corrected exponential
    moving average over the faint raw curve.
    """
    plt = _pyplot()
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if isinstance(log, Mapping):
        runs = {str(name): _as_records(source) for name, source in log.items()}
    else:
        runs = {"": _as_records(log)}
    if ax is None:
        _, ax = plt.subplots(figsize=(FIGURE_WIDTH, 3.5), layout="constrained")

    line_styles = ("-", "--", ":", "-.")
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", list(PERSON_COLORS))
    drawn = 0
    for r, (name, records) in enumerate(runs.items()):
        for k, key in enumerate(keys):
            xs, ys = _series(records, key, x)
            if len(xs) == 0:
                continue
            # colour tells runs apart when there are several, keys otherwise
            color = cycle[(r if len(runs) > 1 else k) % len(cycle)]
            style = line_styles[k % len(line_styles)] if len(runs) > 1 else "-"
            label = " ".join(part for part in (name, key if len(keys) > 1 or not name else "") if part)
            if smooth > 0.0:
                ax.plot(xs, ys, color=color, linestyle=style, alpha=0.25, linewidth=1.0)
            ax.plot(xs, ema(ys, smooth), color=color, linestyle=style, linewidth=1.5, label=label)
            drawn += 1
    if drawn == 0:
        ax.text(0.5, 0.5, f"no records with {', '.join(keys)}", transform=ax.transAxes, ha="center", va="center")
    elif drawn > 1:
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel(x if any(x in rec for records in runs.values() for rec in records) else "record")
    if len(keys) == 1:
        ax.set_ylabel(keys[0])
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if title is not None:
        ax.set_title(title, fontsize=10)
    return ax


# ----------------------------------------------------------------------------------------------------- bars


def bar_compare(
    table: Any,
    *,
    value: str,
    label: str,
    group: str | None = None,
    ax: Axes | None = None,
    errors: str | None = None,
    title: str | None = None,
    fmt: str | None = None,
    ylabel: str | None = None,
) -> Axes:
    """A (grouped) bar chart: one cluster per ``label``, one bar per ``group`` inside it, values on the bars.

    ``table``: a pandas DataFrame or a list of dicts with columns ``value`` (bar height), ``label`` (x-axis
    category, e.g. the method or ablation row) and optionally ``group`` (e.g. ``"paper"`` / ``"ours"``) and
    ``errors`` (error-bar half-length, e.g. the spread over seeds). Categories and groups keep their order of
    first appearance; a missing ``(label, group)`` pair leaves a gap. Each pair must appear at most once.
    ``fmt`` formats the printed values; by default one decimal (AP in percent), three below 1 (AP as a fraction).
    """
    import pandas as pd

    plt = _pyplot()
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    for column in (value, label, group, errors):
        if column is not None and column not in frame.columns:
            raise KeyError(f"bar_compare: no column {column!r} in the table (columns: {list(frame.columns)})")
    keys = [label] if group is None else [label, group]
    duplicated = frame.duplicated(subset=keys)
    if duplicated.any():
        first = frame.loc[duplicated, keys].iloc[0].tolist()
        raise ValueError(f"bar_compare: several rows for {dict(zip(keys, first))}; aggregate them first")

    if fmt is None:
        fmt = "{:.3f}" if (frame[value].abs() < 1).all() else "{:.1f}"
    categories = list(dict.fromkeys(frame[label]))
    groups = [None] if group is None else list(dict.fromkeys(frame[group]))
    if ax is None:
        width_in = min(max(FIGURE_WIDTH, 0.6 * len(categories) * max(len(groups), 1) + 1.5), 10.0)
        _, ax = plt.subplots(figsize=(width_in, 3.5), layout="constrained")

    bar_width = 0.8 / len(groups)
    positions = np.arange(len(categories), dtype=np.float64)
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", list(PERSON_COLORS))
    for g, group_value in enumerate(groups):
        rows = frame if group is None else frame[frame[group] == group_value]
        by_label = {row[label]: row for _, row in rows.iterrows()}
        heights = np.array([float(by_label[c][value]) if c in by_label else np.nan for c in categories])
        present = np.isfinite(heights)  # a missing pair (or a NaN value) leaves a gap
        yerr = None
        if errors is not None:
            # NaN (e.g. a paper's single number) draws no error bar
            yerr = np.array([float(by_label[c][errors]) if c in by_label else np.nan for c in categories])[present]
        offsets = positions + (g - (len(groups) - 1) / 2) * bar_width
        bars = ax.bar(
            offsets[present], heights[present], bar_width * 0.92, yerr=yerr, capsize=0 if yerr is None else 3,
            color=cycle[g % len(cycle)], label=None if group_value is None else str(group_value),
            error_kw=dict(elinewidth=1.0, ecolor="black"),
        )
        ax.bar_label(bars, labels=[fmt.format(h) for h in heights[present]], padding=2, fontsize=7)
    ax.set_xticks(positions)
    long_labels = len(categories) > 6 or any(len(str(c)) > 12 for c in categories)
    ax.set_xticklabels(
        [str(c) for c in categories], rotation=30 if long_labels else 0, ha="right" if long_labels else "center"
    )
    ax.set_ylabel(ylabel if ylabel is not None else value)
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if group is not None:
        # beside the plot: inside, it would sit on the tallest bars' labels
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), title=group, title_fontsize=8)
    if title is not None:
        ax.set_title(title, fontsize=10)
    return ax


# ------------------------------------------------------------------------------------------------- skeleton


def _spread(ys: Sequence[float], gap: float) -> list[float]:
    """Push sorted label heights apart so that consecutive ones are at least ``gap`` apart."""
    order = np.argsort(ys, kind="stable")
    spread = list(ys)
    previous = -math.inf
    for i in order:
        spread[i] = max(ys[i], previous + gap)
        previous = spread[i]
    return spread


def skeleton_diagram(ax: Axes | None = None, *, names: bool = True) -> Axes:
    """The COCO 17-keypoint skeleton on a front-facing figure, labelled ``"index name"`` (or only the index).

    The person faces the viewer, so their left side is on the image right, as in a photo; colours are those of
    :func:`draw_poses`. Keypoint positions are :data:`CANONICAL_POSE`.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle

    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 5.0), layout="constrained")
    points = CANONICAL_POSE
    limb_colors, keypoint_colors = pose_colors(None, 1)[0]

    ax.add_patch(Circle((0.0, -0.04), 0.24, fill=False, edgecolor="0.75", linewidth=1.0, zorder=1))
    ax.add_collection(
        LineCollection(
            [points[[a, b]] for a, b in SKELETON], colors=limb_colors, linewidths=3.0, capstyle="round", zorder=2
        )
    )
    ax.scatter(points[:, 0], points[:, 1], s=50, c=keypoint_colors, edgecolors="white", linewidths=0.8, zorder=3)

    label_x = 0.85 if names else 0.7
    for side, keypoints, sign in (("left", LEFT_KEYPOINTS, 1.0), ("right", RIGHT_KEYPOINTS, -1.0)):
        label_ys = _spread([points[k, 1] for k in keypoints], gap=0.16)
        for k, y in zip(keypoints, label_ys):
            text = f"{k} {KEYPOINT_NAMES[k]}" if names else str(k)
            ax.annotate(
                text, xy=points[k], xytext=(sign * label_x, y), fontsize=8, va="center",
                ha="left" if sign > 0 else "right", color=keypoint_colors[k],
                arrowprops=dict(arrowstyle="-", color="0.7", linewidth=0.6, shrinkA=0, shrinkB=3),
            )
        ax.text(sign * label_x, -0.55, f"person's {side}", fontsize=8, style="italic", color="0.4",
                ha="left" if sign > 0 else "right", va="center")
    ax.annotate(
        f"0 {KEYPOINT_NAMES[0]}" if names else "0", xy=points[0], xytext=(0.0, -0.42), fontsize=8, ha="center",
        va="center", color=keypoint_colors[0],
        arrowprops=dict(arrowstyle="-", color="0.7", linewidth=0.6, shrinkA=0, shrinkB=3),
    )
    span = 1.9 if names else 1.2
    ax.set_xlim(-span, span)
    ax.set_ylim(2.3, -0.7)
    ax.set_aspect("equal")
    ax.set_axis_off()
    return ax
