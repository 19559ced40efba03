"""COCO keypoint loading and validation, image reading, ``poselib data inspect``, and the COCO downloader.

Every file is built here in ``tmp_path``; nothing touches the network (openers are replaced).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from poselib.cli import main as cli_main
from poselib.data import download
from poselib.data.coco import load_coco_keypoints, read_image, segmentation_mask
from poselib.data.errors import DataError
from poselib.data.inspect import inspect_coco

# ------------------------------------------------------------------------------------------------- fixtures


def _keypoints(x0: float, y0: float, visible: int = 17, occluded: tuple[int, ...] = ()) -> list[float]:
    """17 keypoints on a diagonal from (x0, y0); the first ``visible`` labelled (v=2, or 1 if in ``occluded``)."""
    kp = np.zeros((17, 3))
    kp[:visible, 0] = x0 + np.arange(visible) * 2.0
    kp[:visible, 1] = y0 + np.arange(visible) * 1.0
    kp[:visible, 2] = 2
    kp[list(occluded), 2] = 1
    return kp.ravel().tolist()


def tiny_coco() -> dict:
    """Two 64x48 images: image 1 has two people and a crowd region, image 2 one person with no keypoints."""
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [4, 4, 36, 20], "area": 500.0,
             "num_keypoints": 17, "keypoints": _keypoints(5, 5, 17, occluded=(3, 4))},
            {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [20, 20, 20, 20], "area": 300.0,
             "num_keypoints": 5, "keypoints": _keypoints(22, 22, 5)},
            {"id": 13, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [44, 30, 16, 12], "area": 150.0,
             "num_keypoints": 0, "keypoints": [0] * 51,
             # column-major runs covering x 44..59, y 30..41
             "segmentation": {"size": [48, 64], "counts": [44 * 48 + 30] + [12, 36] * 15 + [12, 6 + 4 * 48]}},
            {"id": 21, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 10, 10], "area": 100.0,
             "num_keypoints": 0, "keypoints": [0] * 51},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}],
    }


def write_coco(folder: Path, data: dict, images: bool = True) -> tuple[Path, Path]:
    """Write ``data`` as ``folder/ann.json`` and, with ``images``, a random PNG per image record."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    if images:
        rng = np.random.default_rng(0)
        for record in data["images"]:
            pixels = rng.integers(0, 256, (record["height"], record["width"], 3), dtype=np.uint8)
            cv2.imwrite(str(image_dir / record["file_name"]), pixels)
    ann_path = folder / "ann.json"
    ann_path.write_text(json.dumps(data, indent=1))
    return ann_path, image_dir


# ------------------------------------------------------------------------------------------------- loading


def test_load_valid_file_indexes_people_crowds_and_images(tmp_path):
    ann_path, image_dir = write_coco(tmp_path, tiny_coco())
    index = load_coco_keypoints(ann_path, image_dir, check_images=True)
    assert index.problems == []
    assert index.image_ids == [1, 2]
    assert [a["id"] for a in index.people[1]] == [11, 12]
    assert [a["id"] for a in index.crowds[1]] == [13]
    assert index.crowds[2] == [] and [a["id"] for a in index.people[2]] == [21]
    assert index.categories[1]["name"] == "person"
    assert index.image_path(2) == image_dir / "b.png"
    assert index.data["annotations"][0]["id"] == 11


def _with(mutate) -> dict:
    data = copy.deepcopy(tiny_coco())
    mutate(data)
    return data


def _ann(data: dict, ann_id: int) -> dict:
    return next(a for a in data["annotations"] if a["id"] == ann_id)


