"""Counterexamples in the VNN-COMP result format, and their check against a specification.

The result file has the verdict on its first line; after ``sat`` comes the witness::

    sat
    ((X_0 0.5)
     (X_1 -0.25)
     (Y_0 3.0))

with every input ``X_i`` (the input tensor flattened in C order) and then every output ``Y_j``, in
index order. The VNN-COMP scoring script (``counterexamples.py`` in the VNN-COMP results repositories)
accepts a witness when the listed ``Y`` matches onnxruntime's output up to a relative L-inf error of
1e-3, ``x`` lies in an input box up to an absolute 1e-4, and the listed ``Y`` satisfies every row of one
of that box's conjunctions up to an absolute 1e-4 (``C @ y <= d + 1e-4``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verifier.errors import SpecError
from verifier.spec.specification import Specification

VNNCOMP_TOLERANCE = 1e-4
"""Absolute tolerance of the VNN-COMP witness check (input box and output constraints)."""

VNNCOMP_OUTPUT_RTOL = 1e-3
"""Relative L-inf tolerance VNN-COMP allows between the witness's ``Y`` and onnxruntime's output."""

VERDICTS = ("sat", "unsat", "unknown", "timeout")


def format_counterexample(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> str:
    """The witness block ``((X_0 v)\\n (X_1 v)\\n ... (Y_0 v) ...)`` for inputs ``x`` and outputs ``y``.

    Arrays of any shape are flattened in C order. Values are written with ``repr`` of the float64 value,
    which round-trips exactly (also for float32 inputs). No trailing newline.
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ValueError("a counterexample must be finite")
    entries = [f"(X_{i} {float(v)!r})" for i, v in enumerate(xs)]
    entries += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(ys)]
    return "(" + "\n ".join(entries) + ")"


def format_result(verdict: str, x: Sequence[float] | np.ndarray | None = None,
                  y: Sequence[float] | np.ndarray | None = None) -> str:
    """The whole VNN-COMP result file: the verdict line, then the witness after ``sat``; ends with a newline."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if verdict != "sat":
        return verdict + "\n"
    if x is None or y is None:
        raise ValueError("a 'sat' result needs the counterexample x and y")
    return f"sat\n{format_counterexample(x, y)}\n"


def parse_counterexample(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a witness block (or a whole result file starting with ``sat``) back into ``(x, y)`` float64 arrays."""
    body = text.strip()
    if body.startswith("sat"):
        body = body[3:].strip()
    if not (body.startswith("(") and body.endswith(")")):
        raise SpecError("counterexample must be enclosed in parentheses: ((X_0 v) ... (Y_0 v))")
    values: dict[str, list[float]] = {"X": [], "Y": []}
    for entry in body[1:-1].split(")"):
        entry = entry.strip()
        if not entry:
            continue
        fields = entry.lstrip("(").split()
        if not entry.startswith("(") or len(fields) != 2 or fields[0][:2] not in ("X_", "Y_"):
            raise SpecError(f"malformed counterexample entry {entry + ')'!r}; expected (X_i value) or (Y_j value)")
        kind, index = fields[0][0], fields[0][2:]
        if index != str(len(values[kind])):
            raise SpecError(f"counterexample entry {fields[0]} out of order; expected {kind}_{len(values[kind])}")
        values[kind].append(float(fields[1]))
    return np.array(values["X"]), np.array(values["Y"])


@dataclass(frozen=True)
class WitnessCheck:
    """The outcome of :func:`check_counterexample`; true iff the witness is valid.

    ``case``: index in :attr:`Specification.cases` of the first case the witness violates (``None`` if
    invalid). ``reason``: one line saying why it is valid or not.
    """

    valid: bool
    case: int | None
    reason: str

    def __bool__(self) -> bool:
        return self.valid


def check_counterexample(spec: Specification, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                         tolerance: float = VNNCOMP_TOLERANCE) -> WitnessCheck:
    """Whether ``(x, y)`` violates the property: ``x`` in some case's box and ``C @ y <= d`` for all its rows,
    both up to the absolute ``tolerance`` (1e-4 as in VNN-COMP; pass 0 for an exact check).

    ``y`` should be the network's output on ``x`` computed independently (onnxruntime on the original file).
    """
    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    if xs.size != spec.n_inputs or ys.size != spec.n_outputs:
        return WitnessCheck(False, None, f"witness has {xs.size} inputs and {ys.size} outputs; the property has "
                                         f"{spec.n_inputs} and {spec.n_outputs}")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return WitnessCheck(False, None, "witness contains NaN or infinite values")
    in_box_cases = []
    nearest_box = np.inf
    smallest_violation = np.inf
    for group in spec.box_groups():
        outside = max(float(np.max(group.lower - xs, initial=0.0)), float(np.max(xs - group.upper, initial=0.0)))
        nearest_box = min(nearest_box, outside)
        if outside > tolerance:
            continue
        worst = np.full(len(group.case_indices), -np.inf)  # largest C@y - d per case; -inf for a case without rows
        np.maximum.at(worst, group.row_case, group.C @ ys - group.d)
        holds = np.flatnonzero(worst <= tolerance)
        if len(holds):
            case = group.case_indices[holds[0]]
            return WitnessCheck(True, case, f"x is in the box of case {case} and its {len(spec.cases[case].d)} "
                                            f"output rows hold (largest C@y - d = {worst[holds[0]]:.3g})")
        in_box_cases.extend(group.case_indices)
        smallest_violation = min(smallest_violation, float(worst.min()))
    if not in_box_cases:
        return WitnessCheck(False, None, f"x lies outside every input box (by at least {nearest_box:.3g})")
    return WitnessCheck(False, None, f"x is in the box of {len(in_box_cases)} case(s) but no case's output rows "
                                     f"all hold (smallest largest C@y - d = {smallest_violation:.3g})")
