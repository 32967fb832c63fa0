"""A normalised property: a disjunction of cases, each an input box and a conjunction of output rows.

The property file describes the *unsafe* set. A :class:`Case` ``(lower, upper, C, d)`` is violated by an
input ``x`` with ``lower <= x <= upper`` and ``C @ f(x) <= d`` (every row at once). The property is
``sat`` (a counterexample exists) iff some case is violated by some ``x``; it is ``unsat`` iff, for every
case, some row ``i`` has ``(C @ f(x))_i > d_i`` for all ``x`` in the box, i.e. a positive lower bound on
``C @ f(x) - d`` in that row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Case:
    """One conjunction of the normalised property (all arrays float64).

    ``lower``, ``upper``: the input box, ``[n_inputs]`` (flattened in C order, as ``X_i`` index them).
    ``C``: ``[k, n_outputs]`` and ``d``: ``[k]``, the output rows; ``k == 0`` means every ``x`` in the box
    is a counterexample. Cases with the same box share the same ``lower``/``upper`` array objects (and
    cases may share ``C``/``d``): treat them as read-only. (They are not flagged read-only because
    ``torch.as_tensor`` warns on such arrays.)
    """

    lower: np.ndarray
    upper: np.ndarray
    C: np.ndarray
    d: np.ndarray
    #: ``[k]`` bool or ``None`` (all non-strict): a strict row is ``C_r . f(x) < d_r`` and is refuted already by
    #: ``C_r . f(x) >= d_r`` (VNN-LIB 2.0 ``<``, ``>``, ``!=``)
    strict: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class BoxGroup:
    """The cases that share one input box, with their rows stacked so they can be bounded in one pass.

    ``case_indices``: positions in :attr:`Specification.cases`. ``C``: ``[R, n_outputs]``, ``d``: ``[R]``,
    the rows of those cases in order; ``row_case[r]`` is the position (in ``case_indices``) of the case
    row ``r`` belongs to. The group is safe iff every one of its cases has a row that is provably
    positive (``C @ f(x) - d > 0`` on the whole box).
    """

    lower: np.ndarray
    upper: np.ndarray
    case_indices: tuple[int, ...]
    C: np.ndarray
    d: np.ndarray
    row_case: np.ndarray
    strict: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Specification:
    """A parsed VNN-LIB property: ``sat`` iff some case in :attr:`cases` has a counterexample.

    ``infeasible_cases`` counts the conjunctions dropped because their input box was empty (a lower
    bound above an upper bound); they can hold no counterexample. ``source`` names the file.
    """

    n_inputs: int
    n_outputs: int
    cases: tuple[Case, ...]
    source: str = "<text>"
    infeasible_cases: int = 0
    _groups: list[BoxGroup] = field(default_factory=list, init=False, repr=False, compare=False)

    def box_groups(self) -> list[BoxGroup]:
        """The cases grouped by identical input box, in order of first appearance."""
        if not self._groups and self.cases:
            self._groups.extend(group_by_box(self.cases, self.n_outputs))
        return list(self._groups)


def group_by_box(cases: tuple[Case, ...] | list[Case], n_outputs: int) -> list[BoxGroup]:
    """Group ``cases`` by identical input box (same values), stacking each group's rows."""
    members: dict[tuple[bytes, bytes], list[int]] = {}
    for index, case in enumerate(cases):
        members.setdefault((case.lower.tobytes(), case.upper.tobytes()), []).append(index)
    groups = []
    for indices in members.values():
        first = cases[indices[0]]
        Cs = [cases[i].C for i in indices]
        groups.append(BoxGroup(
            lower=first.lower,
            upper=first.upper,
            case_indices=tuple(indices),
            C=np.concatenate(Cs) if Cs else np.zeros((0, n_outputs)),
            d=np.concatenate([cases[i].d for i in indices]),
            row_case=np.repeat(np.arange(len(indices)), [len(C) for C in Cs]),
            strict=_stacked_strict([cases[i] for i in indices]),
        ))
    return groups


def _stacked_strict(cases: list[Case]) -> np.ndarray | None:
    """The strictness of the stacked rows of ``cases`` (``None`` when no row is strict)."""
    if all(case.strict is None or not case.strict.any() for case in cases):
        return None
    return np.concatenate([np.zeros(len(c.d), dtype=bool) if c.strict is None else np.asarray(c.strict, dtype=bool)
                           for c in cases])
