"""Articulated figures: a kinematic tree with human proportions, joint-angle limits and pose families.

A figure is posed in 3-D and seen through an orthographic camera (a "2.5-D" figure): body yaw foreshortens the
shoulders and hips, and depth decides which limbs are drawn over the torso, so left and right can be told
apart in the image as they can in photos.

Frames and units: lengths are in *body units* (1 = standing height, head top to soles; proportions after
Drillis and Contini). The body frame has its origin at the pelvis centre, ``+x`` toward the person's left,
``+y`` down and ``+z`` toward the person's back. The camera frame has ``+x`` to the image right, ``+y`` down and
``+z`` away from the camera. A figure with yaw 0 faces the camera, so its left side appears on the image right.
Angles are in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from poselib.keypoints import NUM_KEYPOINTS

#: Joint angles of a pose, degrees, with their limits and neutral (standing) values: (name, low, high, neutral).
#: Shoulder/hip flexion swings the limb forward, abduction swings it out sideways, twist turns it about its own
#: axis (which turns the plane the elbow/knee bends in); elbows bend forward, knees backward.
ANGLES: tuple[tuple[str, float, float, float], ...] = (
    ("torso_lean", -20.0, 45.0, 0.0),
    ("torso_side", -20.0, 20.0, 0.0),
    ("torso_twist", -35.0, 35.0, 0.0),
    ("neck_yaw", -70.0, 70.0, 0.0),
    ("neck_pitch", -30.0, 40.0, 0.0),
    ("neck_roll", -20.0, 20.0, 0.0),
    ("l_shoulder_flex", -60.0, 180.0, 0.0),
    ("l_shoulder_abd", -10.0, 175.0, 8.0),
    ("l_shoulder_twist", -40.0, 90.0, 0.0),
    ("l_elbow", 0.0, 150.0, 10.0),
    ("r_shoulder_flex", -60.0, 180.0, 0.0),
    ("r_shoulder_abd", -10.0, 175.0, 8.0),
    ("r_shoulder_twist", -40.0, 90.0, 0.0),
    ("r_elbow", 0.0, 150.0, 10.0),
    ("l_hip_flex", -30.0, 125.0, 0.0),
    ("l_hip_abd", -15.0, 50.0, 3.0),
    ("l_hip_twist", -30.0, 40.0, 0.0),
    ("l_knee", 0.0, 150.0, 3.0),
    ("r_hip_flex", -30.0, 125.0, 0.0),
    ("r_hip_abd", -15.0, 50.0, 3.0),
    ("r_hip_twist", -30.0, 40.0, 0.0),
    ("r_knee", 0.0, 150.0, 3.0),
)
ANGLE_NAMES: tuple[str, ...] = tuple(a[0] for a in ANGLES)
ANGLE_INDEX: dict[str, int] = {name: i for i, name in enumerate(ANGLE_NAMES)}
ANGLE_LOW: np.ndarray = np.array([a[1] for a in ANGLES])
ANGLE_HIGH: np.ndarray = np.array([a[2] for a in ANGLES])
NEUTRAL: np.ndarray = np.array([a[3] for a in ANGLES])
NUM_ANGLES: int = len(ANGLES)

#: Extra points after the 17 COCO keypoints in :attr:`Figure.points`.
NECK, HEAD, L_HAND, R_HAND, L_TOE, R_TOE, PELVIS, NECK_TOP = range(NUM_KEYPOINTS, NUM_KEYPOINTS + 8)
NUM_POINTS: int = NUM_KEYPOINTS + 8
POINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
    "neck", "head", "left_hand", "right_hand", "left_toe", "right_toe", "pelvis", "neck_top",
)

#: The kinematic tree as (child, parent) point indices; the pelvis is the root. Face points hang off the head.
KINEMATIC_TREE: tuple[tuple[int, int], ...] = (
    (11, PELVIS), (13, 11), (15, 13), (L_TOE, 15),
    (12, PELVIS), (14, 12), (16, 14), (R_TOE, 16),
    (NECK, PELVIS), (5, NECK), (7, 5), (9, 7), (L_HAND, 9),
    (6, NECK), (8, 6), (10, 8), (R_HAND, 10),
    (NECK_TOP, NECK), (HEAD, NECK_TOP), (0, HEAD), (1, HEAD), (2, HEAD), (3, HEAD), (4, HEAD),
)

#: Unit directions of face features in the head frame (same axes as the body frame: +x left, +y down,
#: +z back; the face looks toward -z).
FACE_DIRECTIONS: dict[str, np.ndarray] = {
    name: np.asarray(v, dtype=np.float64) / np.linalg.norm(v)
    for name, v in {
        "nose": (0.0, 0.18, -1.0),
        "left_eye": (0.38, -0.1, -0.92),
        "right_eye": (-0.38, -0.1, -0.92),
        "left_ear": (1.0, 0.08, 0.0),
        "right_ear": (-1.0, 0.08, 0.0),
        "mouth": (0.0, 0.55, -0.84),
    }.items()
}

_FACE_MATRIX = np.stack([FACE_DIRECTIONS[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")], axis=1)

#: A face keypoint counts as visible (and nose and ears are drawn) when :meth:`Figure.facing` exceeds this:
#: nose, eyes, ears. The nose and ears stick out, so they stay visible a little past the profile.
FACE_VISIBLE_MIN: tuple[float, ...] = (-0.2, 0.1, 0.1, -0.45, -0.45)
#: A shoulder or hip covered by its own torso counts as hidden when it faces away more than this.
SIDE_VISIBLE_MIN: float = -0.8


@dataclass(frozen=True)
class Proportions:
    """Segment lengths, half-widths and limb radii in body units (defaults: an adult of average build)."""

    torso: float = 0.288  # pelvis centre to the shoulder line
    neck: float = 0.06
    shoulder_half: float = 0.115
    hip_half: float = 0.075
    upper_arm: float = 0.186
    forearm: float = 0.146
    hand: float = 0.07
    thigh: float = 0.245
    shank: float = 0.246
    foot: float = 0.11
    # semi-axes of the head ellipsoid along the image's x and y and the depth; the ellipsoid stays aligned with
    # the image while its surface pattern (face, hair) turns with the head, which keeps drawing cheap
    head_axes: tuple[float, float, float] = (0.052, 0.066, 0.058)
    chest_half: tuple[float, float] = (0.125, 0.055)  # half width, half depth at the shoulders
    waist_half: tuple[float, float] = (0.1, 0.05)
    hips_half: tuple[float, float] = (0.112, 0.055)
    upper_arm_radius: tuple[float, float] = (0.032, 0.026)  # at the proximal and distal joint
    forearm_radius: tuple[float, float] = (0.025, 0.019)
    hand_radius: float = 0.021
    thigh_radius: tuple[float, float] = (0.052, 0.038)
    shank_radius: tuple[float, float] = (0.036, 0.025)
    foot_radius: float = 0.02
    neck_radius: float = 0.026

    def scaled(self, build: float, limbs: float = 1.0) -> "Proportions":
        """Thicker or thinner (``build`` multiplies widths and radii) and longer or shorter limbs (``limbs``)."""

        def b(v):
            return tuple(x * build for x in v) if isinstance(v, tuple) else v * build

        return Proportions(
            torso=self.torso, neck=self.neck, shoulder_half=self.shoulder_half * build, hip_half=self.hip_half * build,
            upper_arm=self.upper_arm * limbs, forearm=self.forearm * limbs, hand=self.hand * limbs,
            thigh=self.thigh * limbs, shank=self.shank * limbs, foot=self.foot, head_axes=self.head_axes,
            chest_half=b(self.chest_half), waist_half=b(self.waist_half), hips_half=b(self.hips_half),
            upper_arm_radius=b(self.upper_arm_radius), forearm_radius=b(self.forearm_radius),
            hand_radius=self.hand_radius * build, thigh_radius=b(self.thigh_radius),
            shank_radius=b(self.shank_radius), foot_radius=self.foot_radius, neck_radius=self.neck_radius * build,
        )


def sample_proportions(rng: np.random.Generator) -> Proportions:
    """Body build (0.85..1.2 times the default widths) and limb length (0.95..1.05) of one person."""
    return Proportions().scaled(build=float(rng.uniform(0.85, 1.2)), limbs=float(rng.uniform(0.95, 1.05)))


def rotation(axis: str, degrees: float) -> np.ndarray:
    """``3x3`` right-handed rotation about ``"x"``, ``"y"`` or ``"z"``."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    if axis == "z":
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")


