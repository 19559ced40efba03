"""Drawing figures into an RGB image and an integer label map.

Every primitive is drawn twice: anti-aliased into the ``uint8`` RGB image and aliased into a ``uint16`` label
map whose value encodes who owns each pixel, ``person_id << PART_BITS | part``. Person id 0 is "no person"
(background, or a foreground object with part :data:`OCCLUDER`). Pixel coordinates follow poselib's
convention (pixel centres at integers); cv2 calls use fixed-point coordinates (:data:`SHIFT` fractional bits)
so that sub-pixel positions survive.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from poselib.data.synthpose.figure import (
    FACE_DIRECTIONS, FACE_VISIBLE_MIN, HEAD, L_HAND, L_TOE, NECK, NECK_TOP, PELVIS, R_HAND, R_TOE, Figure, Proportions,
)

SHIFT: int = 4
_FIX: float = float(1 << SHIFT)

#: Body parts recorded in the label map (1-based; 0 is "no part").
#: Shirt parts come first and trouser parts next, each with the parts long sleeves or legs add last, so that
#: a garment is one contiguous range of part codes.
PART_NAMES: tuple[str, ...] = (
    "none",
    "chest", "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm",
    "hips", "left_thigh", "right_thigh", "left_shank", "right_shank",
    "neck", "head", "left_hand", "right_hand", "left_foot", "right_foot", "chest_mark",
)
PART = {name: i for i, name in enumerate(PART_NAMES)}
PART_BITS: int = 5
PART_MASK: int = (1 << PART_BITS) - 1
#: Part code of foreground objects (owner id 0).
OCCLUDER: int = 1
#: Largest person id a ``uint16`` label map can hold.
MAX_PERSON_ID: int = (1 << (16 - PART_BITS)) - 1

SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 150), (224, 172, 125), (198, 134, 90), (141, 85, 50), (92, 56, 36)], dtype=np.float64
)
HAIR_COLOURS = np.array(
    [(25, 18, 12), (60, 40, 25), (105, 70, 40), (205, 170, 110), (150, 60, 30), (165, 165, 160)], dtype=np.float64
)
TEXTURES: tuple[str, ...] = ("plain", "stripes", "noise")


def encode_label(person_id: int, part: int) -> int:
    """Label-map value of ``part`` of person ``person_id``."""
    return (int(person_id) << PART_BITS) | int(part)


@dataclass(frozen=True)
class Appearance:
    """How a person looks. Colours are RGB 0..255; ``hairline`` is the cosine threshold above which the head is
    hair (lower: more hair); ``stripe_period`` is in body units."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    shoes: tuple[float, float, float]
    emblem: tuple[float, float, float]
    long_sleeves: bool
    long_trousers: bool
    hairline: float
    shirt_texture: str
    trousers_texture: str
    stripe_period: float
    stripe_angle: float
    texture_seed: int


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _tone(palette: np.ndarray, u: np.ndarray) -> tuple[float, float, float]:
    """A palette entry picked by ``u[0]``, brightness-scaled by ``u[1]`` (+-8%) and tinted by ``u[2:5]``."""
    base = palette[min(int(u[0] * len(palette)), len(palette) - 1)]
    scale = 0.92 + 0.16 * u[1]
    return tuple(min(max(float(c) * scale + 12.0 * (t - 0.5), 0.0), 255.0) for c, t in zip(base, u[2:5]))


def _pick(u: float, weights: tuple[float, ...]) -> int:
    """Index drawn from ``weights`` (summing to 1) by the uniform number ``u``."""
    total = 0.0
    for i, w in enumerate(weights):
        total += w
        if u < total:
            return i
    return len(weights) - 1


