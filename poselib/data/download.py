"""COCO 2017 person keypoints: where its files live, what is missing, and fetching it.

Layout under a root folder (``poselib.paths.data_root() / "coco"`` by default)::

    ROOT/annotations/person_keypoints_train2017.json
    ROOT/annotations/person_keypoints_val2017.json
    ROOT/train2017/*.jpg
    ROOT/val2017/*.jpg

:func:`prepare_coco` checks a root and, when asked, downloads the official archives from
``images.cocodataset.org``: each is checked against its published size and MD5, a partial download resumes
with an HTTP ``Range`` request, and archives are extracted (CRC-checked) and then removed. Archives already
placed in the root by hand are verified and extracted without the network. Offline, the first connection fails
within :data:`CONNECT_TIMEOUT_S` seconds, once, with a message saying how to place the files by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlparse

from poselib.progress import progress_disabled

COCO_HOST = "http://images.cocodataset.org"
SPLITS: tuple[str, ...] = ("train2017", "val2017")
#: Images in each split's folder (COCO 2017), used to tell a complete extraction from a partial one.
IMAGE_COUNTS: dict[str, int] = {"train2017": 118_287, "val2017": 5_000}
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
_CHUNK = 1 << 20

Opener = Callable[[urllib.request.Request], object]


class DownloadError(RuntimeError):
    """A download, verification or extraction failed; the message says what to do next."""


class ServerUnreachable(DownloadError):
    """The download server (or the proxy) could not be reached: offline, DNS failure, refused or timed out."""


@dataclass(frozen=True)
class Archive:
    """One published archive: file name, URL, size in bytes, MD5 (None where unknown) and which of its members
    poselib extracts (a name prefix)."""

    name: str
    url: str
    size: int | None
    md5: str | None
    extract_prefix: str


#: The official archives with their published sizes and MD5 checksums.
ARCHIVES: dict[str, Archive] = {
    "annotations": Archive(
        "annotations_trainval2017.zip",
        f"{COCO_HOST}/annotations/annotations_trainval2017.zip",
        252_907_541,
        "f4bbac642086de4f52a3fdda2de5fa2c",
        "annotations/person_keypoints_",
    ),
    "train2017": Archive(
        "train2017.zip", f"{COCO_HOST}/zips/train2017.zip", 19_336_861_798, "cced6f7f71b7629ddf16f17bbcfab6b2", "train2017/"
    ),
    "val2017": Archive(
        "val2017.zip", f"{COCO_HOST}/zips/val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80", "val2017/"
    ),
}


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown COCO split {split!r}; choose from {', '.join(SPLITS)}")
    return split


def coco_paths(root: str | PathLike, split: str) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of a COCO 2017 ``split`` under ``root``."""
    root = Path(root)
    _check_split(split)
    return root / "annotations" / f"person_keypoints_{split}.json", root / split


def _count_images(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.name.lower().endswith(".jpg") and e.is_file())


def check_coco(root: str | PathLike, splits: Iterable[str] = SPLITS) -> list[str]:
    """What is missing under ``root`` for ``splits``, one line each (empty when complete)."""
    missing = []
    for split in splits:
        ann_path, image_dir = coco_paths(root, split)
        if not ann_path.is_file():
            missing.append(f"{split}: annotation file {ann_path} is missing")
        if not image_dir.is_dir():
            missing.append(f"{split}: image folder {image_dir} is missing")
        else:
            found, expected = _count_images(image_dir), IMAGE_COUNTS[split]
            if found < expected:
                missing.append(f"{split}: image folder {image_dir} holds {found} of {expected} images")
    return missing


def _needed_archives(root: Path, splits: Sequence[str]) -> list[Archive]:
    needed = []
    if any(not coco_paths(root, s)[0].is_file() for s in splits):
        needed.append(ARCHIVES["annotations"])
    for split in splits:
        image_dir = coco_paths(root, split)[1]
        if not image_dir.is_dir() or _count_images(image_dir) < IMAGE_COUNTS[split]:
            needed.append(ARCHIVES[split])
    return needed


