"""Disjunctive normal form of a parsed property, and its conversion to cases (input box, C, d).

The conjunction of all asserts is expanded into a disjunction of conjunctions; ``or`` distributes over
``and``. To keep this cheap on files with thousands of bounds, a conjunction is represented as a list of
*chunks* (tuples of leaves) shared between the disjuncts that contain them, and each chunk is compiled
to arrays once. The number of disjuncts is counted before anything is expanded, so a formula whose
normal form is too large fails fast with a clear error.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from verifier.errors import ResourceLimitError
from verifier.limits import format_bytes, resolve_limit
from verifier.spec.formula import And, Bound, Formula, Leaf, Or, OutputConstraint, Truth
from verifier.spec.parser import ParsedProperty
from verifier.spec.specification import Case, Specification

Chunk = tuple[Leaf, ...]
DEFAULT_MAX_CASES = 100_000


def count_cases(node: Formula) -> int:
    """Number of conjunctions in the disjunctive normal form of ``node`` (before dropping empty boxes)."""
    if isinstance(node, And):
        leaves = (Bound, OutputConstraint)
        return math.prod(count_cases(child) for child in node.children if not isinstance(child, leaves))
    if isinstance(node, Or):
        return sum(count_cases(child) for child in node.children)
    if isinstance(node, Truth):
        return int(node.value)
    return 1


def disjuncts(node: Formula) -> list[list[Chunk]]:
    """The disjunctive normal form of ``node``: a list of conjunctions, each a list of chunks of leaves."""
    if isinstance(node, Truth):
        return [[]] if node.value else []
    if isinstance(node, (Bound, OutputConstraint)):
        return [[(node,)]]
    if isinstance(node, Or):
        return [conjunction for child in node.children for conjunction in disjuncts(child)]
    leaves: list[Leaf] = []
    shared: list[Chunk] = []
    alternatives: list[list[list[Chunk]]] = []
    for child in node.children:
        if isinstance(child, (Bound, OutputConstraint)):
            leaves.append(child)
            continue
        expanded = disjuncts(child)
        if not expanded:
            return []
        if len(expanded) == 1:
            shared.extend(expanded[0])
        else:
            alternatives.append(expanded)
    if leaves:
        shared.insert(0, tuple(leaves))
    if not alternatives:
        return [shared]
    return [shared + [chunk for part in choice for chunk in part] for choice in itertools.product(*alternatives)]


class _CompiledChunk:
    """The leaves of one chunk as arrays: partial input bounds (``None`` if it bounds no input) and rows."""

    __slots__ = ("lower", "upper", "C", "d")

    def __init__(self, chunk: Chunk, n_inputs: int, n_outputs: int):
        bounds = [leaf for leaf in chunk if isinstance(leaf, Bound)]
        rows = [leaf for leaf in chunk if isinstance(leaf, OutputConstraint)]
        self.lower = self.upper = None
        if bounds:
            self.lower = np.full(n_inputs, -np.inf)
            self.upper = np.full(n_inputs, np.inf)
            for target, op, upper in ((self.lower, np.maximum, False), (self.upper, np.minimum, True)):
                index = np.fromiter((b.index for b in bounds if b.upper == upper), dtype=np.intp)
                value = np.fromiter((b.value for b in bounds if b.upper == upper), dtype=np.float64)
                op.at(target, index, value)
        self.C = np.zeros((len(rows), n_outputs))
        for r, row in enumerate(rows):
            for j, c in row.coeffs:
                self.C[r, j] += c
        self.d = np.fromiter((row.rhs for row in rows), dtype=np.float64, count=len(rows))


def to_specification(
    parsed: ParsedProperty, n_inputs: int, n_outputs: int, max_cases: int = DEFAULT_MAX_CASES,
    memory_limit: int | None = None,
) -> Specification:
    """Normalise ``parsed`` into a :class:`Specification` of cases.

    Every input must have a lower and an upper bound in every case; cases whose box is empty are dropped
    (and counted). Raises :class:`SpecError` when the normal form has more than ``max_cases`` cases, and
    :class:`ResourceLimitError` as soon as the arrays built (boxes, rows) would pass ``memory_limit`` bytes.
    """
    source = parsed.source
    total = count_cases(parsed.formula)
    if total > max_cases:
        ors = _disjunctions(parsed.formula)
        lines = sorted({source.line_col(node.token)[0] for node in ors})
        shown = ", ".join(map(str, lines[:8])) + (", ..." if len(lines) > 8 else "")
        raise source.error(
            ors[0].token if ors else 0,
            f"the property expands to {total} cases in disjunctive normal form, more than the limit of "
            f"{max_cases} (raise max_cases to allow it); the disjunctions multiplied together are at lines {shown}",
        )
    budget = _Budget(source.name, memory_limit)
    compiled: dict[int, _CompiledChunk] = {}
    boxes: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray]] = {}
    cases: list[Case] = []
    infeasible = 0
    no_rows = (np.zeros((0, n_outputs)), np.zeros(0))
    for conjunction in disjuncts(parsed.formula):
        parts = []
        for chunk in conjunction:
            part = compiled.get(id(chunk))
            if part is None:
                budget.spend(8 * (n_inputs * 2 * any(isinstance(leaf, Bound) for leaf in chunk)
                                  + len(chunk) * (n_outputs + 1)))
                part = compiled[id(chunk)] = _CompiledChunk(chunk, n_inputs, n_outputs)
            parts.append(part)
        lower = _combine([p.lower for p in parts if p.lower is not None], np.maximum, -np.inf, n_inputs)
        upper = _combine([p.upper for p in parts if p.upper is not None], np.minimum, np.inf, n_inputs)
        _check_bounded(parsed, conjunction, lower, upper, total > 1)
        if (lower > upper).any():
            infeasible += 1
            continue
        key = (lower.tobytes(), upper.tobytes())
        if key not in boxes:
            budget.spend(2 * lower.nbytes + len(key[0]) + len(key[1]))
        lower, upper = boxes.setdefault(key, (lower, upper))
        with_rows = [p for p in parts if len(p.d)]
        if not with_rows:
            C, d = no_rows
        elif len(with_rows) == 1:
            C, d = with_rows[0].C, with_rows[0].d
        else:
            budget.spend(8 * sum(p.C.size + p.d.size for p in with_rows))
            C, d = np.concatenate([p.C for p in with_rows]), np.concatenate([p.d for p in with_rows])
        budget.spend(64)
        cases.append(Case(lower, upper, C, d))
    return Specification(n_inputs, n_outputs, tuple(cases), source.name, infeasible)


class _Budget:
    """Bytes the arrays of a specification may take; spending past the limit raises at once."""

    def __init__(self, name: str, limit: int | None):
        self.name = name
        self.limit = resolve_limit(limit)
        self.spent = 0

    def spend(self, nbytes: int) -> None:
        self.spent += nbytes
        if self.spent > self.limit:
            raise ResourceLimitError(f"{self.name}: the property's cases need more than the limit of "
                                     f"{format_bytes(self.limit)} (--load-limit-gib / memory_limit= raises it)")


def _combine(arrays: list[np.ndarray], op, fill: float, size: int) -> np.ndarray:
    if not arrays:
        return np.full(size, fill)
    if len(arrays) == 1:
        return arrays[0]
    return op.reduce(np.stack(arrays), axis=0)


def _check_bounded(parsed: ParsedProperty, conjunction: list[Chunk], lower: np.ndarray, upper: np.ndarray,
                   several_cases: bool) -> None:
    """Raise a :class:`SpecError` naming the first input without a lower or upper bound in this conjunction.

    The error points at the input's other bound when it has one, else at its declaration; with several
    cases it also names a constraint that singles out the case (the first leaf of its last chunk).
    """
    for array, side in ((lower, "lower"), (upper, "upper")):
        missing = np.flatnonzero(np.isinf(array))
        if not len(missing):
            continue
        index = int(missing[0])
        source = parsed.source
        others = [leaf for chunk in conjunction for leaf in chunk if isinstance(leaf, Bound) and leaf.index == index]
        where = others[-1].token if others else parsed.input_declarations[index]
        context = ""
        if several_cases and conjunction and conjunction[-1]:
            line = source.line_col(conjunction[-1][0].token)[0]
            context = f" in the case that includes the constraint at line {line}"
        raise source.error(where, f"input X_{index} has no {side} bound{context}; every input needs a finite "
                                  "lower and upper bound in each case")


def _disjunctions(node: Formula) -> list[Or]:
    """The ``or`` nodes with at least two alternatives, in file order."""
    found = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (And, Or)):
            if isinstance(current, Or) and len(current.children) > 1:
                found.append(current)
            stack.extend(reversed(current.children))
    return sorted(found, key=lambda n: n.token)
