"""Benchmark instances: the rows of a VNN-COMP ``instances.csv``.

Each row is ``onnx,vnnlib,timeout``: the network and the property, as paths relative to the folder of the
CSV file, and the per-instance timeout in seconds. Both paths must stay inside that folder once resolved
(``..``, absolute paths and symbolic links included), so a downloaded ``instances.csv`` cannot make a run read
files elsewhere on the machine; ``allow_outside=True`` (``--allow-outside-paths``) lifts that. A header line
``onnx,vnnlib,timeout`` is accepted (most families have none), blank lines are skipped. The instance's
*category* (its benchmark family) is the name of the folder that holds the CSV file, as in the VNN-COMP
results tables.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from verifier.errors import VerifierError, quote, shorten


class InstancesError(VerifierError):
    """An ``instances.csv`` file is missing or one of its rows is malformed; the message names ``file:line``."""


@dataclass(frozen=True)
class Instance:
    """One verification problem of a benchmark family.

    ``onnx`` and ``vnnlib`` are the paths as written in the CSV (relative to its folder; they identify the
    instance in results tables); ``onnx_path`` and ``vnnlib_path`` are where the files are; ``timeout`` is the
    competition's per-instance limit in seconds (before any ``--timeout-scale``).
    """

    category: str
    onnx: str
    vnnlib: str
    timeout: float
    onnx_path: Path
    vnnlib_path: Path
    line: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        """``(category, onnx, vnnlib)``: what identifies an instance in ``results.csv``."""
        return (self.category, self.onnx, self.vnnlib)

    @property
    def name(self) -> str:
        """A file-name-safe label, ``<network>+<property>`` (stems only)."""
        stem = f"{Path(self.onnx).name.removesuffix('.gz').removesuffix('.onnx')}+" \
               f"{Path(self.vnnlib).name.removesuffix('.gz').removesuffix('.vnnlib')}"
        return "".join(c if c.isalnum() or c in "._+-" else "_" for c in stem)


def read_instances(path: str | Path, category: str | None = None, check_files: bool = True,
                   allow_outside: bool = False) -> list[Instance]:
    """The instances listed in ``path``, in file order, each row validated.

    Raises :class:`InstancesError` naming ``file:line`` for a row without exactly three fields, an empty path,
    a path that leaves the file's folder (unless ``allow_outside``), a timeout that is not a positive finite
    number, or (with ``check_files``) a network or property file that does not exist. A row repeating an
    earlier ``(onnx, vnnlib)`` pair is an error too: results are keyed by it. Messages quote the file's
    fields shortened, and never the content of the files they point to.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise InstancesError(f"instances file not found: {csv_path}")
    folder = csv_path.resolve().parent
    category = category or folder.name
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            return _read_rows(csv.reader(handle), csv_path, folder, category, check_files, allow_outside)
    except (csv.Error, UnicodeDecodeError) as error:
        raise InstancesError(f"{csv_path}: not a readable CSV file ({shorten(error, 100)})") from None
    except OSError as error:
        raise InstancesError(f"cannot read {csv_path}: {error.strerror or error}") from None


def _read_rows(rows, csv_path: Path, folder: Path, category: str, check_files: bool,
               allow_outside: bool) -> list[Instance]:
    instances: list[Instance] = []
    seen: dict[tuple[str, str], int] = {}
    for line, fields in enumerate(rows, start=1):
        fields = [f.strip() for f in fields]
        if not fields or fields == [""] or fields[0].startswith("#"):
            continue
        where = f"{csv_path}:{line}"
        if line == 1 and [f.lower() for f in fields[:3]] == ["onnx", "vnnlib", "timeout"]:
            continue
        if len(fields) != 3:
            raise InstancesError(f"{where}: expected 3 fields 'onnx,vnnlib,timeout', got {len(fields)}: "
                                 f"{quote(','.join(fields))}")
        onnx, vnnlib, timeout_text = fields
        if not onnx or not vnnlib:
            raise InstancesError(f"{where}: empty {'onnx' if not onnx else 'vnnlib'} path")
        try:
            timeout = float(timeout_text)
        except ValueError:
            raise InstancesError(f"{where}: timeout {quote(timeout_text)} is not a number") from None
        if not (math.isfinite(timeout) and timeout > 0):
            raise InstancesError(f"{where}: timeout must be a positive number of seconds, got "
                                 f"{quote(timeout_text)}")
        if (onnx, vnnlib) in seen:
            raise InstancesError(f"{where}: instance {shorten(onnx)}, {shorten(vnnlib)} repeats line "
                                 f"{seen[onnx, vnnlib]}")
        seen[onnx, vnnlib] = line
        onnx_path, vnnlib_path = folder / onnx, folder / vnnlib
        for kind, written, file in (("network", onnx, onnx_path), ("property", vnnlib, vnnlib_path)):
            if not allow_outside and not _inside(file, folder):
                raise InstancesError(f"{where}: the {kind} path {quote(written)} leads outside {folder} (links "
                                     "resolved); --allow-outside-paths allows it")
            if check_files and not file.is_file():
                raise InstancesError(f"{where}: {kind} file not found: {shorten(file, 160)}")
        instances.append(Instance(category, onnx, vnnlib, timeout, onnx_path, vnnlib_path, line))
    return instances


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, with every symbolic link and ``..`` resolved, lies inside ``folder``."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    return resolved == folder or folder in resolved.parents


def select_rows(instances: list[Instance], rows: str | None = None, limit: int | None = None) -> list[Instance]:
    """A subset of ``instances``: ``rows`` is a Python slice ``start:stop:step`` over the rows (``"::10"``: every
    tenth), ``limit`` keeps at most that many of those."""
    chosen = instances
    if rows:
        parts = rows.split(":")
        if len(parts) > 3:
            raise InstancesError(f"--rows {rows!r}: expected a slice start:stop:step")
        try:
            chosen = chosen[slice(*(int(p) if p.strip() else None for p in parts))] if len(parts) > 1 \
                else [chosen[int(parts[0])]]
        except (ValueError, IndexError) as error:
            raise InstancesError(f"--rows {rows!r}: {error}") from None
    if limit is not None:
        chosen = chosen[:max(limit, 0)]
    return chosen
