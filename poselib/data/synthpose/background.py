"""Backdrops, background distractors and foreground objects.

Backdrops are a colour gradient with low-frequency blotches and an optional floor. Distractors (``clutter``)
are shapes plus sticks and jointed sticks with the thickness and colours of limbs, drawn into the image only,
so a model must learn to tell them from people. Foreground objects (``occlusion``) are poles, crates and
bushes drawn *between* people in depth; they are recorded in the label map (owner 0, part
:data:`~poselib.data.synthpose.render.OCCLUDER`) so that keypoints they hide become ``v=1``.

Random draws are made in fixed numbers whatever the knobs, and a knob only decides which candidates are kept,
so raising ``clutter`` adds distractors to a scene without moving the others.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from poselib.data.synthpose.config import MAX_DISTRACTORS
from poselib.data.synthpose.render import (
    OCCLUDER, SHIFT, SKIN_TONES, _fix, capsule_polygons, encode_label, fill_capsule, fill_disc,
)

#: Upper bound on foreground objects per image; each candidate is kept with probability ``occlusion / 2``.
MAX_OCCLUDERS: int = 3


def _colour(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def render_background(rng: np.random.Generator, size: tuple[int, int], clutter: float) -> np.ndarray:
    """A cluttered backdrop ``(H, W, 3) uint8`` RGB.

    ``clutter`` in [0, 1] is the fraction of :data:`MAX_DISTRACTORS` candidate distractors drawn.
    """
    h, w = size
    s = min(h, w)
    base = rng.random(4)
    grid = rng.normal(0, 1, size=(6, 6, 4))
    floor = rng.random(5)
    candidates = rng.random((MAX_DISTRACTORS, 12))

    # gradient between two muted colours, with blotches, computed on a coarse grid and upsampled
    c0 = np.array(_colour(base[0], 0.45 * base[1], 0.35 + 0.6 * base[2]))
    c1 = np.array(_colour(base[0] + 0.3 * (base[3] - 0.5), 0.45 * base[2], 0.3 + 0.6 * base[1]))
    theta = 2 * math.pi * base[3]
    gy, gx = np.meshgrid(np.linspace(-0.5, 0.5, 6), np.linspace(-0.5, 0.5, 6), indexing="ij")
    ramp = (gx * math.cos(theta) + gy * math.sin(theta) + 0.71) / 1.42
    # blotches: mostly brightness, a little colour
    coarse = c0 + ramp[..., None] * (c1 - c0) + 18.0 * grid[..., :1] + 7.0 * grid[..., 1:]
    image = cv2.resize(np.clip(coarse + 0.5, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)

    if floor[0] < 0.6:
        left, right = (0.35 + 0.4 * floor[1]) * h, (0.35 + 0.4 * floor[2]) * h
        right = left + 0.25 * (right - left)  # nearly level horizon
        poly = np.array([[-1.0, left], [w, right], [w, h], [-1.0, h]])
        cv2.fillConvexPoly(image, _fix(poly), _colour(floor[3], 0.4 * floor[4], 0.3 + 0.5 * floor[4]), cv2.LINE_AA, SHIFT)

    _draw_distractors(image, candidates[candidates[:, 0] < clutter], h, w, s)
    return image


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """``(N, 3)`` HSV in [0, 1] to RGB in [0, 255] (vectorised :func:`colorsys.hsv_to_rgb`)."""
    h, sat, v = hsv[:, 0] % 1.0, hsv[:, 1], hsv[:, 2]
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    table = np.stack([np.stack(c, axis=1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return 255.0 * table[i, np.arange(len(h))]


#: Distractor kinds by the cumulative share of candidates: stick, jointed stick, rectangle, ellipse, triangle,
#: head-sized skin disc.
_KIND_EDGES = np.array([0.35, 0.55, 0.7, 0.85, 0.95])


def _draw_distractors(image: np.ndarray, rows: np.ndarray, h: int, w: int, s: int) -> None:
    """Distractors from rows of 12 uniform draws each; geometry and colours are computed for all at once."""
    if not len(rows):
        return
    kind = np.searchsorted(_KIND_EDGES, rows[:, 1], side="right")
    tone = SKIN_TONES[np.minimum((rows[:, 8] * len(SKIN_TONES)).astype(np.int64), len(SKIN_TONES) - 1)]
    skin_like = np.minimum(tone * (0.8 + 0.3 * rows[:, 9:10]), 255.0)
    painted = _hsv_to_rgb(np.stack([rows[:, 8], 0.85 * rows[:, 9], 0.15 + 0.8 * rows[:, 10]], axis=1))
    colours = np.where((rows[:, 7] < 0.3)[:, None] | (kind == 5)[:, None], skin_like, painted).tolist()
    centre = rows[:, 2:4] * [w, h]
    angle = 2 * np.pi * rows[:, 6]
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=1)

    # sticks (one segment) and jointed sticks (two) are capsules: outline them all in one batch
    length = np.where(kind == 0, 0.08 + 0.3 * rows[:, 4], 0.06 + 0.18 * rows[:, 4])[:, None] * s
    radius = (0.006 + 0.02 * rows[:, 5]) * s
    bend = angle + (rows[:, 11] - 0.5) * math.radians(150)
    joint = np.where((kind == 0)[:, None], centre - 0.5 * length * direction, centre)
    tip = np.where((kind == 0)[:, None], centre + 0.5 * length * direction, centre + length * direction)
    end = tip + length * np.stack([np.cos(bend), np.sin(bend)], axis=1)
    segments = _fix(capsule_polygons(
        np.concatenate([joint, tip]), np.concatenate([tip, end]),
        np.concatenate([radius, 0.85 * radius]), np.concatenate([np.where(kind == 0, 0.8, 0.85) * radius, 0.7 * radius]),
    ))
    n = len(rows)
    for i in range(n):
        colour = colours[i]
        if kind[i] == 0:
            cv2.fillConvexPoly(image, segments[i], colour, cv2.LINE_AA, SHIFT)
        elif kind[i] == 1:
            cv2.fillConvexPoly(image, segments[i], colour, cv2.LINE_AA, SHIFT)
            cv2.fillConvexPoly(image, segments[n + i], colour, cv2.LINE_AA, SHIFT)
        elif kind[i] == 2:  # a rotated rectangle
            size = ((0.05 + 0.25 * rows[i, 4]) * s, (0.05 + 0.25 * rows[i, 5]) * s)
            corners = cv2.boxPoints(((float(centre[i, 0]), float(centre[i, 1])), size, math.degrees(angle[i])))
            cv2.fillConvexPoly(image, _fix(corners), colour, cv2.LINE_AA, SHIFT)
        elif kind[i] == 3:  # an ellipse
            axes = (max(int((0.02 + 0.12 * rows[i, 4]) * s * 16), 16), max(int((0.02 + 0.12 * rows[i, 5]) * s * 16), 16))
            at = (int(round(centre[i, 0] * 16)), int(round(centre[i, 1] * 16)))
            cv2.ellipse(image, at, axes, math.degrees(angle[i]), 0, 360, colour, -1, cv2.LINE_AA, SHIFT)
        elif kind[i] == 4:  # a triangle
            t = angle[i] + np.array([0.0, 2.0 + rows[i, 5], 4.0 + rows[i, 11]])
            corners = centre[i] + (0.04 + 0.15 * rows[i, 4]) * s * np.stack([np.cos(t), np.sin(t)], axis=1)
            cv2.fillConvexPoly(image, _fix(corners), colour, cv2.LINE_AA, SHIFT)
        else:  # a head-sized skin disc
            fill_disc(image, None, centre[i], (0.015 + 0.04 * rows[i, 4]) * s, colour, 0)


@dataclass(frozen=True)
class Occluder:
    """A foreground object: ``kind`` (``"pole"``, ``"crate"`` or ``"bush"``), 8 uniform draws shaping it,
    its colour, and ``after``: how many of the image's individually drawn people it is drawn in front of."""

    kind: str
    params: tuple[float, ...]
    colour: tuple[float, float, float]
    after: int