BAD_CASES = {
    "short keypoints": (lambda d: _ann(d, 12).update(keypoints=_ann(d, 12)["keypoints"][:50]), 12, 1,
                        "annotation 12 (image 1): keypoints has 50 values, expected 51"),
    "missing bbox": (lambda d: _ann(d, 12).pop("bbox"), 12, 1, "annotation 12 (image 1): missing key 'bbox'"),
    "zero-size box": (lambda d: _ann(d, 11).update(bbox=[4, 4, 0, 20]), 11, 1, "zero or negative size"),
    "negative box": (lambda d: _ann(d, 21).update(bbox=[4, 4, 10, -3]), 21, 2, "zero or negative size"),
    "unknown image": (lambda d: _ann(d, 12).update(image_id=99), 12, 99, "refers to image id 99"),
    "duplicate id": (lambda d: _ann(d, 21).update(id=12), 12, 2, "duplicate annotation id"),
    "bad visibility": (lambda d: _ann(d, 12)["keypoints"].__setitem__(5, 3), 12, 1, "keypoint 1 has visibility 3"),
    "keypoint not a number": (lambda d: _ann(d, 12)["keypoints"].__setitem__(0, "x"), 12, 1, "flat list of finite numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_annotation_names_file_and_annotation(tmp_path, case):
    mutate, ann_id, image_id, fragment = BAD_CASES[case]
    ann_path, image_dir = write_coco(tmp_path, _with(mutate), images=False)
    with pytest.raises(DataError) as raised:
        load_coco_keypoints(ann_path)
    message = str(raised.value)
    assert message.startswith(f"{ann_path}: annotation {ann_id} (image {image_id})"), message
    assert fragment in message
    assert raised.value.ann_id == ann_id

    # strict=False skips the bad record, keeps the others and records the problem
    index = load_coco_keypoints(ann_path, strict=False)
    assert [p.ann_id for p in index.problems] == [ann_id]
    kept = {a["id"] for anns in [*index.people.values(), *index.crowds.values()] for a in anns}
    total = {a["id"] for a in tiny_coco()["annotations"]}
    assert len(kept) == len(total) - 1


def test_strict_error_counts_the_other_problems(tmp_path):
    def two_problems(d):
        _ann(d, 11)["bbox"] = [0, 0, -1, 5]
        _ann(d, 12)["keypoints"] = [0] * 48

    ann_path, _ = write_coco(tmp_path, _with(two_problems), images=False)
    with pytest.raises(DataError, match=r"annotation 11 \(image 1\).*and 1 more problem"):
        load_coco_keypoints(ann_path)


def test_keypoints_outside_image_are_reported_but_kept(tmp_path):
    ann_path, _ = write_coco(tmp_path, _with(lambda d: _ann(d, 12)["keypoints"].__setitem__(3, 70.0)), images=False)
    index = load_coco_keypoints(ann_path)  # not fatal: strict loading succeeds
    (problem,) = index.problems
    assert (problem.ann_id, problem.kind, problem.fatal) == (12, "keypoint-outside", False)
    assert str(problem).startswith(f"{ann_path}: annotation 12 (image 1): 1 labelled keypoint(s) outside the 64x48 image")
    assert "keypoint 1 at (70, 23)" in str(problem)
    assert [a["id"] for a in index.people[1]] == [11, 12]

    # a keypoint on the border line itself is fine
    ann_path, _ = write_coco(tmp_path, _with(lambda d: _ann(d, 12)["keypoints"].__setitem__(3, 64.0)), images=False)
    assert load_coco_keypoints(ann_path).problems == []


def test_image_record_problems(tmp_path):
    data = _with(lambda d: d["images"].append({"id": 1, "file_name": "c.png", "width": 64, "height": 48}))
    ann_path, _ = write_coco(tmp_path, data, images=False)
    with pytest.raises(DataError, match=r"ann\.json: image 1: duplicate image id"):
        load_coco_keypoints(ann_path)

    data = _with(lambda d: d["images"][1].pop("width"))
    ann_path, _ = write_coco(tmp_path, data, images=False)
    index = load_coco_keypoints(ann_path, strict=False)
    # the image is unusable, and so is the annotation pointing at it
    assert [(p.kind, p.image_id, p.ann_id) for p in index.problems] == [("missing-key", 2, None), ("unknown-image", 2, 21)]
    assert index.image_ids == [1]


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "images": [],\n  "annotations": [,]\n}\n')
    with pytest.raises(DataError, match=r"broken\.json: line 3, column 19: malformed JSON"):
        load_coco_keypoints(path)


def test_missing_file_and_missing_sections(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.json: file not found"):
        load_coco_keypoints(tmp_path / "nothere.json")
    path = tmp_path / "noann.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match=r"noann\.json: missing top-level key 'annotations'"):
        load_coco_keypoints(path)


def test_missing_and_corrupt_image_files(tmp_path):
    ann_path, image_dir = write_coco(tmp_path, tiny_coco())
    (image_dir / "b.png").unlink()
    with pytest.raises(DataError) as raised:
        load_coco_keypoints(ann_path, image_dir, check_images=True)
    assert str(raised.value).startswith(f"{ann_path}: image 2: {image_dir / 'b.png'}: image file not found")

    (image_dir / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"image 2: .*b\.png: cannot decode image"):
        load_coco_keypoints(ann_path, image_dir, check_images=True)

    # strict=False drops the image and its annotations, keeps the problem
    index = load_coco_keypoints(ann_path, image_dir, strict=False, check_images=True)
    assert index.image_ids == [1] and 2 not in index.people
    assert [(p.kind, p.image_id) for p in index.problems] == [("image-corrupt", 2)]

    # without check_images, nothing is opened
    assert load_coco_keypoints(ann_path, image_dir).image_ids == [1, 2]


def test_image_size_mismatch_is_a_problem(tmp_path):
    ann_path, image_dir = write_coco(tmp_path, tiny_coco())
    cv2.imwrite(str(image_dir / "a.png"), np.zeros((40, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"image 1: image file .*a\.png is 64x40 \(WxH\) but the record says 64x48"):
        load_coco_keypoints(ann_path, image_dir, check_images=True)


def test_read_image_returns_rgb(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "blue.png"), bgr)
    rgb = read_image(tmp_path / "blue.png")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 200).all() and (rgb[..., :2] == 0).all()
    with pytest.raises(DataError, match=r"missing\.jpg: image file not found \(image 7 of ann\.json\)"):
        read_image(tmp_path / "missing.jpg", image_id=7, ann_path="ann.json")


def test_segmentation_polygon_and_rle_agree():
    polygon = [[2.0, 3.0, 9.0, 3.0, 9.0, 7.0, 2.0, 7.0]]
    from_polygon = segmentation_mask(polygon, 10, 12)
    assert from_polygon.shape == (10, 12) and from_polygon.dtype == np.uint8
    assert from_polygon.sum() > 0 and from_polygon[0].sum() == 0 and from_polygon[:, 11].sum() == 0

    from pycocotools import mask as mask_utils

    compressed = mask_utils.encode(np.asfortranarray(from_polygon))
    compressed = {"size": compressed["size"], "counts": compressed["counts"].decode()}  # as JSON stores it
    assert np.array_equal(segmentation_mask(compressed, 10, 12), from_polygon)

    # uncompressed RLE, column-major runs alternating zeros and ones: 22 zeros, (3 ones, 7 zeros) x 4, 3 ones, 55 zeros
    uncompressed = {"size": [10, 12], "counts": [22] + [3, 7] * 4 + [3, 55]}
    decoded = segmentation_mask(uncompressed, 10, 12)
    expected = np.zeros((10, 12), np.uint8)
    expected[2:5, 2:7] = 1
    assert np.array_equal(decoded, expected)
    assert segmentation_mask([], 10, 12).sum() == 0


# ------------------------------------------------------------------------------------------------- inspect


def test_inspect_counts(tmp_path):
    ann_path, image_dir = write_coco(tmp_path, tiny_coco())
    report = inspect_coco(ann_path, image_dir, progress=False)
    assert report.ok and report.images_checked == 2
    assert (report.images, report.images_with_people, report.people, report.crowd_regions) == (2, 2, 3, 1)
    assert report.people_with_keypoints == 2
    # person 11: 15 visible + 2 occluded; person 12: 5 visible, 12 absent; person 21: 17 absent
    assert report.keypoints_by_visibility == {0: 29, 1: 2, 2: 20}


def test_inspect_cli_reports_problems_and_exit_code(tmp_path, capsys):
    ann_path, image_dir = write_coco(tmp_path, tiny_coco())
    assert cli_main(["data", "inspect", str(ann_path), "--images", str(image_dir)]) == 0
    assert "no problems found" in capsys.readouterr().out

    data = _with(lambda d: _ann(d, 12).update(keypoints=[1.0] * 50))
    ann_path, image_dir = write_coco(tmp_path, data, images=False)
    (image_dir / "a.png").unlink()
    assert cli_main(["data", "inspect", str(ann_path), "--images", str(image_dir)]) == 1
    out = capsys.readouterr().out
    assert f"error: {ann_path}: annotation 12 (image 1): keypoints has 50 values, expected 51" in out
    assert "image 1:" in out and "a.png: image file not found" in out
    assert "people (non-crowd)     2" in out  # the bad annotation is not counted


# ------------------------------------------------------------------------------------------------ download


class FakeResponse:
    """Just enough of an HTTP response for :func:`download.download_file`; ``fail_after`` bytes then a reset."""

    def __init__(self, body: bytes, status: int = 200, headers: dict | None = None, fail_after: int | None = None):
        self.body, self.status, self.fail_after = io.BytesIO(body), status, fail_after
        self.headers = {"Content-Length": str(len(body)), **(headers or {})}
        self.sent = 0

    def read(self, n: int) -> bytes:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        limit = n if self.fail_after is None else min(n, self.fail_after - self.sent)
        chunk = self.body.read(limit)
        self.sent += len(chunk)
        return chunk

    def getcode(self) -> int:
        return self.status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def offline(request):
    raise urllib.error.URLError(OSError(-2, "Name or service not known"))


def test_coco_paths_and_check(tmp_path, monkeypatch):
    ann_path, image_dir = download.coco_paths(tmp_path, "val2017")
    assert ann_path == tmp_path / "annotations" / "person_keypoints_val2017.json"
    assert image_dir == tmp_path / "val2017"
    with pytest.raises(ValueError, match="unknown COCO split 'test2017'"):
        download.coco_paths(tmp_path, "test2017")

    monkeypatch.setitem(download.IMAGE_COUNTS, "val2017", 2)
    missing = download.check_coco(tmp_path, ["val2017"])
    assert len(missing) == 2 and "annotation file" in missing[0] and "image folder" in missing[1]
    ann_path.parent.mkdir()
    ann_path.write_text("{}")
    image_dir.mkdir()
    (image_dir / "1.jpg").write_bytes(b"x")
    assert download.check_coco(tmp_path, ["val2017"]) == [f"val2017: image folder {image_dir} holds 1 of 2 images"]
    (image_dir / "2.jpg").write_bytes(b"x")
    assert download.check_coco(tmp_path, ["val2017"]) == []


def test_offline_fails_at_once_with_instructions(tmp_path):
    with pytest.raises(download.ServerUnreachable, match="could not reach images.cocodataset.org"):
        download.download_file("http://images.cocodataset.org/zips/val2017.zip", tmp_path / "v.zip", opener=offline, progress=False)

    calls = []

    def counting_offline(request):
        calls.append(request.full_url)
        offline(request)

    with pytest.raises(download.ServerUnreachable) as raised:
        download.prepare_coco(tmp_path, ["val2017"], download=True, opener=counting_offline, progress=False)
    message = str(raised.value)
    assert len(calls) == 1  # one try, no retries
    assert "http://images.cocodataset.org/zips/val2017.zip" in message and "by hand" in message
    assert str(tmp_path / "annotations" / "person_keypoints_val2017.json") in message


def test_partial_download_resumes_with_range(tmp_path):
    body = make_zip({"val2017/1.jpg": bytes(range(256)) * 40, "val2017/2.jpg": b"y" * 3000})
    md5 = hashlib.md5(body).hexdigest()
    dest = tmp_path / "val2017.zip"
    half = len(body) // 2
    requests = []

    def first(request):
        requests.append(dict(request.header_items()))
        return FakeResponse(body, fail_after=half)

    with pytest.raises(download.DownloadError, match="interrupted after .* run the command again to resume"):
        download.download_file("http://host/val2017.zip", dest, size=len(body), md5=md5, opener=first, progress=False)
    part = tmp_path / "val2017.zip.part"
    assert part.read_bytes() == body[:half] and not dest.exists()

    def resume(request):
        requests.append(dict(request.header_items()))
        start = int(request.get_header("Range").removeprefix("bytes=").rstrip("-"))
        return FakeResponse(body[start:], status=206, headers={"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})

    download.download_file("http://host/val2017.zip", dest, size=len(body), md5=md5, opener=resume, progress=False)
    assert "Range" not in requests[0] and requests[1]["Range"] == f"bytes={half}-"
    assert dest.read_bytes() == body and not part.exists()

    # a complete file is verified and kept without contacting the server
    download.download_file("http://host/val2017.zip", dest, size=len(body), md5=md5, opener=offline, progress=False)


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    body = make_zip({"a.txt": b"a" * 5000})
    (tmp_path / "f.zip.part").write_bytes(b"stale bytes")
    download.download_file("http://host/f.zip", tmp_path / "f.zip", size=len(body),
                           opener=lambda request: FakeResponse(body), progress=False)
    assert (tmp_path / "f.zip").read_bytes() == body


def test_bad_checksum_size_and_zip_are_refused(tmp_path):
    body = make_zip({"a.txt": b"a" * 5000})
    serve = lambda request: FakeResponse(body)  # noqa: E731
    with pytest.raises(download.DownloadError, match="MD5 .* differs from the published 0{32}"):
        download.download_file("http://host/f.zip", tmp_path / "f.zip", size=len(body), md5="0" * 32, opener=serve, progress=False)
    assert not (tmp_path / "f.zip.part").exists()  # a corrupt part cannot be resumed into a good file

    with pytest.raises(download.DownloadError, match=f"announces {len(body)} bytes, the published size is {len(body) + 1}"):
        download.download_file("http://host/g.zip", tmp_path / "g.zip", size=len(body) + 1, opener=serve, progress=False)

    corrupt = bytearray(body)
    corrupt[40] ^= 0xFF  # inside the member's data: only the CRC check can notice
    with pytest.raises(download.DownloadError, match="CRC|corrupt|not a valid zip"):
        download.download_file("http://host/h.zip", tmp_path / "h.zip", opener=lambda r: FakeResponse(bytes(corrupt)), progress=False)


def test_extract_refuses_members_outside_the_root(tmp_path):
    evil = tmp_path / "evil.zip"
    evil.write_bytes(make_zip({"../outside.txt": b"x"}))
    with pytest.raises(download.DownloadError, match="outside"):
        download.extract_archive(evil, tmp_path / "root", progress=False)
    assert not (tmp_path / "outside.txt").exists()


def _fake_archives(tmp_path, monkeypatch):
    annotations = make_zip({
        "annotations/person_keypoints_val2017.json": json.dumps(tiny_coco()).encode(),
        "annotations/instances_val2017.json": b"{}",
    })
    images = make_zip({"val2017/000001.jpg": b"1" * 100, "val2017/000002.jpg": b"2" * 100})
    served = {"http://host/annotations.zip": annotations, "http://host/val2017.zip": images}
    monkeypatch.setitem(download.ARCHIVES, "annotations",
                        download.Archive("annotations.zip", "http://host/annotations.zip", len(annotations), None, "annotations/person_keypoints_"))
    monkeypatch.setitem(download.ARCHIVES, "val2017",
                        download.Archive("val2017.zip", "http://host/val2017.zip", len(images), hashlib.md5(images).hexdigest(), "val2017/"))
    monkeypatch.setitem(download.IMAGE_COUNTS, "val2017", 2)
    return served


def test_prepare_coco_downloads_extracts_and_cleans_up(tmp_path, monkeypatch, capsys):
    served = _fake_archives(tmp_path, monkeypatch)
    root = tmp_path / "coco"
    fetched = []

    def opener(request):
        fetched.append(request.full_url)
        return FakeResponse(served[request.full_url])

    assert download.prepare_coco(root, ["val2017"], download=True, opener=opener, progress=False) == []
    assert sorted(fetched) == sorted(served)
    ann_path, image_dir = download.coco_paths(root, "val2017")
    assert load_coco_keypoints(ann_path).image_ids == [1, 2]
    assert sorted(p.name for p in image_dir.iterdir()) == ["000001.jpg", "000002.jpg"]
    assert not (root / "annotations" / "instances_val2017.json").exists()  # only person keypoints are extracted
    assert not (root / "val2017.zip").exists()

    # the check alone (no --download) now reports a complete folder
    assert cli_main(["data", "coco", "--root", str(root), "--split", "val2017"]) == 0


def test_prepare_coco_uses_archives_placed_by_hand_offline(tmp_path, monkeypatch, capsys):
    served = _fake_archives(tmp_path, monkeypatch)
    root = tmp_path / "coco"
    root.mkdir()
    (root / "annotations.zip").write_bytes(served["http://host/annotations.zip"])
    (root / "val2017.zip").write_bytes(served["http://host/val2017.zip"])

    assert cli_main(["data", "coco", "--root", str(root), "--split", "val2017"]) == 1
    out = capsys.readouterr().out
    assert "incomplete" in out and "archives found there: annotations.zip, val2017.zip" in out

    assert download.prepare_coco(root, ["val2017"], download=True, opener=offline, progress=False) == []


def test_bad_segmentations(tmp_path):
    ann_path, _ = write_coco(tmp_path, _with(lambda d: _ann(d, 11).update(segmentation=[[1, 2, "x", 4, 5, 6]])), images=False)
    with pytest.raises(DataError, match=r"annotation 11 \(image 1\): segmentation polygons must be lists of finite numbers"):
        load_coco_keypoints(ann_path)
    ann_path, _ = write_coco(tmp_path, _with(lambda d: _ann(d, 13)["segmentation"].update(size=[10, 10])), images=False)
    with pytest.raises(DataError, match=r"annotation 13 \(image 1\): RLE segmentation size \[10, 10\] differs"):
        load_coco_keypoints(ann_path)
    # a degenerate polygon is only reported: COCO has a few, and decoding drops them
    ann_path, _ = write_coco(tmp_path, _with(lambda d: _ann(d, 11).update(segmentation=[[1, 2, 3, 4]])), images=False)
    (problem,) = load_coco_keypoints(ann_path).problems
    assert (problem.ann_id, problem.kind, problem.fatal) == (11, "segmentation", False)


def test_nested_keypoints_are_rejected_not_crashed(tmp_path):
    def nested(d):
        _ann(d, 12)["keypoints"][7] = [1, 2]

    ann_path, _ = write_coco(tmp_path, _with(nested), images=False)
    with pytest.raises(DataError, match=r"annotation 12 \(image 1\): keypoints must be a flat list of finite numbers"):
        load_coco_keypoints(ann_path)


def test_wrong_num_keypoints_is_reported_but_kept(tmp_path):
    ann_path, _ = write_coco(tmp_path, _with(lambda d: _ann(d, 12).update(num_keypoints=4)), images=False)
    (problem,) = load_coco_keypoints(ann_path).problems
    assert (problem.ann_id, problem.kind, problem.fatal) == (12, "num-keypoints", False)
    assert "num_keypoints is 4 but 5 keypoints are labelled" in str(problem)