#: Uniform numbers :func:`sample_appearance` draws (a fixed count, so streams after it do not shift).
APPEARANCE_DRAWS: int = 29


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Skin, hair, clothes (colours, sleeve and leg length, textures) and a chest emblem of one person."""
    u = rng.random(APPEARANCE_DRAWS)
    shirt = _hsv(u[0], 0.15 + 0.75 * u[1], 0.25 + 0.7 * u[2])
    emblem = _hsv(u[0] + 0.33 + 0.34 * u[3], 0.5 + 0.5 * u[4], 1.0 if sum(shirt) < 380 else 0.2)
    return Appearance(
        skin=_tone(SKIN_TONES, u[5:10]),
        hair=_tone(HAIR_COLOURS, u[10:15]),
        shirt=shirt,
        trousers=_hsv(u[15], 0.1 + 0.6 * u[16], 0.15 + 0.6 * u[17]),
        shoes=_hsv(u[18], 0.5 * u[19], 0.05 + 0.45 * u[20]),
        emblem=emblem,
        long_sleeves=bool(u[21] < 0.5),
        long_trousers=bool(u[22] < 0.75),
        hairline=-0.45 + 0.3 * float(u[23]),
        shirt_texture=TEXTURES[_pick(u[24], (0.5, 0.3, 0.2))],
        trousers_texture=TEXTURES[_pick(u[25], (0.7, 0.1, 0.2))],
        stripe_period=0.03 + 0.04 * float(u[26]),
        stripe_angle=(0.0, 90.0, 45.0, -45.0)[_pick(u[27], (0.55, 0.25, 0.1, 0.1))],
        texture_seed=int(u[28] * 2**31),
    )


# --------------------------------------------------------------------------------------------------------------
# primitives

_ARC_N = 9
_ARC_ANGLES = np.concatenate([np.linspace(np.pi / 2, 3 * np.pi / 2, _ARC_N), np.linspace(-np.pi / 2, np.pi / 2, _ARC_N)])
_ARC_COS = np.cos(_ARC_ANGLES)[None, :, None]
_ARC_SIN = np.sin(_ARC_ANGLES)[None, :, None]
_ARC_AT_END = np.repeat([0.0, 1.0], _ARC_N)  # 0 for the points around the start, 1 around the end
_ARC_C, _ARC_S = _ARC_COS.ravel(), _ARC_SIN.ravel()
_X_AXIS = np.array([1.0, 0.0])
_PERPENDICULAR = np.array([-1.0, 1.0])


def _fix(points) -> np.ndarray:
    """Pixel coordinates to cv2 fixed point (``SHIFT`` fractional bits)."""
    return np.round(np.asarray(points, dtype=np.float64) * _FIX).astype(np.int32)


def capsule_polygons(p: np.ndarray, q: np.ndarray, r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """Convex outlines ``(N, 18, 2)`` of tapered capsules from ``p (N, 2)`` (radius ``r0 (N,)``) to ``q (N, 2)``
    (radius ``r1 (N,)``): a half circle around each end, joined by straight sides, in pixels."""
    d = q - p
    length = np.hypot(d[:, 0], d[:, 1])[:, None]
    u = np.where(length > 1e-9, d / np.maximum(length, 1e-9), _X_AXIS)
    n = u[:, ::-1] * _PERPENDICULAR  # u turned by 90 degrees
    at_end = _ARC_AT_END[None, :, None]
    centres = p[:, None, :] + at_end * d[:, None, :]
    radii = (r0[:, None] + (r1 - r0)[:, None] * _ARC_AT_END)[:, :, None]
    return centres + radii * (_ARC_COS * u[:, None, :] + _ARC_SIN * n[:, None, :])


def _fill_polygon(image, label, poly: np.ndarray, colour, code) -> None:
    cv2.fillConvexPoly(image, poly, colour, cv2.LINE_AA, SHIFT)
    if label is not None:
        cv2.fillConvexPoly(label, poly, code, cv2.LINE_8, SHIFT)


def fill_disc(image, label, centre, radius: float, colour, code) -> None:
    """A filled disc into ``image`` (anti-aliased) and ``label`` (value ``code``; skipped when ``label`` is None)."""
    c = (int(round(centre[0] * _FIX)), int(round(centre[1] * _FIX)))
    r = max(int(round(radius * _FIX)), 1)
    cv2.circle(image, c, r, colour, -1, cv2.LINE_AA, SHIFT)
    if label is not None:
        cv2.circle(label, c, r, code, -1, cv2.LINE_8, SHIFT)


def fill_capsule(image, label, p, q, r0: float, r1: float, colour, code) -> None:
    """A tapered capsule from ``p`` (radius ``r0``) to ``q`` (radius ``r1``), pixels (one-off shapes; figures
    batch theirs through :func:`capsule_polygons`)."""
    dx, dy = float(q[0] - p[0]), float(q[1] - p[1])
    length = math.hypot(dx, dy)
    if length <= abs(r0 - r1) or length < 1e-9:
        # one end swallows the other: the shape is a disc (the arc polygon would not be convex)
        c, r = (p, r0) if r0 >= r1 else (q, r1)
        fill_disc(image, label, c, r, colour, code)
        return
    ux, uy = dx / length, dy / length
    r = r0 + (r1 - r0) * _ARC_AT_END
    cx, cy = p[0] + dx * _ARC_AT_END, p[1] + dy * _ARC_AT_END
    poly = np.empty((len(r), 2), dtype=np.int32)
    poly[:, 0] = np.round((cx + r * (_ARC_C * ux - _ARC_S * uy)) * _FIX)
    poly[:, 1] = np.round((cy + r * (_ARC_C * uy + _ARC_S * ux)) * _FIX)
    _fill_polygon(image, label, poly, colour, code)


def fill_hull(image, label, points: np.ndarray, colour, code) -> None:
    """Fill the convex hull of ``points (N, 2)``, pixels."""
    hull = cv2.convexHull(np.asarray(points, dtype=np.float32)).reshape(-1, 2)
    _fill_polygon(image, label, _fix(hull), colour, code)


def _crop_box(centre, extent: float, shape) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0, y0 = max(int(math.floor(centre[0] - extent)), 0), max(int(math.floor(centre[1] - extent)), 0)
    x1, y1 = min(int(math.ceil(centre[0] + extent)) + 1, w), min(int(math.ceil(centre[1] + extent)) + 1, h)
    return x0, y0, x1, y1


# --------------------------------------------------------------------------------------------------------------
# head

_HAIR_AXIS = np.array([0.0, -0.6, 0.8])  # unit; hair covers the back and the top of the head
_EYES = np.stack([FACE_DIRECTIONS["left_eye"], FACE_DIRECTIONS["right_eye"]], axis=1)
_EYE_COS = 0.985  # angular radius of an eye on the unit head sphere (about 10 degrees)
_EYE_COLOUR = np.array([35.0, 25.0, 25.0])
#: Heads smaller than this radius (pixels) are drawn as two discs: detail would be sub-pixel anyway.
SMALL_HEAD_PX: float = 3.5


def draw_head(image, label, figure: Figure, origin, height_px: float, look: Appearance, code: int) -> None:
    """Shade the head over its pixel box: skin, a hair cap, eyes and a mouth, lit from the camera; the label map
    gets the silhouette. ``origin`` is the pelvis pixel position, ``height_px`` the standing height.

    The head is an ellipsoid aligned with the image axes (see :attr:`Proportions.head_axes`) whose surface pattern
    turns with the head: pixel ``(u, v)`` of the unit disc sees the unit-sphere point ``(u, v, -sqrt(1-u²-v²))``,
    which the head rotation maps to head coordinates.
    """
    rot = figure.head_rotation
    rx, ry = figure.proportions.head_axes[0] * height_px, figure.proportions.head_axes[1] * height_px
    centre = origin + height_px * figure.points[HEAD, :2]
    if rx < SMALL_HEAD_PX:
        _draw_small_head(image, label, figure, centre, rx, ry, look, code)
        return
    x0, y0, x1, y1 = _crop_box(centre, ry + 1.5, image.shape)
    if x0 >= x1 or y0 >= y1:
        return
    u = ((np.arange(x0, x1) - centre[0]) / rx)[None, :]
    v = ((np.arange(y0, y1) - centre[1]) / ry)[:, None]
    d2 = u * u + v * v
    alpha = np.clip((1.0 - np.sqrt(d2)) * rx + 0.5, 0.0, 1.0)
    front = np.sqrt(np.maximum(1.0 - d2, 0.0))  # = -z of the visible unit-sphere point, the Lambert term
    q = u[..., None] * rot[0] + v[..., None] * rot[1] - front[..., None] * rot[2]  # head coordinates (rot.T @ p)
    hair = (q @ _HAIR_AXIS > look.hairline)[..., None]
    eyes = ((q @ _EYES).max(axis=-1) > _EYE_COS)[..., None] & ~hair
    colour = np.where(hair, np.asarray(look.hair), np.asarray(look.skin))
    colour = np.where(eyes, _EYE_COLOUR, colour) * (0.62 + 0.38 * front)[..., None]
    crop = image[y0:y1, x0:x1]
    crop[:] = crop + alpha[..., None] * (colour - crop) + 0.5
    label[y0:y1, x0:x1][d2 < 1.0] = code

    mouth = rot @ FACE_DIRECTIONS["mouth"]
    if mouth[2] < -0.3:  # facing the camera
        at = centre + np.array([mouth[0] * rx, mouth[1] * ry])
        size = (max(int(0.3 * rx * _FIX), 8), max(int(0.08 * ry * _FIX), 4))
        angle = math.degrees(math.atan2(rot[1, 0], rot[0, 0]))
        at = (round(at[0] * _FIX), round(at[1] * _FIX))
        cv2.ellipse(image, at, size, angle, 0, 360, (150, 55, 60), -1, cv2.LINE_AA, SHIFT)


def _draw_small_head(image, label, figure: Figure, centre, rx: float, ry: float, look: Appearance, code: int) -> None:
    """A hair ellipse with a skin disc shifted toward where the face points (none when it is turned away)."""
    axes = (max(int(rx * _FIX), 1), max(int(ry * _FIX), 1))
    c = (int(round(centre[0] * _FIX)), int(round(centre[1] * _FIX)))
    cv2.ellipse(image, c, axes, 0, 0, 360, look.hair, -1, cv2.LINE_AA, SHIFT)
    cv2.ellipse(label, c, axes, 0, 0, 360, code, -1, cv2.LINE_8, SHIFT)
    forward = figure.head_rotation @ np.array([0.0, 0.15, -1.0])
    if forward[2] < -0.1:  # the face looks toward the camera
        fill_disc(image, None, centre + 0.35 * np.array([rx, ry]) * forward[:2], 0.75 * rx, look.skin, code)


# --------------------------------------------------------------------------------------------------------------
# clothes


def _torso_front_details(image, label, figure: Figure, origin, height_px, look: Appearance, code: int) -> None:
    """V collar, two buttons and an emblem on the left chest, drawn only when the chest faces the camera:
    the front/back cue shirt fronts give in photos."""
    rot = figure.torso_rotation
    if rot[2, 2] < 0.25:  # the chest's front normal (-z of the torso) must point at the camera
        return
    p = figure.proportions
    anchor = figure.points[PELVIS] + rot @ np.array([0.0, -p.torso - 0.02, -1.02 * p.chest_half[1]])
    # collar corners and tip, two buttons, the emblem (torso frame: +x the person's left, +y down)
    offsets = np.array([[-0.04, 0.0, 0.0], [0.04, 0.0, 0.0], [0.0, 0.055, 0.0], [0.0, 0.09, 0.0], [0.0, 0.14, 0.0],
                        [0.06, 0.07, 0.0]])
    at = origin + height_px * (anchor + offsets @ rot.T)[:, :2]
    fill_hull(image, label, at[:3], look.skin, code)
    button = tuple(0.6 * c for c in look.shirt)
    for k in (3, 4):
        fill_disc(image, label, at[k], max(0.007 * height_px, 0.6), button, code)
    fill_disc(image, label, at[5], max(0.022 * height_px, 0.8), look.emblem, code)


@functools.lru_cache(maxsize=1)
def _weave_tile() -> np.ndarray:
    """A fixed ``(1024, 1024)`` brightness field in [0.7, 1.15] (noise at half resolution, upsampled) that
    "noise" garments crop from at an offset given by their texture seed, instead of drawing new noise."""
    small = np.random.default_rng(20240601).random((512, 512), dtype=np.float32) * np.float32(0.45) + np.float32(0.7)
    return cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_LINEAR)


def _texture(image, label, box, codes: tuple[int, int], kind: str, look: Appearance, axis, height_px: float) -> None:
    """Modulate the pixels inside ``box`` whose label lies in the inclusive range ``codes`` with stripes or
    noise."""
    if kind == "plain":
        return
    x0, y0, x1, y1 = box
    mask = cv2.inRange(label[y0:y1, x0:x1], codes[0], codes[1])
    bx, by, bw, bh = cv2.boundingRect(mask)
    if bw == 0:
        return
    # from here on only the garment's own bounding rectangle
    mask = mask[by:by + bh, bx:bx + bw]
    x0, y0, x1, y1 = x0 + bx, y0 + by, x0 + bx + bw, y0 + by + bh
    crop = image[y0:y1, x0:x1]
    if kind == "stripes":
        period = max(look.stripe_period * height_px, 3.0)
        theta = math.atan2(axis[1], axis[0]) + math.radians(look.stripe_angle)
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] * np.float32(2.0 * math.cos(theta) / period)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] * np.float32(2.0 * math.sin(theta) / period)
        # xs + ys is offset by 1e4 so that truncation toward zero acts as a floor
        band = ((xs + ys + np.float32(1e4)).astype(np.int32) & 1).astype(np.uint8)
        mask = cv2.bitwise_and(mask, mask, mask=band)
        textured = cv2.convertScaleAbs(crop, alpha=0.62)
    else:
        tile = _weave_tile()
        if y1 - y0 > tile.shape[0] or x1 - x0 > tile.shape[1]:  # a garment bigger than the tile: stretch it
            tile = cv2.resize(tile, (max(x1 - x0, tile.shape[1]), max(y1 - y0, tile.shape[0])))
        oy = look.texture_seed % (tile.shape[0] - (y1 - y0) + 1)
        ox = (look.texture_seed // 7) % (tile.shape[1] - (x1 - x0) + 1)
        factor = tile[oy:oy + y1 - y0, ox:ox + x1 - x0]
        textured = cv2.multiply(crop, cv2.cvtColor(factor, cv2.COLOR_GRAY2RGB), dtype=cv2.CV_8U)
    np.copyto(crop, textured, where=(mask != 0)[..., None])


# --------------------------------------------------------------------------------------------------------------
# figures

#: Limbs as (from point, to point, part, clothing). Clothing picks the colour: "shirt", "sleeve" (shirt or
#: skin), "skin", "trousers", "leg" (trousers or skin), "shoes".
LIMBS: tuple[tuple[int, int, str, str], ...] = (
    (5, 7, "left_upper_arm", "shirt"), (7, 9, "left_forearm", "sleeve"), (9, L_HAND, "left_hand", "skin"),
    (6, 8, "right_upper_arm", "shirt"), (8, 10, "right_forearm", "sleeve"), (10, R_HAND, "right_hand", "skin"),
    (11, 13, "left_thigh", "trousers"), (13, 15, "left_shank", "leg"), (15, L_TOE, "left_foot", "shoes"),
    (12, 14, "right_thigh", "trousers"), (14, 16, "right_shank", "leg"), (16, R_TOE, "right_foot", "shoes"),
    (NECK, NECK_TOP, "neck", "skin"),
)
_LIMB_FROM = np.array([limb[0] for limb in LIMBS])
_LIMB_TO = np.array([limb[1] for limb in LIMBS])
_LIMB_PART = [PART[limb[2]] for limb in LIMBS]
_NECK = len(LIMBS) - 1
#: Depth biases (body units) ordering parts at equal depth: torso, then neck, then limbs (arms hanging at the
#: sides overlap the torso's edge), then the head.
_TORSO_BIAS, _NECK_BIAS, _HEAD_BIAS = 0.03, 0.02, -0.03
#: People shorter than this (pixels) skip clothing texture and shirt-front details, which would be sub-pixel.
DETAIL_MIN_HEIGHT_PX: float = 40.0


@functools.lru_cache(maxsize=4096)
def _limb_radii(p: Proportions) -> np.ndarray:
    """``(len(LIMBS), 2)`` radii at both ends of each limb, body units."""
    return np.array([
        p.upper_arm_radius, p.forearm_radius, (p.hand_radius, 0.9 * p.hand_radius),
        p.upper_arm_radius, p.forearm_radius, (p.hand_radius, 0.9 * p.hand_radius),
        p.thigh_radius, p.shank_radius, (p.foot_radius, p.foot_radius),
        p.thigh_radius, p.shank_radius, (p.foot_radius, p.foot_radius),
        (p.neck_radius, p.neck_radius),
    ])


@dataclass(frozen=True)
class FigureDrawing:
    """What :func:`draw_figure` reports: keypoint pixel positions ``(17, 2)``, how much each keypoint faces
    the camera ``(17,)`` (:meth:`~poselib.data.synthpose.figure.Figure.facing`), the pixel box ``(x0, y0, x1,
    y1)`` it drew in (clipped to the image), and how many label pixels it owned right after drawing."""

    keypoints: np.ndarray
    facing: np.ndarray
    box: tuple[int, int, int, int]
    pixels: int


def figure_extent(figure: Figure) -> np.ndarray:
    """``(x0, y0, x1, y1)`` body units around the pelvis that the drawn figure can cover."""
    pts = figure.points[:, :2]
    margin = 0.07
    lo, hi = pts.min(axis=0) - margin, pts.max(axis=0) + margin
    return np.array([lo[0], lo[1], hi[0], hi[1]])


def draw_figure(
    image: np.ndarray,
    label: np.ndarray,
    figure: Figure,
    origin: np.ndarray,
    height_px: float,
    look: Appearance,
    person_id: int,
) -> FigureDrawing:
    """Draw ``figure`` with its pelvis at pixel ``origin`` and standing height ``height_px``.

    Parts are painted far to near by their depth, so near-side limbs cover the torso and far-side limbs hide
    behind it; parts behind the body are shaded darker. ``image``: ``(H, W, 3) uint8``; ``label``: ``(H, W)
    uint16``, both modified in place.
    """
    if not 1 <= person_id <= MAX_PERSON_ID:
        raise ValueError(f"person_id must lie in [1, {MAX_PERSON_ID}], got {person_id}")
    origin = np.asarray(origin, dtype=np.float64)
    hp = float(height_px)
    xy = origin + hp * figure.points[:, :2]
    z = figure.points[:, 2]
    base = person_id << PART_BITS

    radii = _limb_radii(figure.proportions) * hp
    start, end = xy[_LIMB_FROM], xy[_LIMB_TO]
    polygons = list(_fix(capsule_polygons(start, end, radii[:, 0], radii[:, 1])))
    as_disc = (np.hypot(*(end - start).T) <= np.abs(radii[:, 0] - radii[:, 1])).tolist()
    chest_z, hips_z = float(figure.chest[:, 2].mean()), float(figure.hips[:, 2].mean())
    depth = 0.5 * (z[_LIMB_FROM] + z[_LIMB_TO])
    depth[_NECK] += _NECK_BIAS
    # limbs behind the body's centre are in its shadow
    shade = 1.0 - 0.28 * np.clip((depth - 0.5 * (chest_z + hips_z)) / 0.1, 0.0, 1.0)
    clothes = {
        "shirt": look.shirt, "sleeve": look.shirt if look.long_sleeves else look.skin, "skin": look.skin,
        "trousers": look.trousers, "leg": look.trousers if look.long_trousers else look.skin, "shoes": look.shoes,
    }
    colours = (np.array([clothes[limb[3]] for limb in LIMBS]) * shade[:, None]).tolist()

    # (depth, kind, index): kind 0 a limb, 1 the chest, 2 the hips, 3 the head
    items = [(d, 0, i) for i, d in enumerate(depth.tolist())]
    items += [(chest_z + _TORSO_BIAS, 1, 0), (hips_z + _TORSO_BIAS, 2, 0), (float(z[HEAD]) + _HEAD_BIAS, 3, 0)]
    facing = figure.facing()
    detailed = hp >= DETAIL_MIN_HEIGHT_PX
    for _, kind, i in sorted(items, key=lambda item: (-item[0], item[1], item[2])):
        if kind == 0:
            code = base | _LIMB_PART[i]
            if as_disc[i]:
                j = 0 if radii[i, 0] >= radii[i, 1] else 1
                fill_disc(image, label, (start, end)[j][i], radii[i, j], colours[i], code)
            else:
                _fill_polygon(image, label, polygons[i], colours[i], code)
        elif kind == 1:
            fill_hull(image, label, origin + hp * figure.chest[:, :2], look.shirt, base | PART["chest"])
            if detailed:
                _torso_front_details(image, label, figure, origin, hp, look, base | PART["chest_mark"])
        elif kind == 2:
            fill_hull(image, label, origin + hp * figure.hips[:, :2], look.trousers, base | PART["hips"])
        else:
            draw_head(image, label, figure, origin, hp, look, base | PART["head"])
            # nose and ears stick out of the head ellipsoid, so they are discs drawn over it
            feature = tuple(0.82 * c for c in look.skin)
            for k, radius in ((3, 0.017), (4, 0.017), (0, 0.011)):
                if facing[k] > FACE_VISIBLE_MIN[k]:
                    fill_disc(image, label, xy[k], max(radius * hp, 0.7), feature, base | PART["head"])

    ext = figure_extent(figure) * hp
    h, w = label.shape
    box = (
        max(int(origin[0] + ext[0]) - 1, 0), max(int(origin[1] + ext[1]) - 1, 0),
        min(int(origin[0] + ext[2]) + 2, w), min(int(origin[1] + ext[3]) + 2, h),
    )
    if box[0] >= box[2] or box[1] >= box[3]:
        return FigureDrawing(keypoints=xy[:17].copy(), facing=facing, box=box, pixels=0)
    if detailed:
        axis = xy[NECK] - xy[PELVIS]
        shirt = (base | PART["chest"], base | PART["right_forearm" if look.long_sleeves else "right_upper_arm"])
        trousers = (base | PART["hips"], base | PART["right_shank" if look.long_trousers else "right_thigh"])
        _texture(image, label, box, shirt, look.shirt_texture, look, axis, hp)
        _texture(image, label, box, trousers, look.trousers_texture, look, axis, hp)
    pixels = cv2.countNonZero(cv2.inRange(label[box[1]:box[3], box[0]:box[2]], base, base | PART_MASK))
    return FigureDrawing(keypoints=xy[:17].copy(), facing=facing, box=box, pixels=pixels)
