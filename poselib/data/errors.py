"""The error raised for bad data files and records."""

from __future__ import annotations

from os import PathLike


class DataError(ValueError):
    """A data file or one of its records is unusable.

    The message starts with the file and names the record, e.g.
    ``data/x/annotations.json: annotation 12 (image 3): keypoints has 50 values, expected 51``. The parts are
    kept as attributes so callers can react to them.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike | None = None,
        image_id: int | None = None,
        ann_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.image_id = image_id
        self.ann_id = ann_id
