"""COCO person keypoint files: load and validate them, read their images, decode their segmentations.

:func:`load_coco_keypoints` parses a keypoint file into a :class:`CocoIndex` and checks every record. Each
finding is a :class:`Problem` naming the file and the record. *Fatal* problems make a record unusable (wrong
keypoint count, zero-size box, unknown image, duplicate id, missing or corrupt image file): ``strict=True``
raises a :class:`~poselib.data.errors.DataError` for them, ``strict=False`` skips the record and keeps the
problem. Other problems (labelled keypoints outside the image, a ``num_keypoints`` that disagrees with the
keypoints) are reported but the record is kept, because training simply ignores such keypoints.

Crowd annotations (``iscrowd=1``) are legal; they are kept apart in :attr:`CocoIndex.crowds` and feed the
ignore masks of bottom-up methods.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from poselib.data.errors import DataError
from poselib.keypoints import NUM_KEYPOINTS

#: How far (pixels) a labelled keypoint may lie beyond the image's span ``[-0.5, W-0.5]`` before it is reported.
#: Annotation tools let a click land on the border line itself, so one pixel of slack avoids false alarms.
KEYPOINT_SLACK_PX: float = 1.0

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")


@dataclass(frozen=True)
class Problem:
    """One finding about a keypoint file or an image file.

    ``record`` names the record in words (``"annotation 12 (image 3)"``, ``"image 3"``, ``""`` for the file as a
    whole); ``kind`` is a short code for counting (``"keypoints"``, ``"bbox"``, ``"duplicate-id"``, ...);
    ``fatal`` problems make the record unusable.
    """

    path: str
    record: str
    message: str
    kind: str
    image_id: int | None = None
    ann_id: int | None = None
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.record}: {self.message}" if self.record else f"{self.path}: {self.message}"

    def error(self, others: int = 0) -> DataError:
        """This problem as a :class:`DataError`; ``others`` more problems are mentioned at the end."""
        text = str(self)
        if others:
            plural = "s" if others > 1 else ""
            text += f" (and {others} more problem{plural}; `poselib data inspect {self.path}` lists them all)"
        return DataError(text, path=self.path, image_id=self.image_id, ann_id=self.ann_id)


@dataclass
class CocoIndex:
    """A loaded keypoint file.

    ``images`` maps image id to its record; ``people`` and ``crowds`` map *every* image id to its non-crowd
    person annotations and its crowd annotations (lists, possibly empty); ``categories`` maps category id to its
    record; ``data`` is the parsed JSON as read; ``problems`` lists every finding, fatal ones included when
    ``strict=False`` skipped their records.
    """

    path: Path
    image_dir: Path | None
    data: dict
    images: dict[int, dict]
    people: dict[int, list[dict]]
    crowds: dict[int, list[dict]]
    categories: dict[int, dict]
    person_category_id: int = 1
    problems: list[Problem] = field(default_factory=list)

    @property
    def image_ids(self) -> list[int]:
        """Image ids in ascending order."""
        return sorted(self.images)

    def image_path(self, image_id: int) -> Path:
        """Where the image file of ``image_id`` lives (requires ``image_dir``)."""
        if self.image_dir is None:
            raise DataError(f"{self.path}: image {image_id}: no image folder was given", path=self.path, image_id=image_id)
        return self.image_dir / self.images[image_id]["file_name"]

    def read_image(self, image_id: int) -> np.ndarray:
        """The RGB ``uint8 (H, W, 3)`` image of ``image_id``; :class:`DataError` if missing or corrupt."""
        return read_image(self.image_path(image_id), image_id=image_id, ann_path=self.path)


def read_image(path: str | PathLike, *, image_id: int | None = None, ann_path: str | PathLike | None = None) -> np.ndarray:
    """Read an image file as RGB ``uint8 (H, W, 3)``, ignoring any EXIF orientation (annotations refer to the
    stored pixels). Raises :class:`DataError` naming the file, and the image id and keypoint file if given."""
    import cv2  # deferred: importing OpenCV costs more than the rest of this module

    where = ""
    if image_id is not None:
        where = f" (image {image_id}" + (f" of {ann_path}" if ann_path is not None else "") + ")"
    try:
        buffer = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found{where}", path=path, image_id=image_id) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file{where}: {exc.strerror or exc}", path=path, image_id=image_id) from None
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buffer.size else None
    if image is None:
        raise DataError(
            f"{path}: cannot decode image{where}: the file is empty, truncated or not an image",
            path=path,
            image_id=image_id,
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (polygons, uncompressed or compressed RLE) to a ``uint8 (H, W)`` 0/1 mask.

    Degenerate polygons (fewer than 3 points) are dropped, as COCO's own tools cannot rasterise them; an empty
    segmentation gives an empty mask.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
        if not polygons:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    with warnings.catch_warnings():
        # pycocotools' decode trips numpy 2's ``__array__(copy=...)`` deprecation on every call; it is harmless
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.ascontiguousarray(mask_utils.decode(rle))


def load_coco_keypoints(
    ann_path: str | PathLike,
    image_dir: str | PathLike | None = None,
    *,
    strict: bool = True,
    check_images: bool = False,
    progress: bool = False,
) -> CocoIndex:
    """Load and validate a COCO person keypoint file.

    ``strict=True`` raises :class:`DataError` for the first fatal problem (its message counts the others);
    ``strict=False`` skips records with fatal problems and lists every problem in ``index.problems``.
    ``check_images=True`` also opens and decodes every image file under ``image_dir`` (it costs I/O; a tqdm
    bar shows when ``progress``); with ``strict=False`` an image that fails is dropped with its annotations.
    Malformed JSON and a file that is not a COCO file at all always raise.
    """
    path = Path(ann_path)
    data = _read_json(path)
    checker = _Checker(str(path))

    categories = _check_categories(data, checker)
    person_id = next((cid for cid, c in categories.items() if c.get("name") == "person"), 1)
    images = _check_images(data["images"], checker)
    people: dict[int, list[dict]] = {image_id: [] for image_id in images}
    crowds: dict[int, list[dict]] = {image_id: [] for image_id in images}
    before = len(checker.problems)
    _check_annotations(data["annotations"], images, categories, person_id, people, crowds, checker)
    checker.problems = checker.sorted_problems(before)

    index = CocoIndex(
        path=path,
        image_dir=None if image_dir is None else Path(image_dir),
        data=data,
        images=images,
        people=people,
        crowds=crowds,
        categories=categories,
        person_category_id=person_id,
        problems=checker.problems,
    )
    if check_images and not (strict and any(p.fatal for p in index.problems)):  # no I/O for a doomed file
        if index.image_dir is None:
            raise DataError(f"{path}: check_images=True needs image_dir", path=path)
        bad = check_image_files(index, decode=True, progress=progress)
        index.problems.extend(bad)
        for problem in bad:
            if problem.image_id in index.images:
                del index.images[problem.image_id], index.people[problem.image_id], index.crowds[problem.image_id]

    fatal = [p for p in index.problems if p.fatal]
    if strict and fatal:
        raise fatal[0].error(others=len(fatal) - 1)
    return index


def check_image_files(index: CocoIndex, *, decode: bool = True, progress: bool = True) -> list[Problem]:
    """Check that every image of ``index`` exists under its ``image_dir`` and, with ``decode``, that it decodes to
    the width and height its record states. Returns the problems found (all fatal)."""
    from tqdm import tqdm

    from poselib.progress import progress_disabled

    problems: list[Problem] = []
    path = str(index.path)
    for image_id in tqdm(index.image_ids, desc="checking images", unit="img", disable=progress_disabled(progress)):
        record = index.images[image_id]
        file = index.image_path(image_id)
        where = f"image {image_id}"
        if not decode:
            if not file.is_file():
                problems.append(Problem(path, where, f"image file {file} not found", "image-missing", image_id))
            continue
        try:
            image = read_image(file)
        except DataError as exc:
            kind = "image-missing" if not file.exists() else "image-corrupt"
            problems.append(Problem(path, where, str(exc), kind, image_id))
            continue
        height, width = image.shape[:2]
        if (width, height) != (record["width"], record["height"]):
            problems.append(
                Problem(
                    path,
                    where,
                    f"image file {file} is {width}x{height} (WxH) but the record says {record['width']}x{record['height']}",
                    "image-size",
                    image_id,
                )
            )
    return problems


# --------------------------------------------------------------------------------------------------- checks


class _Checker:
    """Collects problems for one file; ``order`` (the record's position) sorts them back into file order after the
    vectorised checks, which find them out of order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self._order: list[int] = []

    def add(
        self, record: str, message: str, kind: str, image_id=None, ann_id=None, fatal: bool = True, order: int = -1
    ) -> None:
        self.problems.append(Problem(self.path, record, message, kind, image_id, ann_id, fatal))
        self._order.append(order)

    def sorted_problems(self, start: int = 0) -> list[Problem]:
        """Problems from index ``start`` on, in record order (stable)."""
        ranked = sorted(range(start, len(self.problems)), key=lambda i: self._order[i])
        return self.problems[:start] + [self.problems[i] for i in ranked]


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}", path=path) from None
    if not isinstance(data, dict):
        found = type(data).__name__
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations', found a {found}", path=path)
    for key in ("images", "annotations"):
        if key not in data:
            raise DataError(f"{path}: missing top-level key {key!r}; not a COCO annotation file", path=path)
        if not isinstance(data[key], list):
            raise DataError(f"{path}: top-level {key!r} must be a list, found a {type(data[key]).__name__}", path=path)
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _missing_keys(missing: list[str]) -> str:
    return f"missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"


