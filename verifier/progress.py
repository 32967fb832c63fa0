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


class SearchMonitor:
    """Prints the state of one verification about once a second while it runs: the phase, domains done and
    open, the current global lower bound (the smallest bound on the property's margin over the open domains:
    above 0 means proved), the time spent and the time left. It reads the run's ``stats`` dictionary, which the
    phases keep up to date (``phase``, ``domains``, ``open_domains``, ``lower_bound``), from a background
    thread, so the search loops pay nothing for it. On a terminal the line is redrawn in place."""

    def __init__(self, stream: TextIO | None = None, interval: float = 1.0, enabled: bool = True,
                 on_update=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.enabled = enabled
        self.on_update = on_update   # called with the stats every interval (the command line's supervisor)
        self.lines = 0
        self.stats: dict = {}   # the watched run's statistics (read by the command line's deadline watchdog)

    def line(self, stats: dict, start: float, end: float | None) -> str:
        """The progress line for the current ``stats`` (``start``/``end``: monotonic times of the run)."""
        now = time.monotonic()
        parts = [str(stats.get("phase", "starting"))]
        if stats.get("domains") is not None:
            parts.append(f"domains {stats['domains']}")
        if stats.get("open_domains") is not None:
            parts.append(f"open {stats['open_domains']}")
        bound = stats.get("lower_bound")
        if isinstance(bound, (int, float)):
            parts.append(f"bound {bound:.4g}")
        parts.append(f"elapsed {now - start:.1f}s")
        if end is not None:
            parts.append(f"left {max(end - now, 0.0):.1f}s")
        return " | ".join(parts)

    def watch(self, stats: dict, start: float, end: float | None):
        """A context manager printing :meth:`line` every ``interval`` seconds until the block ends (when
        ``enabled``; either way ``self.stats`` is the run's statistics)."""
        import contextlib
        import threading

        self.stats = stats

        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval):
                if self.on_update is not None:
                    self.on_update(stats)
                if self.enabled:
                    self._write(self.line(stats, start, end))

        @contextlib.contextmanager
        def running():
            if not self.enabled and self.on_update is None:
                yield self
                return
            thread = threading.Thread(target=loop, name="verifier-progress", daemon=True)
            thread.start()
            try:
                yield self
            finally:
                stop.set()
                thread.join(timeout=1.0)
                if self.tty and self.lines:
                    self._write_raw("\n")

        return running()

    def _write(self, line: str) -> None:
        self.lines += 1
        self._write_raw(("\r\x1b[K" + line) if self.tty else line + "\n")

    def _write_raw(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream ends the progress, not the run
            pass
