"""Cooperative time limits: long computations call :func:`checkpoint`, which raises :class:`TimeLimitReached`
once the innermost active :func:`time_limit` has passed.

The limit is per thread, so concurrent verifications in different threads do not see each other's. With no
active limit a checkpoint costs one attribute lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class TimeLimitReached(Exception):
    """Raised by :func:`checkpoint` after the active time limit; callers turn it into a ``timeout`` answer."""


@contextmanager
def time_limit(end: float | None) -> Iterator[None]:
    """Within the block, :func:`checkpoint` raises once ``time.monotonic()`` passes ``end`` (None: no limit)."""
    previous = getattr(_local, "end", None)
    _local.end = end if previous is None or end is None else min(end, previous)
    if end is None:
        _local.end = previous
    try:
        yield
    finally:
        _local.end = previous


def checkpoint() -> None:
    """Raise :class:`TimeLimitReached` if the active time limit has passed."""
    end = getattr(_local, "end", None)
    if end is not None and time.monotonic() >= end:
        raise TimeLimitReached()
