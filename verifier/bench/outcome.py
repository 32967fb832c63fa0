"""What one instance's run produced: one row of ``results.csv``.

The first six columns are those of the VNN-COMP results tables (category, onnx, vnnlib, prepare time, result,
run time); the rest are ours: the scaled timeout, the verifier's own time (``verify_s``, without process
start-up) and the start-up cost, the benchmark runner's witness check, the search statistics, the peak memory
and exit code of the instance's process, and a one-line message.

``prepare_s`` is 0: the verifier has no separate preparation step (VNN-COMP's ``prepare_instance.sh``), so
loading the model counts in ``runtime_s``, as it does in the competition.

``result`` is one of ``sat``, ``unsat``, ``unknown``, ``timeout`` (the verifier gave up at its deadline, or
answered after it) and ``error`` (the process crashed, was killed, hung past the deadline, or printed no
verdict). Scoring is not stored here: it depends on the ground truth and is recomputed for every report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from verifier.jsonout import dumps

RESULTS = ("sat", "unsat", "unknown", "timeout", "error")


@dataclass
class Outcome:
    """One instance's outcome (see the module docstring for the columns)."""

    category: str
    onnx: str
    vnnlib: str
    result: str
    runtime_s: float
    prepare_s: float = 0.0
    timeout_s: float | None = None
    verify_s: float | None = None
    startup_s: float | None = None
    witness: str = ""
    method: str = ""
    domains: int | None = None
    load_s: float | None = None
    attack_s: float | None = None
    search_s: float | None = None
    peak_rss_mb: float | None = None
    exit_code: int | None = None
    message: str = ""
    finished_at: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.category, self.onnx, self.vnnlib)

    @property
    def solved(self) -> bool:
        return self.result in ("sat", "unsat")

    @property
    def witness_valid(self) -> bool | None:
        """For ``sat``: whether the runner's witness check passed; ``None`` for other results."""
        return self.witness == "valid" if self.result == "sat" else None

    def to_row(self) -> dict[str, str]:
        """The CSV row: numbers with 6 significant digits, ``None`` as an empty field, stats as JSON."""
        row = {}
        for name in COLUMNS:
            value = getattr(self, name)
            if value is None:
                row[name] = ""
            elif name == "stats":
                row[name] = dumps(value, separators=(",", ":")) if value else ""   # strict: no NaN
            elif isinstance(value, float):
                row[name] = f"{value:.6g}" if math.isfinite(value) else ""
            else:
                row[name] = " ".join(str(value).split()) if name == "message" else str(value)
        return row

    @classmethod
    def from_row(cls, row: dict[str, str]) -> Outcome:
        """Read a CSV row back (the inverse of :meth:`to_row`); unknown columns are ignored."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            text = row.get(spec.name, "")
            if text is None:
                text = ""
            kind = spec.type if isinstance(spec.type, str) else str(spec.type)
            if spec.name == "stats":
                values[spec.name] = json.loads(text) if text else {}
            elif kind.startswith("float"):
                values[spec.name] = float(text) if text != "" else (None if "None" in kind else 0.0)
            elif kind.startswith("int"):
                values[spec.name] = int(text) if text != "" else None
            else:
                values[spec.name] = text
        return cls(**values)


#: results.csv columns in order: the VNN-COMP six first, then ours
COLUMNS = ("category", "onnx", "vnnlib", "prepare_s", "result", "runtime_s", "timeout_s", "verify_s",
           "startup_s", "witness", "method", "domains", "load_s", "attack_s", "search_s", "peak_rss_mb",
           "exit_code", "message", "finished_at", "stats")

assert set(COLUMNS) == {f.name for f in fields(Outcome)}, "COLUMNS must list every Outcome field"