_FOOT_DIRECTION = np.array([0.0, 0.3, -1.0]) / math.hypot(0.3, 1.0)  # forward and a little down, in the shank frame
_BASIS = np.eye(3)
_CROSS = np.array([  # [e]_x, the cross-product matrix of each basis vector
    [[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
    [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],
    [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
])


def rotations(axes: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` rotations about basis axes ``axes (N,)`` (0 = x, 1 = y, 2 = z) by ``degrees (N,)``; the
    batched form of :func:`rotation` (Rodrigues' formula)."""
    t = np.radians(degrees)[:, None, None]
    e = _BASIS[axes]
    return np.cos(t) * _BASIS + (1.0 - np.cos(t)) * (e[:, :, None] * e[:, None, :]) + np.sin(t) * _CROSS[axes]


def _rotation_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axes, angle indices and signs of the rotations :func:`pose_figure` composes after the three view ones."""
    axes, names, signs = [2, 0, 1, 0, 2, 1, 1, 0, 2], [], []
    names += ["torso_lean", "torso_side", "torso_twist", "neck_yaw", "neck_pitch", "neck_roll"]
    signs += [1.0, -1.0, 1.0, 1.0, -1.0, 1.0]
    # limbs: abduction about z (mirrored for the right side), flexion about x, twist about y (mirrored; positive
    # turns a bent elbow's forearm toward the body, a bent knee's shank outward), then the hinge about x: elbows
    # bend forward (-), knees backward (+)
    for limb, joint, hinge, twist in (("shoulder", "elbow", -1.0, 1.0), ("hip", "knee", 1.0, -1.0)):
        for side, sign in (("l", 1.0), ("r", -1.0)):
            axes += [2, 0, 1, 0]
            names += [f"{side}_{limb}_abd", f"{side}_{limb}_flex", f"{side}_{limb}_twist", f"{side}_{joint}"]
            signs += [-sign, -1.0, twist * sign, hinge]
    return np.array(axes), np.array([ANGLE_INDEX[n] for n in names]), np.array(signs)


_ROTATION_AXES, _ROTATION_ANGLES, _ROTATION_SIGNS = _rotation_table()


@dataclass(frozen=True)
class Figure:
    """A posed figure in the camera frame, body units, pelvis at the origin.

    Attributes:
        points: ``(NUM_POINTS, 3)`` the 17 COCO keypoints then the extra points (:data:`POINT_NAMES`); ``z`` is
            depth (larger is farther).
        chest, hips: ``(8, 3)`` corners of the two boxes the torso is drawn from (shoulders to waist, waist to
            hips).
        torso_rotation, head_rotation, hip_rotation: ``(3, 3)`` body-frame to camera-frame rotations of the
            torso (shoulders), the head and the pelvis.
        proportions: the body it was built from.
    """

    points: np.ndarray
    chest: np.ndarray
    hips: np.ndarray
    torso_rotation: np.ndarray
    head_rotation: np.ndarray
    hip_rotation: np.ndarray
    proportions: Proportions

    @property
    def keypoints(self) -> np.ndarray:
        """``(17, 3)`` COCO keypoints ``(x, y, depth)``."""
        return self.points[:NUM_KEYPOINTS]

    def facing(self) -> np.ndarray:
        """``(17,)`` how much each keypoint's outward normal faces the camera, in [-1, 1] (1: straight at it).

        Face features use the head's normals; shoulders and hips the torso's sideways axis (the hips' own
        frame for hips); limb joints, which are seen from all sides, get 1.
        """
        out = np.ones(NUM_KEYPOINTS)
        out[:5] = -(self.head_rotation @ _FACE_MATRIX)[2]
        side = -self.torso_rotation[2, 0]  # camera z of the torso's left axis, negated
        out[5], out[6] = side, -side
        hip_side = -self.hip_rotation[2, 0]
        out[11], out[12] = hip_side, -hip_side
        return out


_BOX_SIGNS = np.array([(sx, sz) for sx in (-1.0, 1.0) for sz in (-1.0, 1.0)])  # (4, 2): x and z of a box's corners


def _boxes(
    rot: np.ndarray, top: np.ndarray, bottom: np.ndarray, top_half: np.ndarray, bottom_half: np.ndarray
) -> np.ndarray:
    """``(P, 8, 3)`` corners of torso boxes between body-frame heights ``top`` and ``bottom`` ``(P,)`` with
    half ``(width, depth)`` ``(P, 2)`` at each end, rotated by ``rot (P, 3, 3)``."""
    corners = np.empty((len(rot), 8, 3))
    for level, (y, half) in enumerate(((top, top_half), (bottom, bottom_half))):
        corners[:, 4 * level:4 * level + 4, 0] = _BOX_SIGNS[:, 0] * half[:, None, 0]
        corners[:, 4 * level:4 * level + 4, 1] = y[:, None]
        corners[:, 4 * level:4 * level + 4, 2] = _BOX_SIGNS[:, 1] * half[:, None, 1]
    return corners @ rot.transpose(0, 2, 1)


def pose_figure(
    angles: np.ndarray,
    yaw: float = 0.0,
    roll: float = 0.0,
    pitch: float = 0.0,
    proportions: Proportions | None = None,
) -> Figure:
    """Pose a figure.

    Args:
        angles: ``(NUM_ANGLES,)`` joint angles in degrees (see :data:`ANGLES`); clipped to the limits.
        yaw: body yaw about the vertical axis, degrees; 0 faces the camera, 90 shows the person's left side, 180
            shows the back.
        roll: in-plane tilt of the whole figure, degrees (positive turns it clockwise on screen).
        pitch: camera elevation, degrees (positive looks down on the figure).
        proportions: body dimensions; the default adult when ``None``.
    """
    angles = np.asarray(angles, dtype=np.float64)[None]
    return pose_figures(angles, [yaw], [roll], [pitch], [proportions or Proportions()])[0]


_SCALAR_PROPORTIONS = (
    "torso", "neck", "shoulder_half", "hip_half", "upper_arm", "forearm", "hand", "thigh", "shank", "foot",
)


def pose_figures(angles: np.ndarray, yaw, roll, pitch, proportions: list[Proportions]) -> list[Figure]:
    """:func:`pose_figure` for ``P`` people at once (one batch of array operations instead of ``P``).

    ``angles``: ``(P, NUM_ANGLES)`` degrees; ``yaw``, ``roll``, ``pitch``: ``(P,)`` degrees; ``proportions``: one
    per person.
    """
    n = len(proportions)
    a = np.clip(np.asarray(angles, dtype=np.float64).reshape(n, NUM_ANGLES), ANGLE_LOW, ANGLE_HIGH)
    size = {name: np.array([getattr(p, name) for p in proportions]) for name in _SCALAR_PROPORTIONS}
    head_axes = np.array([p.head_axes for p in proportions])
    # all 25 rotations per person in one batch: view (3), torso (3), head (3), then per limb (left arm, right
    # arm, left leg, right leg) abduction, flexion, twist and the elbow/knee
    view_angles = np.stack([np.asarray(roll, float), -np.asarray(pitch, float), np.asarray(yaw, float)], axis=1)
    degrees = np.concatenate([view_angles, a[:, _ROTATION_ANGLES] * _ROTATION_SIGNS], axis=1)
    rot = rotations(np.tile(_ROTATION_AXES, n), degrees.ravel()).reshape(n, len(_ROTATION_AXES), 3, 3)
    view = rot[:, 0] @ rot[:, 1] @ rot[:, 2]
    torso = view @ rot[:, 3] @ rot[:, 4] @ rot[:, 5]
    head = torso @ rot[:, 6] @ rot[:, 7] @ rot[:, 8]
    limb = rot[:, 9:25].reshape(n, 4, 4, 3, 3)
    proximal = np.stack([torso, torso, view, view], axis=1) @ limb[:, :, 0] @ limb[:, :, 1] @ limb[:, :, 2]
    distal = proximal @ limb[:, :, 3]
    upper_dir, lower_dir = proximal[..., 1], distal[..., 1]  # each segment's own "down" in the camera frame

    pts = np.zeros((n, NUM_POINTS, 3))
    pts[:, NECK] = -size["torso"][:, None] * torso[..., 1]
    pts[:, NECK_TOP] = pts[:, NECK] - size["neck"][:, None] * torso[..., 1]
    pts[:, HEAD] = pts[:, NECK_TOP] + head @ np.array([0.0, -0.057, 0.008])
    shoulder = size["shoulder_half"][:, None] * torso[..., 0] + 0.012 * torso[..., 1]
    hip = size["hip_half"][:, None] * view[..., 0]
    roots = np.stack([pts[:, NECK] + shoulder, pts[:, NECK] - shoulder + 0.024 * torso[..., 1], hip, -hip], axis=1)
    upper_len = np.stack([size["upper_arm"], size["upper_arm"], size["thigh"], size["thigh"]], axis=1)[..., None]
    lower_len = np.stack([size["forearm"], size["forearm"], size["shank"], size["shank"]], axis=1)[..., None]
    middle = roots + upper_len * upper_dir
    ends = middle + lower_len * lower_dir
    pts[:, [5, 6, 11, 12]] = roots
    pts[:, [7, 8, 13, 14]] = middle
    pts[:, [9, 10, 15, 16]] = ends
    pts[:, [L_HAND, R_HAND]] = ends[:, :2] + size["hand"][:, None, None] * lower_dir[:, :2]
    pts[:, [L_TOE, R_TOE]] = ends[:, 2:] + size["foot"][:, None, None] * (distal[:, 2:] @ _FOOT_DIRECTION)
    pts[:, :5] = pts[:, HEAD, None] + (head @ _FACE_MATRIX).transpose(0, 2, 1) * head_axes[:, None, :]

    waist = np.full(n, -0.11)
    half = {name: np.array([getattr(p, name) for p in proportions]) for name in ("chest_half", "waist_half", "hips_half")}
    chest = _boxes(torso, -size["torso"] - 0.02, waist, half["chest_half"], half["waist_half"])
    hips = _boxes(view, waist, np.full(n, 0.04), half["waist_half"], half["hips_half"])
    return [
        Figure(points=pts[i], chest=chest[i], hips=hips[i], torso_rotation=torso[i], head_rotation=head[i],
               hip_rotation=view[i], proportions=proportions[i])
        for i in range(n)
    ]


# --------------------------------------------------------------------------------------------------------------
# pose families


_COMMON = np.array([
    ANGLE_INDEX[n] for n in ("torso_lean", "torso_side", "torso_twist", "neck_yaw", "neck_pitch", "neck_roll")
])
_COMMON_SD = np.array([5.0, 4.0, 8.0, 25.0, 10.0, 6.0])  # head and torso variation shared by every family
_LIMB_JOINTS = ("shoulder_flex", "shoulder_abd", "shoulder_twist", "elbow", "hip_flex", "hip_abd", "hip_twist", "knee")
_LIMB_INDEX = np.array([[ANGLE_INDEX[f"{side}_{joint}"] for joint in _LIMB_JOINTS] for side in "lr"])  # (2, 8)


def _limb_table(**spec: tuple[str, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per limb joint: ``("normal", mean, sd)`` or ``("uniform", low, high)``, as arrays for one vectorised draw."""
    kinds, a, b = zip(*(spec[j] for j in _LIMB_JOINTS))
    return np.array([k == "normal" for k in kinds]), np.array(a, float), np.array(b, float)


def _draw(rng: np.random.Generator, table) -> np.ndarray:
    """A pose with head and torso variation and both sides' limbs drawn from ``table`` (a fixed number of draws)."""
    out = NEUTRAL.copy()
    out[_COMMON] = _COMMON_SD * rng.standard_normal(len(_COMMON))
    is_normal, a, b = table
    u, z = rng.random((2, len(_LIMB_JOINTS))), rng.standard_normal((2, len(_LIMB_JOINTS)))
    out[_LIMB_INDEX] = np.where(is_normal, a + b * z, a + (b - a) * u)
    return out


_STANDING = _limb_table(
    shoulder_flex=("normal", 0, 12), shoulder_abd=("uniform", 2, 22), shoulder_twist=("uniform", -20, 40),
    elbow=("uniform", 0, 50), hip_flex=("normal", 0, 4), hip_abd=("uniform", 0, 10), hip_twist=("normal", 0, 8),
    knee=("uniform", 0, 10),
)
_WALKING = _limb_table(  # flexions and knees are replaced by the gait phase
    shoulder_flex=("normal", 0, 5), shoulder_abd=("uniform", 4, 15), shoulder_twist=("uniform", 0, 30),
    elbow=("uniform", 10, 50), hip_flex=("normal", 0, 3), hip_abd=("uniform", 0, 6), hip_twist=("normal", 0, 5),
    knee=("uniform", 0, 5),
)
_SITTING = _limb_table(
    shoulder_flex=("uniform", 5, 60), shoulder_abd=("uniform", 0, 25), shoulder_twist=("uniform", 0, 50),
    elbow=("uniform", 20, 100), hip_flex=("uniform", 70, 105), hip_abd=("uniform", 0, 25), hip_twist=("normal", 0, 8),
    knee=("uniform", 60, 115),
)
_SIDES = np.array([1.0, -1.0])  # left, right


def standing_pose(rng: np.random.Generator) -> np.ndarray:
    """Upright, arms hanging or loosely bent, weight on both legs."""
    return _draw(rng, _STANDING)


def walking_pose(rng: np.random.Generator) -> np.ndarray:
    """A phase of the gait cycle: legs swing in antiphase, arms swing against the legs."""
    out = _draw(rng, _WALKING)
    phase, stride, lean = rng.uniform(0.0, 2 * math.pi), rng.uniform(15.0, 35.0), rng.uniform(0.0, 10.0)
    swing = math.sin(phase) * _SIDES
    out[_LIMB_INDEX[:, 4]] += stride * swing
    # the swinging (forward-moving) leg bends its knee; the stance leg stays nearly straight
    out[_LIMB_INDEX[:, 7]] += 5.0 + 50.0 * np.maximum(0.0, _SIDES * math.cos(phase))
    out[_LIMB_INDEX[:, 0]] += -0.9 * stride * swing
    out[ANGLE_INDEX["torso_lean"]] = lean
    return out


def sitting_pose(rng: np.random.Generator) -> np.ndarray:
    """Seated: hips and knees near right angles, hands resting or gesturing."""
    out = _draw(rng, _SITTING)
    out[ANGLE_INDEX["torso_lean"]] = rng.uniform(-10.0, 20.0)
    return out


def arms_raised_pose(rng: np.random.Generator) -> np.ndarray:
    """One or both arms up (cheering, waving, stretching) on standing legs."""
    out = _draw(rng, _STANDING)
    u = rng.random(12)
    raised = (0, 1) if u[0] < 0.5 else ((0,) if u[1] < 0.5 else (1,))
    for side in raised:
        r = u[2 + 5 * side: 7 + 5 * side]
        if r[0] < 0.5:  # up in front
            flex, abd = 110 + 70 * r[1], 30 * r[2]
        else:  # up at the side
            flex, abd = -10 + 40 * r[1], 100 + 70 * r[2]
        out[_LIMB_INDEX[side, :4]] = flex, abd, -20 + 80 * r[3], 70 * r[4]
    return out


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """A plausible mix: two poses of the named families blended, then pushed toward a pose drawn uniformly
    within the joint limits (reaching, crouching, bending, kicking...)."""
    first, second = (BASE_FAMILIES[int(rng.integers(len(BASE_FAMILIES)))](rng) for _ in range(2))
    w = rng.uniform(0, 1)
    blend = w * first + (1 - w) * second
    wild = rng.uniform(ANGLE_LOW, ANGLE_HIGH)
    return blend + rng.uniform(0.15, 0.45) * (wild - blend)


BASE_FAMILIES = (standing_pose, walking_pose, sitting_pose, arms_raised_pose)

POSE_FAMILIES = {
    "standing": standing_pose,
    "walking": walking_pose,
    "sitting": sitting_pose,
    "arms_raised": arms_raised_pose,
    "random": random_pose,
}


def choose_family(u: float, weights: dict[str, float]) -> str:
    """The pose family the uniform number ``u`` picks under ``weights`` (normalised, keyed by family name)."""
    total = 0.0
    for kind in POSE_FAMILIES:
        total += weights.get(kind, 0.0)
        if u < total:
            return kind
    return next(k for k in reversed(POSE_FAMILIES) if weights.get(k, 0.0) > 0)


def sample_pose(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A pose ``(NUM_ANGLES,)`` in degrees from family ``kind``, clipped to the joint limits."""
    return np.clip(POSE_FAMILIES[kind](rng), ANGLE_LOW, ANGLE_HIGH)


def sample_view(rng: np.random.Generator, kind: str, front_bias: float) -> tuple[float, float, float]:
    """``(yaw, roll, pitch)`` in degrees for one person: yaw around facing the camera with probability
    ``front_bias``, else uniform; small tilts (larger for the ``random`` family)."""
    u, front, circle = rng.random(), rng.normal(0, 40), rng.uniform(-180, 180)
    yaw = front if u < front_bias else circle
    roll = rng.normal(0, 12 if kind == "random" else 4)
    pitch = rng.normal(0, 8)
    return float(yaw), float(roll), float(pitch)
