"""SynthPose settings: the difficulty knobs of one data set (:class:`SynthConfig`) and the named data sets.

Every knob is a monotone control with a documented direction, so that controlled experiments can turn one
difficulty up while holding the rest. Scene randomness is split into independent streams (people, background,
crowds, occluders; see :mod:`poselib.data.synthpose.scene`), and knobs act on fixed random draws, so the same
``(seed, index)`` rendered under two settings of a knob shows the same people in the same poses and outfits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

#: Bumped whenever a change to the renderer changes its output, so that cached splits are regenerated.
GENERATOR_VERSION: str = "synthpose-2"

#: Pose families a figure is drawn from (see :mod:`poselib.data.synthpose.figure`).
POSE_KINDS: tuple[str, ...] = ("standing", "walking", "sitting", "arms_raised", "random")


@dataclass(frozen=True)
class SynthConfig:
    """The knobs of a SynthPose data set. Sizes are ``(H, W)`` pixels; a "person height" is the *standing*
    height of a figure (head top to soles), so a sitting person of height 100 px occupies less than 100 px.

    Attributes:
        image_size: ``(H, W)`` of every image, pixels.
        people: ``(min, max)`` individually labelled people per image, inclusive; drawn uniformly.
        scale: ``(min, max)`` person height as a fraction of the image height; drawn log-uniformly. Smaller
            people are harder (fewer pixels per keypoint).
        occlusion: 0..1. The probability that a person is placed next to one already placed (instead of
            anywhere), the closeness of that placement, and the rate of foreground objects (poles, crates,
            bushes) all grow with it. 0 places everyone independently and draws no foreground objects.
        clutter: 0..1. Background distractors (shapes, and sticks and jointed sticks that look like limbs) are
            kept with this probability out of :data:`MAX_DISTRACTORS` candidates; sensor noise grows with it.
        truncation: 0..1. How far a person's box may stick out of the image: 0 keeps boxes inside (when they
            fit), 1 lets the box centre sit up to 20% of its size beyond the border.
        crowd_height: people whose height in pixels is below this are labelled as a crowd region
            (``iscrowd=1``, no keypoints), as COCO labels tiny people.
        crowd_prob: probability that an image has a background group of tiny people (one crowd region).
        crowd_size: ``(min, max)`` members of such a group.
        pose_mix: relative weights of the pose families in :data:`POSE_KINDS` (missing families weigh 0).
        front_bias: probability that a person's body yaw is drawn around facing the camera (normal, 40 degree
            spread) rather than uniformly over the circle; photographed people mostly face the camera.
        min_visible_fraction: a person whose visible pixels are fewer than this fraction of the pixels they
            had when drawn (before nearer people and objects covered them) keeps a mask but gets no keypoints.
        jpeg_quality: JPEG quality of the written images (0..100).
    """

    # The defaults are calibrated so that the book's CPU-preset models can land between about 0.5 and 0.85 AP.
    # With people up to 0.9 of the image height, occlusion 0.35 and keypoints kept down to 15 % of a person
    # visible, over a fifth of the labelled people showed fewer than half of their keypoints, a share that small
    # from-scratch models mostly lose (notebook 0.4 measures OKS against it; notebook 0.2 compares both settings).
    image_size: tuple[int, int] = (256, 256)
    people: tuple[int, int] = (1, 6)
    scale: tuple[float, float] = (0.22, 0.6)
    occlusion: float = 0.1
    clutter: float = 0.4
    truncation: float = 0.3
    crowd_height: float = 22.0
    crowd_prob: float = 0.2
    crowd_size: tuple[int, int] = (3, 10)
    pose_mix: tuple[tuple[str, float], ...] = (
        ("standing", 0.25),
        ("walking", 0.25),
        ("sitting", 0.1),
        ("arms_raised", 0.15),
        ("random", 0.25),
    )
    front_bias: float = 0.6
    min_visible_fraction: float = 0.4
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        # JSON round trips give lists; normalise so equal configs compare (and hash) equal.
        for name in ("image_size", "people", "scale", "crowd_size"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "pose_mix", tuple((str(k), float(w)) for k, w in self.pose_mix))
        problems = _problems(self)
        if problems:
            raise ValueError("invalid SynthConfig: " + "; ".join(problems))

    def replace(self, **changes) -> "SynthConfig":
        """A copy with some knobs changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready form (recorded in the ``info`` entry of every annotation file)."""
        out = dataclasses.asdict(self)
        out["pose_mix"] = {k: w for k, w in self.pose_mix}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "SynthConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SynthConfig fields {unknown}; known: {sorted(names)}")
        data = dict(data)
        if isinstance(data.get("pose_mix"), dict):
            data["pose_mix"] = tuple(data["pose_mix"].items())
        return cls(**data)

    def pose_weights(self) -> dict[str, float]:
        """``pose_mix`` as normalised probabilities over :data:`POSE_KINDS`."""
        weights = dict(self.pose_mix)
        total = sum(weights.values())
        return {k: weights.get(k, 0.0) / total for k in POSE_KINDS}


def _problems(c: SynthConfig) -> list[str]:
    problems = []
    h, w = c.image_size
    if not (isinstance(h, int) and isinstance(w, int) and h >= 16 and w >= 16):
        problems.append(f"image_size must be two ints >= 16, got {c.image_size}")
    lo, hi = c.people
    if not (0 <= lo <= hi <= 60):
        problems.append(f"people must satisfy 0 <= min <= max <= 60, got {c.people}")
    if not (0 < c.scale[0] <= c.scale[1] <= 4.0):
        problems.append(f"scale must satisfy 0 < min <= max <= 4, got {c.scale}")
    for name in ("occlusion", "clutter", "truncation", "crowd_prob", "front_bias", "min_visible_fraction"):
        value = getattr(c, name)
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must lie in [0, 1], got {value}")
    if c.crowd_height < 0:
        problems.append(f"crowd_height must be >= 0 pixels, got {c.crowd_height}")
    if not (1 <= c.crowd_size[0] <= c.crowd_size[1] <= 40):
        problems.append(f"crowd_size must satisfy 1 <= min <= max <= 40, got {c.crowd_size}")
    unknown = sorted({k for k, _ in c.pose_mix} - set(POSE_KINDS))
    if unknown:
        problems.append(f"pose_mix has unknown kinds {unknown}; choose from {list(POSE_KINDS)}")
    if any(wt < 0 for _, wt in c.pose_mix) or sum(wt for _, wt in c.pose_mix) <= 0:
        problems.append("pose_mix weights must be >= 0 with a positive sum")
    if not 0 <= c.jpeg_quality <= 100:
        problems.append(f"jpeg_quality must lie in [0, 100], got {c.jpeg_quality}")
    return problems


#: Upper bound on background distractors; ``clutter`` is the fraction of these candidates kept.
MAX_DISTRACTORS: int = 36

SPLITS: tuple[str, ...] = ("train", "val")


@dataclass(frozen=True)
class SplitSpec:
    """How many images a split has and the seed they are rendered from."""

    num_images: int
    seed: int


@dataclass(frozen=True)
class NamedConfig:
    """A named data set: its knobs and its splits (train and val always use different seeds)."""

    name: str
    config: SynthConfig
    splits: dict[str, SplitSpec] = field(default_factory=dict)
    description: str = ""

    def split(self, split: str) -> SplitSpec:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} of SynthPose config {self.name!r}; choose one of {', '.join(self.splits)}")
        return self.splits[split]


NAMED_CONFIGS: dict[str, NamedConfig] = {
    "synthpose-mini": NamedConfig(
        name="synthpose-mini",
        config=SynthConfig(image_size=(128, 128), people=(1, 4), scale=(0.3, 0.9), crowd_height=12.0),
        splits={"train": SplitSpec(64, seed=1001), "val": SplitSpec(24, seed=2001)},
        description="smoke preset: 128x128, renders in about a second",
    ),
    "synthpose": NamedConfig(
        name="synthpose",
        config=SynthConfig(),
        splits={"train": SplitSpec(1500, seed=1002), "val": SplitSpec(200, seed=2002)},
        description="cpu preset (the default): 256x256, 1 to 6 people",
    ),
    "synthpose-large": NamedConfig(
        name="synthpose-large",
        config=SynthConfig(image_size=(384, 384), people=(1, 8), scale=(0.15, 0.9), crowd_height=32.0),
        splits={"train": SplitSpec(20000, seed=1003), "val": SplitSpec(1000, seed=2003)},
        description="gpu preset: 384x384, 1 to 8 people, many more images",
    ),
}


def get_named_config(name: str) -> NamedConfig:
    """The named configuration ``name``; an unknown name raises ``ValueError`` listing the choices."""
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown SynthPose config {name!r}; choose one of {', '.join(NAMED_CONFIGS)}")
    return NAMED_CONFIGS[name]
