"""A wall-clock budget shared by every phase of a verification run."""

from __future__ import annotations

import time


class Deadline:
    """Seconds left until a fixed end time (``None``: no limit)."""

    def __init__(self, seconds: float | None):
        self.start = time.monotonic()
        self.end = None if seconds is None else self.start + max(0.0, seconds)

    def remaining(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()

    def expired(self, margin: float = 0.0) -> bool:
        return self.remaining() <= margin

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def sub(self, fraction: float, at_most: float | None = None) -> Deadline:
        """A shorter deadline: ``fraction`` of what is left (and at most ``at_most`` seconds)."""
        left = self.remaining()
        seconds = left * fraction if left != float("inf") else (at_most if at_most is not None else None)
        if at_most is not None and seconds is not None:
            seconds = min(seconds, at_most)
        return Deadline(seconds)