def manual_instructions(root: str | PathLike, splits: Sequence[str]) -> str:
    """How to put COCO under ``root`` by hand."""
    root = Path(root)
    urls = "\n".join(f"  {a.url}" for a in [ARCHIVES["annotations"], *(ARCHIVES[s] for s in splits)])
    ann_path, image_dir = coco_paths(root, splits[0])
    return (
        f"To install COCO by hand, download\n{urls}\ninto {root}/ and run `poselib data coco --root {root} --download` "
        f"again (it verifies and extracts archives found there without the network), or unzip them there yourself "
        f"so that {ann_path} and {image_dir}/*.jpg exist."
    )


# ------------------------------------------------------------------------------------------------ transfer


def _open_url(request: urllib.request.Request) -> object:
    """Open ``request`` after a quick TCP connection to the server (or its proxy), so that being offline fails
    within :data:`CONNECT_TIMEOUT_S` while a slow transfer still gets :data:`READ_TIMEOUT_S` per read."""
    parsed = urlparse(request.full_url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    target = urlparse(proxy) if proxy and not urllib.request.proxy_bypass(parsed.hostname or "") else parsed
    port = target.port or (443 if target.scheme == "https" else 80)
    socket.create_connection((target.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    return urllib.request.urlopen(request, timeout=READ_TIMEOUT_S)


def file_md5(path: str | PathLike, progress: bool = False) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    from tqdm import tqdm

    digest = hashlib.md5()
    path = Path(path)
    total = path.stat().st_size
    with open(path, "rb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=f"md5 {path.name}", disable=progress_disabled(progress)) as bar:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def verify_archive(
    path: str | PathLike, *, size: int | None = None, md5: str | None = None, progress: bool = False
) -> None:
    """Check a downloaded archive's size and MD5; where the MD5 is unknown, test the zip's CRCs instead.
    Raises :class:`DownloadError`."""
    path = Path(path)
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise DownloadError(f"{path}: {actual} bytes, expected {size}")
    if md5 is not None:
        found = file_md5(path, progress=progress)
        if found != md5:
            raise DownloadError(f"{path}: MD5 {found} differs from the published {md5}; the file is corrupt")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{path}: not a valid zip archive ({exc})") from None
    if bad is not None:
        raise DownloadError(f"{path}: member {bad} fails its CRC check; the archive is corrupt")


def download_file(
    url: str,
    dest: str | PathLike,
    *,
    size: int | None = None,
    md5: str | None = None,
    opener: Opener | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest + ".part"`` if an earlier attempt left one.

    The server's ``Content-Length`` (and ``Content-Range`` when resuming) must agree with ``size`` if given;
    the finished file must have that size and, if given, that ``md5``. A complete ``dest`` is verified and
    kept without contacting the server. ``opener(request) -> response`` defaults to urllib with a
    :data:`CONNECT_TIMEOUT_S` connection check; it is tried once. Raises :class:`DownloadError`.
    """
    from tqdm import tqdm

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        if size is not None and dest.stat().st_size < size:
            dest.replace(part)  # an interrupted copy under the final name: resume it
        else:
            verify_archive(dest, size=size, md5=md5, progress=progress)
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is None or offset < size:
        _transfer(url, part, offset, size, opener or _open_url, progress, tqdm)
    got = part.stat().st_size
    if size is not None and got != size:
        raise DownloadError(f"{url}: download incomplete, {got} of {size} bytes in {part}; run the command again to resume")
    try:
        verify_archive(part, size=size, md5=md5, progress=progress)
    except DownloadError as exc:
        part.unlink()
        raise DownloadError(f"{exc}; removed {part}, run the command again to download it afresh") from None
    part.replace(dest)
    return dest


def _transfer(url: str, part: Path, offset: int, size: int | None, opener: Opener, progress: bool, tqdm) -> None:
    headers = {"User-Agent": "poselib"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    host = urlparse(url).hostname
    try:
        response = opener(urllib.request.Request(url, headers=headers))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # nothing left to send: the part is complete or wrong, which verification decides
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except http.client.HTTPException as exc:
        raise DownloadError(f"{url}: malformed answer from the server ({exc!r})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ServerUnreachable(f"could not reach {host} to fetch {url} ({reason})") from None

    with response:
        status = getattr(response, "status", None) or response.getcode()
        length = response.headers.get("Content-Length")
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            start = content_range.split(" ")[-1].split("-")[0] if content_range else str(offset)
            if start != str(offset):
                raise DownloadError(f"{url}: asked to resume at byte {offset}, the server sent {content_range!r}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # the server ignored the range: start again
        total = offset + int(length) if length is not None else size
        if size is not None and total is not None and total != size:
            raise DownloadError(f"{url}: the server announces {total} bytes, the published size is {size}")
        written = offset
        try:
            with open(part, mode) as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], disable=progress_disabled(progress)
            ) as bar:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"{url}: transfer interrupted after {written} bytes ({exc}); run the command again to resume from {part}"
            ) from None


def extract_archive(
    path: str | PathLike, dest: str | PathLike, *, prefix: str = "", progress: bool = True
) -> int:
    """Extract the members of zip ``path`` whose names start with ``prefix`` into ``dest``; returns how many.

    Member CRCs are checked as they are read; a corrupt archive or a member escaping ``dest`` raises
    :class:`DownloadError`.
    """
    from tqdm import tqdm

    path, dest = Path(path), Path(dest)
    root = dest.resolve()
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and m.filename.startswith(prefix)]
            for member in members:
                target = (dest / member.filename).resolve()
                if root not in target.parents:
                    raise DownloadError(f"{path}: member {member.filename!r} would be written outside {dest}")
            for member in tqdm(members, desc=f"extracting {path.name}", unit="file", disable=progress_disabled(progress)):
                archive.extract(member, dest)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{path}: corrupt zip archive ({exc}); delete it and download it again") from None
    if not members:
        raise DownloadError(f"{path}: holds no member starting with {prefix!r}; is it the right archive?")
    return len(members)


def prepare_coco(
    root: str | PathLike,
    splits: Sequence[str] = SPLITS,
    *,
    download: bool = False,
    keep_archives: bool = False,
    opener: Opener | None = None,
    progress: bool = True,
) -> list[str]:
    """Check ``root`` for ``splits`` and, with ``download``, fetch, verify and extract what is missing.

    Archives already in ``root`` are used without the network. Returns what is still missing (see
    :func:`check_coco`); raises :class:`DownloadError` when a transfer or check fails, with instructions for
    placing the files by hand when the server cannot be reached.
    """
    root = Path(root)
    splits = [_check_split(s) for s in splits]
    if not download:
        return check_coco(root, splits)
    for archive in _needed_archives(root, splits):
        zip_path = root / archive.name
        try:
            download_file(archive.url, zip_path, size=archive.size, md5=archive.md5, opener=opener, progress=progress)
        except ServerUnreachable as exc:
            raise ServerUnreachable(f"{exc}\n{manual_instructions(root, splits)}") from None
        extract_archive(zip_path, root, prefix=archive.extract_prefix, progress=progress)
        if not keep_archives:
            zip_path.unlink()
    return check_coco(root, splits)


def archives_present(root: str | PathLike) -> list[Path]:
    """Archives (complete or partial) lying in ``root``."""
    root = Path(root)
    return [p for a in ARCHIVES.values() for p in (root / a.name, root / (a.name + ".part")) if p.exists()]


__all__ = [
    "ARCHIVES",
    "COCO_HOST",
    "IMAGE_COUNTS",
    "SPLITS",
    "Archive",
    "ServerUnreachable",
    "DownloadError",
    "archives_present",
    "check_coco",
    "coco_paths",
    "download_file",
    "extract_archive",
    "file_md5",
    "manual_instructions",
    "prepare_coco",
    "verify_archive",
]
