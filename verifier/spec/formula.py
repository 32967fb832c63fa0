"""The parsed property as a formula over the inputs ``x`` and outputs ``y``, before normalisation.

Leaves are already classified: a :class:`Bound` on one input, a :class:`OutputConstraint` (a linear
inequality on the outputs) or a constant :class:`Truth`. Inner nodes are :class:`And` / :class:`Or`.
Each node keeps the index of the token it starts at, for error messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bound:
    """``x[index] <= value`` (``upper``) or ``x[index] >= value``."""

    index: int
    value: float
    upper: bool
    token: int


@dataclass(frozen=True, slots=True)
class OutputConstraint:
    """``sum(c * y[j] for j, c in coeffs) <= rhs``."""

    coeffs: tuple[tuple[int, float], ...]
    rhs: float
    token: int


@dataclass(frozen=True, slots=True)
class Truth:
    """A constant: ``true`` (the empty conjunction) or ``false`` (the empty disjunction)."""

    value: bool
    token: int


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Formula, ...]
    token: int


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Formula, ...]
    token: int


Leaf = Bound | OutputConstraint | Truth
Formula = Bound | OutputConstraint | Truth | And | Or


def evaluate(node: Formula, x: Sequence[float], y: Sequence[float]) -> bool:
    """Whether the point ``(x, y)`` satisfies the formula (direct evaluation, no normalisation)."""
    if isinstance(node, Bound):
        return x[node.index] <= node.value if node.upper else x[node.index] >= node.value
    if isinstance(node, OutputConstraint):
        return sum(c * y[j] for j, c in node.coeffs) <= node.rhs
    if isinstance(node, Truth):
        return node.value
    if isinstance(node, And):
        return all(evaluate(child, x, y) for child in node.children)
    return any(evaluate(child, x, y) for child in node.children)
