"""Scenes: who stands where, in which depth order, drawn over which backdrop, and their COCO labels.

:func:`sample_scene` turns ``(config, seed, index)`` into a :class:`SceneSpec` (people with poses, looks, sizes
and places; crowds; foreground objects); :func:`render_scene` draws a spec and labels it. Specs can also be
built by hand, which is how the tests stage known occlusions.

Randomness: image ``index`` of data set ``seed`` draws from ``SeedSequence([seed, index])``, split into
independent streams for people, backdrop, crowd, foreground objects and sensor noise; each person has their own
stream, read in a fixed order (size and place, look, build, view, then the pose). Knobs transform fixed draws,
so the same ``(seed, index)`` under different knob settings shows the same people (see
:mod:`poselib.data.synthpose.config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from poselib.data.synthpose.background import (
    Occluder, add_sensor_noise, draw_occluder, render_background, sample_occluders,
)
from poselib.data.synthpose.config import SynthConfig
from poselib.data.synthpose.figure import (
    Figure, Proportions, choose_family, pose_figure, pose_figures, sample_pose, sample_proportions, sample_view, standing_pose,
    walking_pose,
)
from poselib.data.synthpose.labels import annotate
from poselib.data.synthpose.render import (
    Appearance, FigureDrawing, draw_figure, figure_extent, sample_appearance,
)


@dataclass(eq=False)
class PersonSpec:
    """One drawn person.

    Attributes:
        angles: ``(NUM_ANGLES,)`` joint angles, degrees. ``kind`` names the pose family it came from.
        yaw, roll, pitch: view angles, degrees (see :func:`~poselib.data.synthpose.figure.pose_figure`).
        height_px: standing height in pixels.
        origin: ``(2,)`` pixel position of the pelvis centre.
        group: label-map id; members of one crowd share it.
        crowd: labelled as (part of) a crowd region instead of a person.
    """

    angles: np.ndarray
    appearance: Appearance
    height_px: float
    origin: np.ndarray
    yaw: float = 0.0
    roll: float = 0.0
    pitch: float = 0.0
    proportions: Proportions = field(default_factory=Proportions)
    kind: str = "standing"
    group: int = 1
    crowd: bool = False
    _figure: Figure | None = field(default=None, repr=False, compare=False)

    def figure(self) -> Figure:
        """The posed figure (computed once; a spec's pose is not meant to change after its first use)."""
        if self._figure is None:
            self._figure = pose_figure(self.angles, self.yaw, self.roll, self.pitch, self.proportions)
        return self._figure


@dataclass(eq=False)
class SceneSpec:
    """Everything needed to draw one image. ``people`` are in drawing order (far to near); an occluder with
    ``after=k`` is drawn after the first ``k`` people that are not crowd members."""

    image_size: tuple[int, int]
    people: list[PersonSpec]
    occluders: list[Occluder] = field(default_factory=list)
    clutter: float = 0.0
    background_seed: int = 0
    noise_seed: int = 0
    min_visible_fraction: float = SynthConfig.min_visible_fraction  # one default, kept by the config


@dataclass(eq=False)
class RenderedScene:
    """A drawn scene: ``image (H, W, 3) uint8`` RGB, ``label_map (H, W) uint16`` (see
    :mod:`~poselib.data.synthpose.render`), COCO ``annotations`` (without ``id``/``image_id``), and the spec."""

    image: np.ndarray
    label_map: np.ndarray
    annotations: list[dict]
    spec: SceneSpec
    drawings: list[FigureDrawing]

    @property
    def poses(self) -> np.ndarray:
        """``(P, 17, 3)`` keypoints of the non-crowd annotations."""
        kps = [a["keypoints"] for a in self.annotations if not a["iscrowd"]]
        return np.asarray(kps, dtype=np.float64).reshape(-1, 17, 3)


def _rng(seed_sequence: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed_sequence))


def _place(extent, height_px, u, size, truncation):
    """Pelvis position putting the figure's box centre at fraction ``u`` of the range truncation allows."""
    h, w = size
    box = extent * height_px
    bw, bh = box[2] - box[0], box[3] - box[1]
    centre = []
    for frac, dim, length in ((u[0], w, bw), (u[1], h, bh)):
        lo = (0.5 - 0.7 * truncation) * length
        hi = dim - 1 - lo
        centre.append(lo + frac * (hi - lo) if hi > lo else 0.5 * (dim - 1))
    return np.array(centre) - 0.5 * (box[:2] + box[2:])