def _all_finite_numbers(lists: list[list]) -> bool:
    """Whether every value in a list of flat lists is a finite number (one numpy call for them all)."""
    try:
        flat = np.array(list(itertools.chain.from_iterable(lists)))
    except ValueError:  # nested lists of uneven length
        return False
    return flat.ndim == 1 and (flat.size == 0 or (flat.dtype.kind in "iuf" and bool(np.isfinite(flat).all())))


def _numeric_array(values: Any) -> np.ndarray | None:
    """``values`` as a float64 array if it is a flat list of finite numbers, else None."""
    if not isinstance(values, list):
        return None
    try:
        array = np.array(values)
    except ValueError:
        return None
    if array.ndim != 1 or array.dtype.kind not in "iuf":
        return None
    array = array.astype(np.float64)
    return array if np.isfinite(array).all() else None


def _check_categories(data: dict, checker: _Checker) -> dict[int, dict]:
    if "categories" not in data:
        checker.add("", "missing top-level key 'categories'; assuming category 1 is 'person'", "missing-key", fatal=False)
        return {}
    categories: dict[int, dict] = {}
    if not isinstance(data["categories"], list):
        checker.add("", f"top-level 'categories' must be a list, found a {type(data['categories']).__name__}", "category")
        return categories
    for i, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            checker.add(f"category #{i}", "needs an integer 'id'", "category")
            continue
        categories[category["id"]] = category
    person = [c for c in categories.values() if c.get("name") == "person"]
    if not person:
        checker.add("", "no category is named 'person'; assuming category 1", "category", fatal=False)
    elif "keypoints" in person[0] and len(person[0]["keypoints"]) != NUM_KEYPOINTS:
        checker.add(
            f"category {person[0]['id']}",
            f"defines {len(person[0]['keypoints'])} keypoints, expected the {NUM_KEYPOINTS} COCO keypoints",
            "category",
        )
    return categories


