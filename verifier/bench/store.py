"""``results.csv``: outcomes appended one row at a time as instances end, so an interrupted run loses nothing.

Each row is written with a single ``write`` on a file opened for appending and then ``fsync``-ed; a run
killed with SIGKILL can leave at most one partial last line, which :meth:`ResultStore.open` cuts off on
resume (that instance is run again). Rows are keyed by ``(category, onnx, vnnlib)``; on resume the rows
already there are kept and their instances skipped, and a key found twice (which this module never writes)
keeps its last row.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from verifier.bench.outcome import COLUMNS, Outcome
from verifier.errors import VerifierError


class ResultsFileError(VerifierError):
    """``results.csv`` exists where a fresh run was asked for, or cannot be read back."""


class ResultStore:
    """The results file of one benchmark run (``DIR/results.csv``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def open(self, resume: bool = False, overwrite: bool = False) -> dict[tuple[str, str, str], Outcome]:
        """Prepare the file for appending; returns the outcomes already recorded (empty unless ``resume``).

        Without ``resume`` or ``overwrite`` an existing non-empty file is an error: a second run must not
        silently mix with or destroy the first.
        """
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if exists and not (resume or overwrite):
            raise ResultsFileError(f"{self.path} already exists; pass --resume to continue that run, "
                                   f"--overwrite to start afresh, or choose another --out")
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