def sample_scene(config: SynthConfig, seed: int, index: int) -> SceneSpec:
    """The random scene number ``index`` of the data set rendered from ``seed`` under ``config``."""
    size = config.image_size
    people_ss, background_ss, crowd_ss, occluder_ss, noise_ss = np.random.SeedSequence([int(seed), int(index)]).spawn(5)
    lo, hi = config.people
    n = int(_rng(people_ss).integers(lo, hi + 1))
    weights = config.pose_weights()
    log_lo, log_hi = math.log(config.scale[0]), math.log(config.scale[1])

    # each person draws from their own stream in a fixed order (the pose, whose draws vary with the family,
    # last), so that knobs change only what they control
    people: list[PersonSpec] = []
    place_u = np.empty((n, 6))
    for i, stream in enumerate(people_ss.spawn(n)):
        rng = _rng(stream)
        u = rng.random(8)
        place_u[i] = u[2:]
        height = math.exp(log_lo + u[0] * (log_hi - log_lo)) * size[0]
        look = sample_appearance(rng)
        proportions = sample_proportions(rng)
        kind = choose_family(u[1], weights)
        yaw, roll, pitch = sample_view(rng, kind, config.front_bias)
        people.append(PersonSpec(
            angles=sample_pose(rng, kind), appearance=look, height_px=height, origin=np.zeros(2),
            yaw=yaw, roll=roll, pitch=pitch, proportions=proportions, kind=kind, crowd=height < config.crowd_height,
        ))
    _pose_all(people)
    # nearer people look bigger: draw in order of height, smallest (farthest) first
    order = sorted(range(n), key=lambda i: (people[i].height_px, i))
    people = [people[i] for i in order]
    place_u = place_u[order]

    placed: list[np.ndarray] = []  # pixel boxes (x0, y0, x1, y1) of the non-crowd people placed so far
    for person, u in zip(people, place_u):
        extent = figure_extent(person.figure())
        origin = _place(extent, person.height_px, u[:2], size, config.truncation)
        box = extent * person.height_px
        if placed and u[2] < config.occlusion:
            anchor_box = placed[min(int(u[3] * len(placed)), len(placed) - 1)]
            # overlap grows with occlusion: the offset shrinks toward the anchor's centre
            reach = 0.5 * ((box[2] - box[0]) + (anchor_box[2] - anchor_box[0])) * (1.0 - 0.65 * config.occlusion)
            cx = 0.5 * (anchor_box[0] + anchor_box[2]) + (2 * u[4] - 1) * reach
            # on a ground plane the nearer (taller) person's feet are lower in the image
            anchor_h = anchor_box[3] - anchor_box[1]
            feet = anchor_box[3] + 0.4 * ((box[3] - box[1]) - anchor_h) + (u[5] - 0.5) * 0.2 * anchor_h
            target = np.array([cx, feet]) - np.array([0.5 * (box[0] + box[2]), box[3]])
            # stay within what truncation allows
            lo_origin = _place(extent, person.height_px, (0.0, 0.0), size, config.truncation)
            hi_origin = _place(extent, person.height_px, (1.0, 1.0), size, config.truncation)
            origin = np.clip(target, np.minimum(lo_origin, hi_origin), np.maximum(lo_origin, hi_origin))
        person.origin = origin
        if not person.crowd:
            placed.append(box + np.tile(origin, 2))

    crowd = _sample_crowd(_rng(crowd_ss), config)
    for person in crowd:
        person.group = 1
    for group, person in enumerate(people, start=2 if crowd else 1):
        person.group = group
    scene_people = crowd + people
    num_individual = sum(not p.crowd for p in people)
    return SceneSpec(
        image_size=size,
        people=scene_people,
        occluders=sample_occluders(_rng(occluder_ss), config.occlusion, num_individual),
        clutter=config.clutter,
        background_seed=int(_rng(background_ss).integers(2**62)),
        noise_seed=int(_rng(noise_ss).integers(2**62)),
        min_visible_fraction=config.min_visible_fraction,
    )


