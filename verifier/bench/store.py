"""``results.csv``: outcomes appended one row at a time as instances end, so an interrupted run loses nothing.

Each row is written with a single ``write`` on a file opened for appending and then ``fsync``-ed; a run
killed with SIGKILL can leave at most one partial last line, which :meth:`ResultStore.open` cuts off on
resume (that instance is run again). Rows are keyed by ``(category, onnx, vnnlib)``; on resume the rows
already there are kept and their instances skipped, and a key found twice (which this module never writes)
keeps its last row.

One run per output folder at a time: :meth:`ResultStore.open` takes an exclusive lock on ``DIR/.lock``
(``flock``; released when the run ends, however it ends), so two runs cannot interleave rows.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock, one run at a time is up to the user
    fcntl = None

from verifier.bench.outcome import COLUMNS, Outcome
from verifier.errors import VerifierError


class ResultsFileError(VerifierError):
    """``results.csv`` exists where a fresh run was asked for, or cannot be read back."""


class ResultStore:
    """The results file of one benchmark run (``DIR/results.csv``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock: int | None = None

    def open(self, resume: bool = False, overwrite: bool = False) -> dict[tuple[str, str, str], Outcome]:
        """Prepare the file for appending; returns the outcomes already recorded (empty unless ``resume``).

        Without ``resume`` or ``overwrite`` an existing non-empty file is an error: a second run must not
        silently mix with or destroy the first.
        """
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise ResultsFileError(f"--out {folder} is a file, not a folder; choose another --out")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ResultsFileError(f"--out {folder}: cannot create the folder: {error.strerror or error}") from None
        self.lock()
        try:
            return self._prepare(resume, overwrite)
        except BaseException:
            self.close()
            raise

    def _prepare(self, resume: bool, overwrite: bool) -> dict[tuple[str, str, str], Outcome]:
        if self.path.exists() and not self.path.is_file():
            raise ResultsFileError(f"{self.path} is not a file; choose another --out")
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if exists and not (resume or overwrite):
            raise ResultsFileError(f"{self.path} already exists; pass --resume to continue that run, "
                                   f"--overwrite to start afresh, or choose another --out")
        if exists and resume:
            self._cut_partial_line()
            with open(self.path, newline="") as handle:
                header = next(csv.reader(handle), [])
            if header and tuple(header) != COLUMNS:
                raise ResultsFileError(f"{self.path}: its columns differ from this version's ({len(header)} vs "
                                       f"{len(COLUMNS)}); resume it with the version that wrote it, or use --out")
            done = self.load()
            if self.path.stat().st_size > 0:
                return done
        with open(self.path, "w", newline="") as handle:
            csv.writer(handle).writerow(COLUMNS)
            handle.flush()
            os.fsync(handle.fileno())
        return {}

    def lock(self) -> None:
        """Take the folder's run lock (``.lock``), or raise :class:`ResultsFileError` naming the run holding it."""
        if self._lock is not None or fcntl is None:
            return
        path = self.path.parent / ".lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ResultsFileError(f"--out {self.path.parent}: cannot create {path.name}: "
                                   f"{error.strerror or error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise ResultsFileError(f"another run{f' (pid {holder})' if holder.isdigit() else ''} is writing to "
                                   f"{self.path.parent}; wait for it to end or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def close(self) -> None:
        """Release the folder's run lock (also released when the process ends)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def load(self) -> dict[tuple[str, str, str], Outcome]:
        """Every recorded outcome by key (the file in its current state)."""
        if not self.path.is_file():
            return {}
        with open(self.path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("category", "onnx", "vnnlib", "result", "runtime_s")
                       if c not in (reader.fieldnames or [])]
            if missing:
                raise ResultsFileError(f"{self.path}: not a results file of this tool (missing columns "
                                       f"{', '.join(missing)})")
            outcomes: dict[tuple[str, str, str], Outcome] = {}
            for line, row in enumerate(reader, start=2):
                try:
                    outcome = Outcome.from_row(row)
                except (ValueError, TypeError) as error:
                    raise ResultsFileError(f"{self.path}:{line}: unreadable row ({error})") from None
                outcomes[outcome.key] = outcome
        return outcomes

    def append(self, outcome: Outcome) -> None:
        """Append one row and make it durable before returning."""
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n").writerow(outcome.to_row())
        data = buffer.getvalue().encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _cut_partial_line(self) -> None:
        """Drop a last line without its newline (a write cut short by a kill)."""
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
