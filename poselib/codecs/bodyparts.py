"""Simple Pose targets: keypoint Gaussians, body-part heatmaps, and CMU-Pose's part affinity fields (PAFs).

Everything is in input pixels and sampled at cell centres: under poselib's convention a map at stride ``s`` has
cell ``i`` centred on input coordinate ``s*i + (s-1)/2``, which is the paper's ``x*R + R/2 - 0.5`` and, for
``s = 4``, the reference code's ``4i + 1.5``. Standard deviations are in input pixels (the paper's
``sigma_k = 9`` and ``sigma_p = 7`` are for 512x512 inputs).

Body parts live on COCO's 17 keypoints. The reference code has an 18th keypoint, the neck (the midpoint of the
shoulders), and 30 parts, 9 of them ending at the neck. Without a neck channel each neck part is redrawn to
end at the shoulder(s) it stands for: neck-nose becomes nose-right shoulder and nose-left shoulder (which the
reference also has as redundant parts 21 and 22), neck-eye and neck-ear become eye/ear to the same side's
shoulder, neck-shoulder becomes the shoulder line, and neck-hip becomes shoulder-hip on the same side (the
reference's redundant parts 23 and 25). Merging the duplicates leaves 24 parts: a 16-edge spanning tree
(:data:`MST_PARTS`) and 8 redundant parts. :data:`REFERENCE_PART_MAP` records where each of the 30 went.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from poselib.keypoints import FLIP_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS

Tensor = torch.Tensor

# COCO indices: 0 nose, 1 Leye, 2 Reye, 3 Lear, 4 Rear, 5 Lsho, 6 Rsho, 7 Lelb, 8 Relb, 9 Lwri, 10 Rwri,
# 11 Lhip, 12 Rhip, 13 Lkne, 14 Rkne, 15 Lank, 16 Rank.
#: The 24 body parts as (from, to) COCO keypoint indices, in channel order, which is also the greedy assembly
#: order: first the spanning tree (head, arms, torso sides, legs), then the redundant parts.
BODY_PARTS: tuple[tuple[int, int], ...] = (
    (0, 6), (0, 5),  # nose-shoulders: the reference's neck-nose and neck-shoulders (neck = shoulder midpoint)
    (0, 2), (0, 1), (2, 4), (1, 3),  # nose-eyes, eyes-ears
    (6, 8), (8, 10), (5, 7), (7, 9),  # right arm, left arm
    (6, 12), (12, 14), (14, 16), (5, 11), (11, 13), (13, 15),  # shoulder-hip and legs, right then left
    # redundant parts
    (6, 5),  # the shoulder line (the reference's neck-Rsho and neck-Lsho)
    (2, 6), (1, 5), (4, 6), (3, 5),  # eyes and ears to the same side's shoulder (the reference's neck-eye/ear)
    (12, 13), (11, 14), (12, 11),  # hip to the opposite knee, the hip line
)
NUM_PARTS: int = len(BODY_PARTS)
#: Indices of the parts forming a spanning tree of the 17 keypoints (the paper's "MST" skeleton).
MST_PARTS: tuple[int, ...] = tuple(range(16))
#: The redundant parts added to the tree.
REDUNDANT_PARTS: tuple[int, ...] = tuple(range(16, NUM_PARTS))
PART_NAMES: tuple[str, ...] = tuple(f"{KEYPOINT_NAMES[a]}-{KEYPOINT_NAMES[b]}" for a, b in BODY_PARTS)

#: The reference code's 30 parts by name (18-keypoint CMU order with the neck), in its channel order.
REFERENCE_PARTS: tuple[str, ...] = (
    "neck-nose", "neck-Reye", "neck-Leye", "neck-Rear", "neck-Lear", "nose-Reye", "nose-Leye", "Reye-Rear",
    "Leye-Lear", "neck-Rsho", "Rsho-Relb", "Relb-Rwri", "neck-Lsho", "Lsho-Lelb", "Lelb-Lwri", "neck-Rhip",
    "Rhip-Rkne", "Rkne-Rank", "neck-Lhip", "Lhip-Lkne", "Lkne-Lank", "nose-Rsho", "nose-Lsho", "Rsho-Rhip",
    "Rhip-Lkne", "Lsho-Lhip", "Lhip-Rkne", "Rear-Rsho", "Lear-Lsho", "Rhip-Lhip",
)
#: For each reference part (index into :data:`REFERENCE_PARTS`), the part(s) of :data:`BODY_PARTS` it became.
REFERENCE_PART_MAP: tuple[tuple[int, ...], ...] = (
    (0, 1), (17,), (18,), (19,), (20,), (2,), (3,), (4,), (5,), (16,), (6,), (7,), (16,), (8,), (9,), (10,),
    (11,), (12,), (13,), (14,), (15,), (0,), (1,), (10,), (21,), (13,), (22,), (19,), (20,), (23,),
)


def part_flip_index(parts: Sequence[tuple[int, int]] = BODY_PARTS) -> tuple[int, ...]:
    """``index[p]`` is the part that part ``p`` becomes under a horizontal flip (for flip testing)."""
    lookup = {frozenset(pair): i for i, pair in enumerate(parts)}
    index = []
    for a, b in parts:
        mirrored = frozenset((FLIP_INDEX[a], FLIP_INDEX[b]))
        if mirrored not in lookup:
            raise ValueError(f"part {a}-{b} has no mirror image {sorted(mirrored)} among the parts")
        index.append(lookup[mirrored])
    return tuple(index)


def flip_back(maps: Tensor, parts: Sequence[tuple[int, int]] = BODY_PARTS, encoding: str = "bodyparts") -> Tensor:
    """Maps ``(N, 17 + L, H, W)`` (or ``17 + 2L`` channels of PAFs) predicted on a horizontally mirrored input,
    brought back to the original's frame: mirrored, left/right keypoints and parts swapped, and for PAFs the
    x-component negated (and both components when the mirrored part is stored in the opposite direction)."""
    k = NUM_KEYPOINTS
    part_index = part_flip_index(parts)
    mirrored = maps.flip(-1)
    keypoints = mirrored[:, list(FLIP_INDEX)]
    if encoding == "bodyparts":
        return torch.cat([keypoints, mirrored[:, [k + i for i in part_index]]], 1)
    if encoding != "paf":
        raise ValueError(f"encoding must be 'bodyparts' or 'paf', got {encoding!r}")
    fields = []
    for target, source in enumerate(part_index):
        a, b = parts[source]
        # the mirrored image's part `source` runs from what is FLIP_INDEX[a] to FLIP_INDEX[b] in the original
        sign = 1.0 if (FLIP_INDEX[a], FLIP_INDEX[b]) == tuple(parts[target]) else -1.0
        fx, fy = mirrored[:, k + 2 * source], mirrored[:, k + 2 * source + 1]
        fields += [-sign * fx, sign * fy]
    return torch.cat([keypoints, torch.stack(fields, 1)], 1)


def select_parts(skeleton: str) -> tuple[tuple[int, int], ...]:
    """The parts of a named skeleton: ``"redundant"`` (all 24) or ``"mst"`` (the 16-edge spanning tree)."""
    if skeleton == "redundant":
        return BODY_PARTS
    if skeleton == "mst":
        return tuple(BODY_PARTS[i] for i in MST_PARTS)
    raise ValueError(f"skeleton must be 'redundant' or 'mst', got {skeleton!r}")


def cell_centres(length: int, stride: float, *, device=None, dtype=torch.float32) -> Tensor:
    """Input-pixel coordinates of the centres of ``length`` cells at ``stride``: ``s*i + (s-1)/2``."""
    return torch.arange(length, device=device, dtype=dtype) * stride + (stride - 1) / 2.0


def _as_keypoints(keypoints) -> Tensor:
    kpts = keypoints if isinstance(keypoints, Tensor) else torch.as_tensor(np.asarray(keypoints, dtype=np.float32))
    kpts = kpts.float()
    if kpts.ndim != 3 or kpts.shape[-1] != 3:
        raise ValueError(f"keypoints must have shape (P, K, 3), got {tuple(kpts.shape)}")
    return kpts


def keypoint_heatmaps(keypoints, heatmap_size: tuple[int, int], stride: float, sigma: float = 9.0,
                      thre: float = 0.01) -> Tensor:
    """Keypoint targets ``(K, h, w)``: ``exp(-d^2 / 2 sigma^2)`` around every labelled keypoint, ``d`` the distance
    in input pixels from the cell centre, set to 0 below ``thre`` (the paper's truncation at ``r_0``), and the
    maximum over people. ``keypoints``: ``(P, K, 3)`` in input pixels; ``v > 0`` counts as labelled."""
    kpts = _as_keypoints(keypoints)
    h, w = (int(v) for v in heatmap_size)
    if kpts.shape[0] == 0:
        return kpts.new_zeros((kpts.shape[1], h, w))
    xs, ys = cell_centres(w, stride), cell_centres(h, stride)
    gx = torch.exp(-(xs - kpts[..., 0:1]).square() / (2 * sigma**2))  # (P, K, w)
    gy = torch.exp(-(ys - kpts[..., 1:2]).square() / (2 * sigma**2))  # (P, K, h)
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2) * (kpts[..., 2] > 0).float()[..., None, None]
    maps = torch.where(maps >= thre, maps, torch.zeros_like(maps))
    return maps.amax(0)


def _segments(kpts: Tensor, parts: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Endpoints ``(P, L, 2)`` of every part of every person, and whether both ends are labelled and apart."""
    index_a = torch.tensor([a for a, _ in parts], dtype=torch.long)
    index_b = torch.tensor([b for _, b in parts], dtype=torch.long)
    pa, pb = kpts[:, index_a], kpts[:, index_b]
    valid = (pa[..., 2] > 0) & (pb[..., 2] > 0) & ((pa[..., :2] - pb[..., :2]).norm(dim=-1) > 1e-6)
    return pa[..., :2], pb[..., :2], valid


def _in_boxes(pa: Tensor, pb: Tensor, xs: Tensor, ys: Tensor, margin: float) -> Tensor:
    """``(P, L, h, w)``: the cell centre lies in the axis-aligned box of the segment, enlarged by ``margin``."""
    low, high = torch.minimum(pa, pb) - margin, torch.maximum(pa, pb) + margin
    in_x = (xs >= low[..., 0:1]) & (xs <= high[..., 0:1])  # (P, L, w)
    in_y = (ys >= low[..., 1:2]) & (ys <= high[..., 1:2])  # (P, L, h)
    return in_y.unsqueeze(-1) & in_x.unsqueeze(-2)


def bodypart_heatmaps(keypoints, heatmap_size: tuple[int, int], stride: float, sigma: float = 7.0,
                      thre: float = 0.01, *, parts: Sequence[tuple[int, int]] = BODY_PARTS,
                      margin: float | None = None, floor: float = 0.0) -> Tensor:
    """Body-part targets ``(L, h, w)``, one map per part.

    Inside the axis-aligned box spanned by the part's two keypoints, enlarged by ``margin`` input pixels on each
    side (default: one ``stride``, the reference's ``paf_thre``), a cell gets ``exp(-d^2 / 2 sigma^2)`` with ``d``
    its perpendicular distance to the line through the two keypoints; values below ``thre`` become ``floor``
    (0: the paper's truncation at ``d_0``; the reference code uses 0.01). Outside the box the map is 0. Parts
    need both keypoints labelled and apart. Overlapping people are averaged over those covering a cell, as in
    the reference code (a maximum would merge crossing limbs into one blob just the same, an average keeps the
    value at most 1).
    """
    kpts = _as_keypoints(keypoints)
    h, w = (int(v) for v in heatmap_size)
    if kpts.shape[0] == 0:
        return kpts.new_zeros((len(parts), h, w))
    margin = float(stride) if margin is None else float(margin)
    xs, ys = cell_centres(w, stride), cell_centres(h, stride)
    pa, pb, valid = _segments(kpts, parts)
    direction = pb - pa
    length = direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    normal = torch.stack([-direction[..., 1], direction[..., 0]], -1) / length  # (P, L, 2) unit normal
    # signed distance of a cell centre to the line: n . (p - a), separable in x and y
    dist = (normal[..., 0:1, None] * (xs - pa[..., 0:1])[..., None, :]
            + normal[..., 1:2, None] * (ys - pa[..., 1:2])[..., :, None])  # (P, L, h, w)
    values = torch.exp(-dist.square() / (2 * sigma**2))
    values = torch.where(values >= thre, values, torch.full_like(values, floor))
    covered = _in_boxes(pa, pb, xs, ys, margin) & valid[..., None, None]
    values = values * covered
    count = (covered & (values > 0)).sum(0).float()
    return values.sum(0) / count.clamp_min(1.0)


def part_affinity_fields(keypoints, heatmap_size: tuple[int, int], stride: float, width: float = 8.0, *,
                         parts: Sequence[tuple[int, int]] = BODY_PARTS) -> Tensor:
    """CMU-Pose's PAFs ``(2L, h, w)``: channels ``2l, 2l+1`` hold the x and y of the unit vector from a part's
    first to its second keypoint on cells within ``width`` input pixels of the segment (between its ends), else
    0; overlapping people are averaged over those covering a cell (CMU-Pose's rule)."""
    kpts = _as_keypoints(keypoints)
    h, w = (int(v) for v in heatmap_size)
    if kpts.shape[0] == 0:
        return kpts.new_zeros((2 * len(parts), h, w))
    xs, ys = cell_centres(w, stride), cell_centres(h, stride)
    pa, pb, valid = _segments(kpts, parts)
    direction = pb - pa
    length = direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    unit = direction / length
    dx = (xs - pa[..., 0:1])[..., None, :]  # (P, L, 1, w)
    dy = (ys - pa[..., 1:2])[..., :, None]  # (P, L, h, 1)
    along = unit[..., 0:1, None] * dx + unit[..., 1:2, None] * dy
    across = (-unit[..., 1:2, None] * dx + unit[..., 0:1, None] * dy).abs()
    on = (along >= 0) & (along <= length[..., None]) & (across <= width) & valid[..., None, None]
    count = on.sum(0).float().clamp_min(1.0)  # (L, h, w)
    fields = (on.unsqueeze(2) * unit[..., :, None, None]).sum(0) / count.unsqueeze(1)  # (L, 2, h, w)
    return fields.reshape(2 * len(parts), h, w)


def downsample_pyramid(maps: Tensor, num_scales: int) -> list[Tensor]:
    """``maps (..., h, w)`` and its adaptive-average-pooled halvings, finest first: ``num_scales`` tensors
    (the paper's targets at the coarser scales)."""
    out = [maps]
    h, w = maps.shape[-2:]
    current = maps.reshape(1, -1, h, w)
    for j in range(1, num_scales):
        size = (max(1, h >> j), max(1, w >> j))
        if current.shape[-2] == 2 * size[0] and current.shape[-1] == 2 * size[1]:
            current = F.avg_pool2d(current, 2)  # the same as adaptive pooling when the sides halve exactly
        else:
            current = F.adaptive_avg_pool2d(maps.reshape(1, -1, h, w), size)
        out.append(current.reshape(*maps.shape[:-2], *size))
    return out


class BodyPartTargets:
    """Data-set encoder for :class:`poselib.data.datasets.BottomUpDataset`: adds ``targets``, a list of
    ``num_scales`` tensors ``(C, h/2^j, w/2^j)`` (keypoints first, then parts, or PAFs with ``encoding="paf"``),
    and ``masks``, the matching list of ``(h/2^j, w/2^j)`` loss masks (the paper's ``W``: 0 on cells touching
    crowds or unlabelled people)."""

    def __init__(self, input_size: int, stride: int = 4, *, sigma_k: float = 9.0, sigma_p: float = 7.0,
                 thre: float = 0.01, skeleton: str = "redundant", encoding: str = "bodyparts",
                 num_scales: int = 5, paf_width: float | None = None, part_floor: float = 0.0) -> None:
        if encoding not in ("bodyparts", "paf"):
            raise ValueError(f"encoding must be 'bodyparts' or 'paf', got {encoding!r}")
        self.heatmap_size = (input_size // stride, input_size // stride)
        self.stride, self.sigma_k, self.sigma_p, self.thre = stride, sigma_k, sigma_p, thre
        self.parts = select_parts(skeleton)
        self.encoding, self.num_scales = encoding, num_scales
        self.paf_width = sigma_p if paf_width is None else paf_width
        self.part_floor = part_floor

    @property
    def num_channels(self) -> int:
        per_part = 2 if self.encoding == "paf" else 1
        return NUM_KEYPOINTS + per_part * len(self.parts)

    def encode(self, keypoints) -> Tensor:
        """Finest-scale targets ``(C, h, w)`` for people ``(P, 17, 3)`` in input pixels."""
        maps = [keypoint_heatmaps(keypoints, self.heatmap_size, self.stride, self.sigma_k, self.thre)]
        if self.encoding == "paf":
            maps.append(part_affinity_fields(keypoints, self.heatmap_size, self.stride, self.paf_width, parts=self.parts))
        else:
            maps.append(bodypart_heatmaps(keypoints, self.heatmap_size, self.stride, self.sigma_p, self.thre,
                                          parts=self.parts, floor=self.part_floor))
        return torch.cat(maps, 0)

    def __call__(self, sample: dict) -> dict:
        from poselib.codecs.heatmap import resize_mask

        sample["targets"] = downsample_pyramid(self.encode(sample["keypoints"]), self.num_scales)
        ignore = resize_mask(sample["ignore_mask"], self.stride, mode="max", output_size=self.heatmap_size)
        # the reference resizes masks and zeroes values below 0.5; pooling the keep-mask does the same
        masks = [(m >= 0.5).float() for m in downsample_pyramid(1.0 - ignore, self.num_scales)]
        sample["masks"] = masks
        return sample


__all__ = [
    "BODY_PARTS", "BodyPartTargets", "MST_PARTS", "NUM_PARTS", "PART_NAMES", "REDUNDANT_PARTS", "REFERENCE_PARTS",
    "REFERENCE_PART_MAP", "bodypart_heatmaps", "cell_centres", "downsample_pyramid", "flip_back", "keypoint_heatmaps",
    "part_affinity_fields", "part_flip_index", "select_parts",
]