def _sample_crowd(rng: np.random.Generator, config: SynthConfig) -> list[PersonSpec]:
    """A background band of tiny people sharing one label id (0 or 1 group per image)."""
    u = rng.random(4)
    lo, hi = config.crowd_size
    n = int(rng.integers(lo, hi + 1))
    if u[0] >= config.crowd_prob or config.crowd_height <= 2:
        return []
    h, w = config.image_size
    band_y, band_x, spread = (0.25 + 0.45 * u[1]) * h, u[2] * w, (0.2 + 0.4 * u[3]) * w
    members = []
    r = rng
    for k in range(n):
        pose = (standing_pose if r.random() < 0.6 else walking_pose)(r)
        height = config.crowd_height * r.uniform(0.45, 0.95)
        x = band_x + spread * (k / max(n - 1, 1) - 0.5) + r.normal(0, 0.02 * w)
        y = band_y + r.normal(0, 0.02 * h) - 0.05 * height
        members.append(PersonSpec(
            angles=pose, appearance=sample_appearance(r), height_px=height, origin=np.array([x, y]),
            yaw=float(r.uniform(-180, 180)), proportions=sample_proportions(r), kind="crowd", crowd=True,
        ))
    _pose_all(members)
    return members


def _pose_all(people: list[PersonSpec]) -> None:
    """Pose everyone in one batch (:func:`~poselib.data.synthpose.figure.pose_figures`) and cache the figures."""
    if not people:
        return
    figures = pose_figures(
        np.stack([p.angles for p in people]), [p.yaw for p in people], [p.roll for p in people],
        [p.pitch for p in people], [p.proportions for p in people],
    )
    for person, figure in zip(people, figures):
        person._figure = figure


def render_scene(spec: SceneSpec) -> RenderedScene:
    """Draw ``spec`` and label it (see :func:`~poselib.data.synthpose.labels.annotate`)."""
    h, w = spec.image_size
    image = render_background(np.random.default_rng(spec.background_seed), (h, w), spec.clutter)
    label = np.zeros((h, w), dtype=np.uint16)
    occluders = sorted(spec.occluders, key=lambda o: o.after)
    drawn_individuals = 0
    drawings = []
    for person in spec.people:
        while occluders and occluders[0].after <= drawn_individuals and not person.crowd:
            draw_occluder(image, label, occluders.pop(0))
        figure = person.figure()
        drawings.append(draw_figure(image, label, figure, person.origin, person.height_px, person.appearance, person.group))
        drawn_individuals += not person.crowd
    for occluder in occluders:
        draw_occluder(image, label, occluder)
    image = add_sensor_noise(image, np.random.default_rng(spec.noise_seed), spec.clutter)
    annotations = annotate(label, spec, drawings)
    return RenderedScene(image=image, label_map=label, annotations=annotations, spec=spec, drawings=drawings)


def render_example(config: SynthConfig, seed: int, index: int) -> RenderedScene:
    """Sample and draw scene ``index`` of the data set rendered from ``seed``."""
    return render_scene(sample_scene(config, seed, index))


def render_figure(
    angles: np.ndarray,
    yaw: float = 0.0,
    *,
    size: tuple[int, int] = (160, 120),
    appearance: Appearance | None = None,
    seed: int = 0,
) -> RenderedScene:
    """One person alone, standing height 85% of the image height, centred, on a plain gradient backdrop.

    ``angles`` ``(NUM_ANGLES,)`` and ``yaw`` are in degrees (see :func:`~poselib.data.synthpose.figure.pose_figure`);
    the look is drawn from ``seed`` unless ``appearance`` is given.
    """
    h, w = size
    person = PersonSpec(
        angles=np.asarray(angles, dtype=np.float64),
        appearance=appearance or sample_appearance(np.random.default_rng(seed)),
        height_px=0.85 * h,
        origin=np.zeros(2),
        yaw=yaw,
    )
    extent = figure_extent(person.figure()) * person.height_px
    person.origin = np.array([(w - 1) / 2, (h - 1) / 2]) - 0.5 * (extent[:2] + extent[2:])
    return render_scene(SceneSpec(image_size=size, people=[person], background_seed=seed, noise_seed=seed))
