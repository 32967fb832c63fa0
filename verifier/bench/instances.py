"""Benchmark instances: the rows of a VNN-COMP ``instances.csv``.

Each row is ``onnx,vnnlib,timeout``: the network and the property, as paths relative to the folder of the
CSV file, and the per-instance timeout in seconds. A header line ``onnx,vnnlib,timeout`` is accepted (most
families have none), blank lines are skipped. The instance's *category* (its benchmark family) is the name
of the folder that holds the CSV file, as in the VNN-COMP results tables.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from verifier.errors import VerifierError


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


def read_instances(path: str | Path, category: str | None = None, check_files: bool = True) -> list[Instance]:
    """The instances listed in ``path``, in file order, each row validated.

    Raises :class:`InstancesError` naming ``file:line`` for a row without exactly three fields, an empty path,
    a timeout that is not a positive finite number, or (with ``check_files``) a network or property file that
    does not exist. A row repeating an earlier ``(onnx, vnnlib)`` pair is an error too: results are keyed by it.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise InstancesError(f"instances file not found: {csv_path}")
    folder = csv_path.resolve().parent
    category = category or folder.name
    instances: list[Instance] = []
    seen: dict[tuple[str, str], int] = {}
    with open(csv_path, newline="") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            fields = [f.strip() for f in fields]
            if not fields or fields == [""] or fields[0].startswith("#"):
                continue
            where = f"{csv_path}:{line}"
            if line == 1 and [f.lower() for f in fields[:3]] == ["onnx", "vnnlib", "timeout"]:
                continue
            if len(fields) != 3:
                raise InstancesError(f"{where}: expected 3 fields 'onnx,vnnlib,timeout', got {len(fields)}: "
                                     f"{','.join(fields)!r}")
            onnx, vnnlib, timeout_text = fields
            if not onnx or not vnnlib:
                raise InstancesError(f"{where}: empty {'onnx' if not onnx else 'vnnlib'} path")
            try:
                timeout = float(timeout_text)
            except ValueError:
                raise InstancesError(f"{where}: timeout {timeout_text!r} is not a number") from None
            if not (math.isfinite(timeout) and timeout > 0):
                raise InstancesError(f"{where}: timeout must be a positive number of seconds, got {timeout_text!r}")
            if (onnx, vnnlib) in seen:
                raise InstancesError(f"{where}: instance {onnx}, {vnnlib} repeats line {seen[onnx, vnnlib]}")
            seen[onnx, vnnlib] = line
            onnx_path, vnnlib_path = folder / onnx, folder / vnnlib
            if check_files:
                for kind, file in (("network", onnx_path), ("property", vnnlib_path)):
                    if not file.is_file():
                        raise InstancesError(f"{where}: {kind} file not found: {file}")
            instances.append(Instance(category, onnx, vnnlib, timeout, onnx_path, vnnlib_path, line))
    return instances


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