def _check_images(records: list, checker: _Checker) -> dict[int, dict]:
    images: dict[int, dict] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            checker.add(f"image #{i}", f"is a {type(record).__name__}, expected an object", "image-record")
            continue
        image_id = record.get("id")
        where = f"image {image_id}" if _is_int(image_id) else f"image #{i} (no valid id)"
        missing = [k for k in _IMAGE_KEYS if k not in record]
        if missing:
            checker.add(where, _missing_keys(missing), "missing-key", image_id if _is_int(image_id) else None)
            continue
        if not _is_int(image_id):
            checker.add(where, f"'id' must be an integer, found {image_id!r}", "image-record")
            continue
        if image_id in images:
            checker.add(where, "duplicate image id (the first record with this id is kept)", "duplicate-id", image_id)
            continue
        width, height = record["width"], record["height"]
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            message = f"width and height must be positive integers, found {width!r} x {height!r}"
            checker.add(where, message, "image-record", image_id)
            continue
        if not isinstance(record["file_name"], str) or not record["file_name"]:
            message = f"'file_name' must be a non-empty string, found {record['file_name']!r}"
            checker.add(where, message, "image-record", image_id)
            continue
        images[image_id] = record
    return images


def _segmentation_problem(segmentation: Any, image: dict) -> tuple[str, bool] | None:
    """What is wrong with a segmentation, and whether it is fatal; None if it is fine."""
    if isinstance(segmentation, list):
        if not all(isinstance(p, list) for p in segmentation) or not _all_finite_numbers(segmentation):
            return "segmentation polygons must be lists of finite numbers", True
        if any(len(p) < 6 or len(p) % 2 for p in segmentation):
            return "segmentation has a polygon with fewer than 3 points (it is ignored)", False
        return None
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            return "RLE segmentation needs 'counts' and 'size'", True
        expected = [image["height"], image["width"]]
        if list(segmentation["size"]) != expected:
            return f"RLE segmentation size {segmentation['size']} differs from the image's [height, width] {expected}", True
        if not isinstance(segmentation["counts"], (str, list)):
            return "RLE 'counts' must be a string or a list of integers", True
        return None
    return f"segmentation must be a list of polygons or an RLE object, found a {type(segmentation).__name__}", True


