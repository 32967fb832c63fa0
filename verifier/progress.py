"""A dependency-free progress bar for long runs, written to stderr (silent when not a terminal unless forced)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``done/total`` with a bar, a free-form status text and the estimated time left.

    Use as a context manager; call :meth:`update` after each item. Output goes to ``stream`` (stderr)
    and is redrawn in place on a terminal; elsewhere a line is printed at most every ``interval`` s.
    ``initial``: items already done before this run (a resumed run); they count in ``done`` but not in the
    rate the time left is estimated from.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, enabled: bool | None = None,
                 interval: float = 10.0, initial: int = 0):
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else enabled
        self.interval = interval
        self.done = self.initial = max(min(initial, self.total), 0)
        self.status = ""
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, advance: int = 1, status: str | None = None) -> None:
        self.done += advance
        if status is not None:
            self.status = status
        now = time.monotonic()
        if self.enabled and (self.tty or now - self._last >= self.interval or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        fraction = self.done / self.total if self.total else 1.0
        done_now = self.done - self.initial
        remaining = elapsed / done_now * (self.total - self.done) if done_now else float("nan")
        width = 24
        bar = "#" * int(width * fraction) + "-" * (width - int(width * fraction))
        eta = "?" if remaining != remaining else _clock(remaining)
        line = f"{self.label} [{bar}] {self.done}/{self.total} {self.status} elapsed {_clock(elapsed)} left {eta}"
        end = "\r" if self.tty and self.done < self.total else "\n"
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self.tty and self.done < self.total:
            self.stream.write("\n")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"