def sample_occluders(rng: np.random.Generator, occlusion: float, num_people: int) -> list[Occluder]:
    """Foreground objects of one image: each of :data:`MAX_OCCLUDERS` candidates is kept with probability
    ``occlusion / 2``."""
    candidates = rng.random((MAX_OCCLUDERS, 12))
    out = []
    for r in candidates[candidates[:, 0] < 0.5 * occlusion]:
        kind = ("pole", "crate", "bush")[min(int(r[1] * 3), 2)]
        if kind == "bush":
            colour = _colour(0.22 + 0.15 * r[2], 0.4 + 0.4 * r[3], 0.25 + 0.4 * r[4])
        else:
            colour = _colour(r[2], 0.6 * r[3], 0.2 + 0.7 * r[4])
        after = min(int(r[11] * (num_people + 1)), num_people)
        out.append(Occluder(kind, tuple(float(v) for v in r[5:]), colour, after=after))
    return out


def draw_occluder(image: np.ndarray, label: np.ndarray, occluder: Occluder) -> None:
    """Draw a foreground object into ``image`` and ``label`` (code ``OCCLUDER`` of owner 0)."""
    h, w = label.shape
    s = min(h, w)
    p = occluder.params
    code = encode_label(0, OCCLUDER)
    if occluder.kind == "pole":
        x, radius = p[0] * w, (0.012 + 0.025 * p[1]) * s
        top, bottom = np.array([x, (0.1 + 0.5 * p[2]) * h]), np.array([x + (p[3] - 0.5) * 0.1 * w, h + radius])
        fill_capsule(image, label, top, bottom, radius, radius, occluder.colour, code)
    elif occluder.kind == "crate":
        cx, half_w, half_h = p[0] * w, (0.08 + 0.15 * p[1]) * s, (0.05 + 0.12 * p[2]) * s
        bottom = (0.75 + 0.35 * p[3]) * h
        top = bottom - 2 * half_h
        box = np.array([[cx - half_w, top], [cx + half_w, top], [cx + half_w, bottom], [cx - half_w, bottom]])
        cv2.fillConvexPoly(image, _fix(box), occluder.colour, cv2.LINE_AA, SHIFT)
        cv2.fillConvexPoly(label, _fix(box), code, cv2.LINE_8, SHIFT)
        # slats make it read as an object rather than a flat patch
        dark = tuple(0.7 * c for c in occluder.colour)
        for k in (1, 2):
            y = bottom - 2 * half_h * k / 3
            left, right = (tuple(int(v) for v in _fix((x, y))) for x in (cx - half_w, cx + half_w))
            cv2.line(image, left, right, dark, max(int(0.01 * s), 1), cv2.LINE_AA, SHIFT)
    else:
        cx, cy, radius = p[0] * w, (0.55 + 0.5 * p[1]) * h, (0.05 + 0.08 * p[2]) * s
        for k, dx in enumerate((-0.8, 0.0, 0.8)):
            r = radius * (0.75 + 0.25 * math.cos(3 * p[3] + k))
            fill_disc(image, label, np.array([cx + dx * radius, cy - 0.3 * radius * (k == 1)]), r, occluder.colour, code)


def add_sensor_noise(image: np.ndarray, rng: np.random.Generator, clutter: float) -> np.ndarray:
    """Add uniform brightness noise of amplitude ``2 + 6 * clutter`` grey levels (saturating)."""
    amplitude = int(round(2 + 6 * clutter))
    h, w = image.shape[:2]
    # random bytes mapped onto 0..2*amplitude through a lookup table: several times cheaper than integers()
    raw = np.frombuffer(rng.bytes(h * w), dtype=np.uint8).reshape(h, w)
    lut = ((np.arange(256) * (2 * amplitude + 1)) >> 8).astype(np.uint8)
    noise = cv2.cvtColor(cv2.LUT(raw, lut), cv2.COLOR_GRAY2RGB)
    return cv2.subtract(cv2.add(image, noise), (amplitude, amplitude, amplitude, 0))