@dataclass
class _Candidate:
    """An annotation that passed the per-record checks, waiting for the vectorised numeric ones."""

    order: int
    ann: dict
    where: str
    image: dict
    crowd: bool


def _numeric_rows(rows: list, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack lists of ``width`` values into float64 ``(N, width)``; also return which rows are not all finite
    numbers. One numpy call in the common case; row by row only when some value is not a number."""
    if not rows:
        return np.zeros((0, width)), np.zeros(0, dtype=bool)
    try:
        array = np.array(rows)
    except ValueError:  # some value is itself a list: the row-by-row path finds which
        array = np.zeros(0, dtype=object)
    if array.dtype.kind in "iuf" and array.shape == (len(rows), width):
        array = array.astype(np.float64)
        return array, ~np.isfinite(array).all(axis=1)
    out, bad = np.zeros((len(rows), width)), np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        values = _numeric_array(row)
        if values is None or values.size != width:
            bad[i] = True
        else:
            out[i] = values
    return out, bad


def _check_annotations(
    records: list,
    images: dict[int, dict],
    categories: dict[int, dict],
    person_id: int,
    people: dict[int, list[dict]],
    crowds: dict[int, list[dict]],
    checker: _Checker,
) -> None:
    """Per-record structure first (one Python pass), then the numbers of all records at once."""
    seen: set[int] = set()
    expected = 3 * NUM_KEYPOINTS
    candidates: list[_Candidate] = []
    for i, ann in enumerate(records):
        if not isinstance(ann, dict):
            checker.add(f"annotation #{i}", f"is a {type(ann).__name__}, expected an object", "annotation", order=i)
            continue
        ann_id, image_id = ann.get("id"), ann.get("image_id")
        where = f"annotation {ann_id}" if _is_int(ann_id) else f"annotation #{i} (no valid id)"
        if _is_int(image_id):
            where += f" (image {image_id})"
        ids = dict(image_id=image_id if _is_int(image_id) else None, ann_id=ann_id if _is_int(ann_id) else None, order=i)

        missing = [k for k in _ANNOTATION_KEYS if k not in ann]
        if missing:
            checker.add(where, _missing_keys(missing), "missing-key", **ids)
            continue
        if not _is_int(ann_id):
            checker.add(where, f"'id' must be an integer, found {ann_id!r}", "annotation", **ids)
            continue
        if ann_id in seen:
            checker.add(where, "duplicate annotation id (the first record with this id is kept)", "duplicate-id", **ids)
            continue
        seen.add(ann_id)
        if image_id not in images:
            message = f"refers to image id {image_id!r}, which is not among the valid images"
            checker.add(where, message, "unknown-image", **ids)
            continue
        category_id = ann["category_id"]
        if category_id != person_id:
            if categories and category_id not in categories:
                checker.add(where, f"category {category_id!r} is not defined in 'categories'", "category", **ids)
            continue  # other categories are legal but not ours

        image = images[image_id]
        before = len(checker.problems)
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1):
            checker.add(where, f"iscrowd must be 0 or 1, found {iscrowd!r}", "annotation", **ids)
        if not (isinstance(ann["bbox"], list) and len(ann["bbox"]) == 4):
            checker.add(where, f"bbox must be 4 finite numbers [x, y, w, h], found {ann['bbox']!r}", "bbox", **ids)
        if "segmentation" in ann:
            found = _segmentation_problem(ann["segmentation"], image)
            if found is not None:
                checker.add(where, found[0], "segmentation", fatal=found[1], **ids)
        if iscrowd != 1:
            keypoints = ann.get("keypoints")
            if keypoints is None:
                checker.add(where, "missing key 'keypoints'", "missing-key", **ids)
            elif not isinstance(keypoints, list):
                checker.add(where, "keypoints must be a flat list of finite numbers", "keypoints", **ids)
            elif len(keypoints) != expected:
                checker.add(where, f"keypoints has {len(keypoints)} values, expected {expected}", "keypoints", **ids)
        if not any(p.fatal for p in checker.problems[before:]):
            candidates.append(_Candidate(i, ann, where, image, iscrowd == 1))

    rejected = _check_boxes(candidates, checker) | _check_keypoints([c for c in candidates if not c.crowd], checker)
    for candidate in candidates:
        if candidate.order not in rejected:
            (crowds if candidate.crowd else people)[candidate.ann["image_id"]].append(candidate.ann)


def _ids(candidate: _Candidate) -> dict:
    return dict(image_id=candidate.ann["image_id"], ann_id=candidate.ann["id"], order=candidate.order)


def _check_boxes(candidates: list[_Candidate], checker: _Checker) -> set[int]:
    """Boxes of all candidates at once; returns the ``order`` of the rejected ones."""
    boxes, bad = _numeric_rows([c.ann["bbox"] for c in candidates], 4)
    empty = ~bad & ((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0))
    rejected = set()
    for i in np.flatnonzero(bad | empty):
        c = candidates[i]
        if bad[i]:
            message = f"bbox must be 4 finite numbers [x, y, w, h], found {c.ann['bbox']!r}"
        else:
            message = f"bbox {c.ann['bbox']} has zero or negative size (w={boxes[i, 2]:g}, h={boxes[i, 3]:g})"
        checker.add(c.where, message, "bbox", **_ids(c))
        rejected.add(c.order)
    return rejected


def _check_keypoints(candidates: list[_Candidate], checker: _Checker) -> set[int]:
    """Keypoints of all non-crowd candidates at once (each has a list of 51 values); returns the ``order`` of the
    rejected ones. Visibility outside {0, 1, 2} is fatal; a wrong ``num_keypoints`` or labelled keypoints outside
    the image are reported only."""
    values, bad = _numeric_rows([c.ann["keypoints"] for c in candidates], 3 * NUM_KEYPOINTS)
    keypoints = values.reshape(-1, NUM_KEYPOINTS, 3)
    visibility = keypoints[:, :, 2]
    bad_v = ~bad[:, None] & (visibility != 0) & (visibility != 1) & (visibility != 2)
    labelled = (visibility > 0) & ~bad[:, None]
    sizes = np.array([[c.image["width"], c.image["height"]] for c in candidates], dtype=np.float64).reshape(-1, 1, 2)
    outside = labelled & ((keypoints[:, :, :2] < -0.5 - KEYPOINT_SLACK_PX) | (keypoints[:, :, :2] > sizes - 0.5 + KEYPOINT_SLACK_PX)).any(-1)
    counts = labelled.sum(axis=1)
    stated = np.array([c.ann.get("num_keypoints", n) for c, n in zip(candidates, counts)], dtype=object)
    miscounted = ~bad & ~bad_v.any(axis=1) & (stated != counts).astype(bool)

    rejected = set()
    for i in np.flatnonzero(bad | bad_v.any(axis=1) | miscounted | outside.any(axis=1)):
        c = candidates[i]
        if bad[i]:
            checker.add(c.where, "keypoints must be a flat list of finite numbers", "keypoints", **_ids(c))
            rejected.add(c.order)
            continue
        if bad_v[i].any():
            k = int(np.flatnonzero(bad_v[i])[0])
            message = f"keypoint {k} has visibility {visibility[i, k]:g}, expected 0, 1 or 2"
            checker.add(c.where, message, "keypoints", **_ids(c))
            rejected.add(c.order)
            continue
        if miscounted[i]:
            message = f"num_keypoints is {stated[i]!r} but {counts[i]} keypoints are labelled (v > 0)"
            checker.add(c.where, message, "num-keypoints", fatal=False, **_ids(c))
        if outside[i].any():
            k = int(np.flatnonzero(outside[i])[0])
            width, height = c.image["width"], c.image["height"]
            message = (
                f"{int(outside[i].sum())} labelled keypoint(s) outside the {width}x{height} image, "
                f"e.g. keypoint {k} at ({keypoints[i, k, 0]:g}, {keypoints[i, k, 1]:g})"
            )
            checker.add(c.where, message, "keypoint-outside", fatal=False, **_ids(c))
    return rejected


def keypoints_array(ann: dict) -> np.ndarray:
    """An annotation's keypoints as float32 ``(17, 3)`` ``[x, y, v]`` (zeros if it has none, as crowds may)."""
    values = ann.get("keypoints")
    if not values:
        return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    return np.asarray(values, dtype=np.float32).reshape(NUM_KEYPOINTS, 3)


__all__ = [
    "KEYPOINT_SLACK_PX",
    "CocoIndex",
    "Problem",
    "check_image_files",
    "keypoints_array",
    "load_coco_keypoints",
    "read_image",
    "segmentation_mask",
]
