"""Simple Pose's greedy keypoint assignment (after CMU-Pose's greedy parser), vectorised with numpy and torch.

From keypoint maps ``(K, H, W)`` and part maps (body-part heatmaps ``(L, H, W)`` or PAFs ``(2L, H, W)``) at one
resolution, usually the input's:

1. **Peaks**: 3x3 max-pool NMS on every keypoint map, kept above ``peak_threshold`` (the reference's
   ``thre1``), refined to the weighted centroid of their 3x3 neighbourhood; score = the peak's value.
2. **Candidate parts**: for every part type ``(a, b)`` and every pair of candidates, ``num_samples`` points
   are sampled along the segment. Body parts: the samples' mean plus a length penalty
   ``min(0.5 * H / length - 1, 0)``; PAFs: the mean projection of the field on the segment's direction, plus
   the same penalty. A pair is kept when at least ``connect_ratio`` of its samples exceed ``part_threshold``
   (``thre2``) and its score is positive; pairs are ranked by ``0.5 score + 0.25 s_a + 0.25 s_b`` and matched
   greedily one to one (one keypoint per part of a type).
3. **Assembly**, over part types in order (the spanning tree first, redundant parts last): a part joins the
   person holding one of its keypoints, replaces a lower-scoring part that holds a different keypoint in the
   same slot (so redundant parts give way to higher-scoring ones), merges two disjoint people unless its
   score is below ``connection_tolerance`` times the weaker person's weakest part, or starts a new person.
4. People with fewer than ``min_keypoints`` keypoints or a mean score below ``min_mean_score`` are dropped.
   A person's score is ``1 - 1/total`` (total = its keypoint scores plus its part scores), as in the reference.

Only loops over part types and over a type's accepted candidate pairs remain in Python, never over pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from poselib.codecs.bodyparts import BODY_PARTS


@dataclass(frozen=True)
class GreedyConfig:
    """Thresholds of the greedy assignment (defaults: the reference code's ``utils/config``)."""

    peak_threshold: float = 0.1
    part_threshold: float = 0.1
    connect_ratio: float = 0.8
    num_samples: int = 10
    length_rate: float = 16.0
    connection_tolerance: float = 0.7
    min_keypoints: int = 2
    min_mean_score: float = 0.45
    max_peaks: int = 30
    refine: bool = True


def _as_maps(maps) -> torch.Tensor:
    t = maps if isinstance(maps, torch.Tensor) else torch.as_tensor(np.asarray(maps, dtype=np.float32))
    return t.detach().float().cpu()


_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def find_candidates(keypoint_maps, threshold: float = 0.1, max_peaks: int = 30, refine: bool = True) -> list[np.ndarray]:
    """Keypoint candidates per type: a list of ``K`` arrays ``(n_k, 3)`` of ``[x, y, score]`` in map pixels,
    highest score first, at most ``max_peaks`` per type.

    A peak is a pixel above ``threshold`` that is not below any of its 8 neighbours, i.e. it survives 3x3
    max-pool NMS. Only the pixels above the threshold are examined (a full-map max-pool of 17 maps at image
    resolution costs far more than the rest of the assignment). ``refine`` moves each peak to the weighted
    centroid of its 3x3 neighbourhood.
    """
    hm = _as_maps(keypoint_maps).numpy()
    k, h, w = hm.shape
    # pad by one pixel of -inf so neighbours never leave the array: border pixels compare with nothing
    padded = np.pad(hm, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    flat = padded.reshape(-1)
    row = w + 2
    centre = np.flatnonzero(padded > threshold)  # -inf padding never passes
    values = flat[centre]
    for dy, dx in _NEIGHBOURS:  # keep the survivors of each comparison: the candidate set shrinks fast
        keep = values >= flat[centre + dy * row + dx]
        centre, values = centre[keep], values[keep]
    ks, rest = np.divmod(centre, (h + 2) * row)
    ys, xs = np.divmod(rest, row)
    ys, xs, values = ys - 1, xs - 1, values.astype(np.float64)
    if refine:
        sum_w, sum_x, sum_y = np.zeros_like(values), np.zeros_like(values), np.zeros_like(values)
        for dy, dx in ((0, 0),) + _NEIGHBOURS:
            neighbour = flat[centre + dy * row + dx]
            weight = np.where(np.isfinite(neighbour), np.maximum(neighbour, 0.0), 0.0)
            sum_w += weight
            sum_x += weight * (xs + dx)
            sum_y += weight * (ys + dy)
        x, y = sum_x / np.maximum(sum_w, 1e-12), sum_y / np.maximum(sum_w, 1e-12)
    else:
        x, y = xs.astype(np.float64), ys.astype(np.float64)
    order = np.lexsort((-values, ks))  # by type, then by score, highest first
    rows = np.stack([x, y, values], 1)[order]
    counts = np.bincount(ks, minlength=k)
    return [c[:max_peaks] for c in np.split(rows, np.cumsum(counts)[:-1])]


def score_pairs(part_map, cand_a: np.ndarray, cand_b: np.ndarray, image_height: float,
                config: GreedyConfig = GreedyConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of every candidate pair of one part type.

    ``part_map``: ``(H, W)`` body-part heatmap or ``(2, H, W)`` PAF; ``cand_a (na, 3)``, ``cand_b (nb, 3)``.
    Returns ``score (na, nb)``, ``accepted (na, nb)`` bool and ``length (na, nb)`` in map pixels.
    """
    pm = _as_maps(part_map).numpy()
    paf = pm.ndim == 3
    h, w = pm.shape[-2:]
    a, b = cand_a[:, None, :2], cand_b[None, :, :2]
    vec = b - a  # (na, nb, 2)
    length = np.linalg.norm(vec, axis=-1)
    t = np.linspace(0.0, 1.0, config.num_samples)
    points = a[:, :, None, :] + t[None, None, :, None] * vec[:, :, None, :]  # (na, nb, n, 2)
    xi = np.clip(np.rint(points[..., 0]).astype(np.int64), 0, w - 1)
    yi = np.clip(np.rint(points[..., 1]).astype(np.int64), 0, h - 1)
    if paf:
        unit = vec / np.maximum(length, 1e-6)[..., None]
        samples = pm[0][yi, xi] * unit[..., None, 0] + pm[1][yi, xi] * unit[..., None, 1]
    else:
        samples = pm[yi, xi]
    penalty = np.minimum(0.5 * image_height / np.maximum(length, 1e-6) - 1.0, 0.0)
    score = samples.mean(-1) + penalty
    ratio = (samples > config.part_threshold).mean(-1)
    accepted = (ratio >= config.connect_ratio) & (score > 0) & (length > 1e-6)
    return score, accepted, length


def match_parts(score: np.ndarray, accepted: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> np.ndarray:
    """Greedy one-to-one matching of a part type's accepted pairs by ``0.5 score + 0.25 s_a + 0.25 s_b``.
    Returns ``(m, 3)`` rows ``[index_a, index_b, score]``, best first."""
    ia, ib = np.nonzero(accepted)
    if ia.size == 0:
        return np.zeros((0, 3))
    ranked = 0.5 * score[ia, ib] + 0.25 * score_a[ia] + 0.25 * score_b[ib]
    order = np.argsort(-ranked, kind="stable")
    used_a, used_b = set(), set()
    rows = []
    for i in order:
        x, y = int(ia[i]), int(ib[i])
        if x in used_a or y in used_b:
            continue
        used_a.add(x)
        used_b.add(y)
        rows.append((x, y, score[x, y]))
        if len(used_a) == min(score.shape):
            break
    return np.asarray(rows, dtype=np.float64)


class _People:
    """Growing person table: ``slot[p, k]`` the candidate index of keypoint ``k`` (-1 empty), the score of the
    part that brought it, the total score, the longest part and the weakest part."""

    def __init__(self, num_keypoints: int):
        self.slot = np.full((0, num_keypoints), -1, dtype=np.int64)
        self.slot_part = np.zeros((0, num_keypoints))
        self.total = np.zeros(0)
        self.longest = np.zeros(0)
        self.weakest = np.zeros(0)

    def add(self, a: int, ia: int, b: int, ib: int, score: float, length: float, kp_scores: tuple[float, float]) -> None:
        slot = np.full((1, self.slot.shape[1]), -1, dtype=np.int64)
        slot[0, a], slot[0, b] = ia, ib
        part = np.zeros((1, self.slot.shape[1]))
        part[0, a] = part[0, b] = score
        self.slot = np.vstack([self.slot, slot])
        self.slot_part = np.vstack([self.slot_part, part])
        self.total = np.append(self.total, sum(kp_scores) + score)
        self.longest = np.append(self.longest, length)
        self.weakest = np.append(self.weakest, score)

    def attach(self, p: int, k: int, index: int, kp_score: float, old_kp_score: float, score: float, length: float) -> None:
        old_part = self.slot_part[p, k] if self.slot[p, k] >= 0 else 0.0
        self.total[p] += kp_score + score - old_kp_score - old_part
        self.slot[p, k] = index
        self.slot_part[p, k] = score
        self.longest[p] = max(self.longest[p], length)
        self.weakest[p] = min(self.weakest[p], score)

    def merge(self, keep: int, drop: int, score: float, length: float) -> None:
        taken = self.slot[drop] >= 0
        self.slot[keep, taken] = self.slot[drop, taken]
        self.slot_part[keep, taken] = self.slot_part[drop, taken]
        self.total[keep] += self.total[drop] + score
        self.longest[keep] = max(self.longest[keep], self.longest[drop], length)
        self.weakest[keep] = min(self.weakest[keep], self.weakest[drop], score)
        for name in ("slot", "slot_part", "total", "longest", "weakest"):
            setattr(self, name, np.delete(getattr(self, name), drop, axis=0))


def assemble(candidates: Sequence[np.ndarray], connections: Sequence[np.ndarray], parts: Sequence[tuple[int, int]],
             config: GreedyConfig = GreedyConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Assemble people from matched parts. ``connections[l]``: :func:`match_parts`' rows for part ``l`` with a
    fourth column, the part's length. Returns ``poses (n, K, 3)`` ``[x, y, score]`` (zeros where missing) in
    the candidates' pixels and ``scores (n,)``."""
    num_keypoints = len(candidates)
    people = _People(num_keypoints)
    for (a, b), rows in zip(parts, connections):
        for ia_f, ib_f, score, length in rows:
            ia, ib = int(ia_f), int(ib_f)
            sa, sb = candidates[a][ia, 2], candidates[b][ib, 2]
            found = np.flatnonzero((people.slot[:, a] == ia) | (people.slot[:, b] == ib))
            if found.size == 1:
                p = int(found[0])
                fits = length < config.length_rate * max(people.longest[p], 1e-6)
                if people.slot[p, a] == ia and people.slot[p, b] == ib:
                    continue
                # the keypoint this part would add (or replace) is the end the person does not hold yet
                k, index, kp = (b, ib, sb) if people.slot[p, a] == ia else (a, ia, sa)
                current = people.slot[p, k]
                if current < 0 and fits:
                    people.attach(p, k, index, kp, 0.0, score, length)
                elif current >= 0 and score > people.slot_part[p, k] and fits:
                    if np.any(people.slot[:, k] == index):
                        continue  # the new keypoint already belongs to someone else
                    people.attach(p, k, index, kp, candidates[k][current, 2], score, length)
            elif found.size == 2:
                p, q = int(found[0]), int(found[1])
                disjoint = not np.any((people.slot[p] >= 0) & (people.slot[q] >= 0))
                strong = score >= config.connection_tolerance * min(people.weakest[p], people.weakest[q])
                fits = length < config.length_rate * max(people.longest[p], people.longest[q], 1e-6)
                if disjoint and strong and fits:
                    people.merge(p, q, score, length)
            elif found.size == 0:
                people.add(a, ia, b, ib, score, length, (sa, sb))
    counts = (people.slot >= 0).sum(1)
    keep = (counts >= config.min_keypoints) & (people.total / np.maximum(counts, 1) >= config.min_mean_score)
    slots = people.slot[keep]
    poses = np.zeros((slots.shape[0], num_keypoints, 3))
    for k in range(num_keypoints):
        present = slots[:, k] >= 0
        if present.any():
            poses[present, k] = candidates[k][slots[present, k]]
    scores = 1.0 - 1.0 / np.maximum(people.total[keep], 1e-6)
    return poses, scores


def group(keypoint_maps, part_maps, parts: Sequence[tuple[int, int]] = BODY_PARTS,
          config: GreedyConfig = GreedyConfig(), *, encoding: str = "bodyparts",
          return_steps: bool = False):
    """People from one image's maps. ``keypoint_maps (K, H, W)``; ``part_maps (L, H, W)`` (body parts) or
    ``(2L, H, W)`` (``encoding="paf"``). Returns ``poses (n, K, 3)`` in map pixels and ``scores (n,)``; with
    ``return_steps`` also a dict of the intermediate ``candidates`` and ``connections`` (for figures)."""
    if encoding not in ("bodyparts", "paf"):
        raise ValueError(f"encoding must be 'bodyparts' or 'paf', got {encoding!r}")
    km, pm = _as_maps(keypoint_maps), _as_maps(part_maps)
    per_part = 2 if encoding == "paf" else 1
    if pm.shape[0] != per_part * len(parts):
        raise ValueError(f"{pm.shape[0]} part channels for {len(parts)} parts with encoding {encoding!r}")
    height = float(km.shape[-2])
    candidates = find_candidates(km, config.peak_threshold, config.max_peaks, config.refine)
    pm_np = pm.numpy()
    connections = []
    for l, (a, b) in enumerate(parts):
        ca, cb = candidates[a], candidates[b]
        if len(ca) == 0 or len(cb) == 0:
            connections.append(np.zeros((0, 4)))
            continue
        part_map = pm_np[2 * l : 2 * l + 2] if encoding == "paf" else pm_np[l]
        score, accepted, length = score_pairs(part_map, ca, cb, height, config)
        rows = match_parts(score, accepted, ca[:, 2], cb[:, 2])
        lengths = length[rows[:, 0].astype(int), rows[:, 1].astype(int)] if len(rows) else np.zeros(0)
        connections.append(np.column_stack([rows, lengths]) if len(rows) else np.zeros((0, 4)))
    poses, scores = assemble(candidates, connections, parts, config)
    if return_steps:
        return poses, scores, {"candidates": candidates, "connections": connections}
    return poses, scores


def upsample_maps(maps: torch.Tensor, stride: int, mode: str = "bilinear") -> torch.Tensor:
    """``(N, C, h, w)`` maps at ``stride`` to input resolution ``(N, C, s*h, s*w)`` under poselib's convention:
    with ``align_corners=False`` output pixel ``x`` samples cell ``(x - (s-1)/2) / s``, the cell whose centre is
    at input coordinate ``x``."""
    if stride == 1:
        return maps
    return F.interpolate(maps, scale_factor=stride, mode=mode, align_corners=False)


__all__ = ["GreedyConfig", "assemble", "find_candidates", "group", "match_parts", "score_pairs", "upsample_maps"]
