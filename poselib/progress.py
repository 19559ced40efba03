"""Progress bars: one switch shared by every loop that shows one.

tqdm reads ``TQDM_DISABLE`` only for arguments a caller leaves out, and our loops pass ``disable`` explicitly,
so the environment switch is honoured here. The book runner sets it: a rendered page would otherwise show every
update of every bar as a line.
"""

from __future__ import annotations

import os


def progress_disabled(show: bool) -> bool:
    """The ``disable`` argument for tqdm: True when ``show`` is False or ``TQDM_DISABLE`` is set to a true value."""
    return not show or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
