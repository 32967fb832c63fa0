"""A VNN-LIB 2.0 query as data: network declarations with typed tensor variables, and assertions.

The semantics implemented here (:func:`evaluate`) is the one a satisfying assignment is checked against:

* a variable of element type ``T`` holds values of ``T`` (``real``: any real number);
* a constant takes the type of the comparison it appears in (the type of its variables) and is rounded to
  the nearest value of that type (ties to even);
* ``+``, ``-`` and ``*`` are computed in that type, folded from the left (``(+ a b c)`` is ``(a + b) + c``),
  each step rounded to nearest for floating types, exactly for ``real`` and integer types;
* comparisons are exact on those values (``<`` is strict; ``!=`` is true for NaN; the others false).

The module imports only NumPy and the standard library.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

#: floating-point element types the query language names, as NumPy types (bfloat16 has none)
FLOAT_TYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
#: integer element types, as NumPy types
INTEGER_TYPES = {
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
}
REAL = "real"
COMPARISONS = ("<=", "<", ">=", ">", "==", "!=")


def is_float_type(element_type: str) -> bool:
    return element_type in FLOAT_TYPES


def is_exact_type(element_type: str) -> bool:
    """``real`` and the integer types: arithmetic on them is exact (integer overflow aside)."""
    return element_type == REAL or element_type in INTEGER_TYPES


@dataclass(frozen=True)
class Position:
    """1-based line and column in the query text."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass(eq=False)
class Variable:
    """A declared tensor: ``kind`` is ``input``, ``hidden`` or ``output``; ``onnx_name`` the ONNX tensor it is
    bound to (required for hidden variables); ``spelling`` the element type as written in the query."""

    name: str
    kind: str
    element_type: str
    shape: tuple[int, ...]
    network: str
    position: Position
    onnx_name: str | None = None
    spelling: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def flat_index(self, index: Sequence[int]) -> int:
        return int(np.ravel_multi_index(tuple(index), self.shape)) if self.shape else 0

    def element_name(self, flat: int) -> str:
        index = np.unravel_index(flat, self.shape) if self.shape else ()
        return f"{self.name}[{','.join(str(int(i)) for i in index)}]"


@dataclass(eq=False)
class NetworkDeclaration:
    """``(declare-network name ...)``: its variables in declaration order and its relation to another network."""

    name: str
    inputs: list[Variable]
    hidden: list[Variable]
    outputs: list[Variable]
    position: Position
    equal_to: str | None = None
    isomorphic_to: str | None = None

    @property
    def variables(self) -> list[Variable]:
        return [*self.inputs, *self.hidden, *self.outputs]


# -- arithmetic expressions ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Constant:
    """A numeric literal; ``value`` is its exact rational value."""

    text: str
    value: Fraction
    position: Position | None = None


@dataclass(eq=False)
class Element:
    """``X[i, j]``: one element of a variable (``flat`` its row-major position)."""

    variable: Variable
    flat: int
    position: Position | None = None


@dataclass(eq=False)
class Negate:
    arg: Expression


@dataclass(eq=False)
class Sum:
    args: tuple[Expression, ...]


@dataclass(eq=False)
class Difference:
    """``(- a b c)`` is ``(a - b) - c``."""

    args: tuple[Expression, ...]


@dataclass(eq=False)
class Product:
    args: tuple[Expression, ...]


Expression = Constant | Element | Negate | Sum | Difference | Product


# -- boolean expressions ------------------------------------------------------------------------------------
@dataclass(eq=False)
class Comparison:
    op: str
    left: Expression
    right: Expression
    position: Position | None = None

    @property
    def element_type(self) -> str:
        """The type the comparison is evaluated in: that of its variables (``real`` without any)."""
        for element in elements(self.left, self.right):
            return element.variable.element_type
        return REAL


@dataclass(eq=False)
class Conjunction:
    args: tuple[Formula, ...]


@dataclass(eq=False)
class Disjunction:
    args: tuple[Formula, ...]


Formula = Comparison | Conjunction | Disjunction


@dataclass(eq=False)
class Query:
    """A parsed, type-checked VNN-LIB 2.0 query: networks, and the assertions whose conjunction must hold."""

    version: str
    networks: list[NetworkDeclaration]
    assertions: list[Formula]
    source: str = "<text>"
    text: str = field(default="", repr=False)

    @property
    def variables(self) -> list[Variable]:
        """Every declared variable, in declaration order."""
        return [v for network in self.networks for v in network.variables]

    @property
    def inputs(self) -> list[Variable]:
        return [v for network in self.networks for v in network.inputs]

    @functools.cached_property
    def ordered_assertions(self) -> list[Formula]:
        """The assertions, those that read an output or hidden value first."""
        def inputs_only(formula: Formula) -> bool:
            return all(e.variable.kind == "input" for e in elements(formula))

        return sorted(self.assertions, key=inputs_only)

    def network(self, name: str) -> NetworkDeclaration:
        return next(n for n in self.networks if n.name == name)

    def where(self, position: Position | None) -> str:
        return f"{self.source}:{position}" if position is not None else self.source


def elements(*expressions: Expression | Formula) -> Iterator[Element]:
    """The variable elements an expression or formula refers to, left to right."""
    stack = list(reversed(expressions))
    while stack:
        node = stack.pop()
        if isinstance(node, Element):
            yield node
        elif isinstance(node, Negate):
            stack.append(node.arg)
        elif isinstance(node, (Sum, Difference, Product, Conjunction, Disjunction)):
            stack.extend(reversed(node.args))
        elif isinstance(node, Comparison):
            stack.extend((node.right, node.left))


def comparisons(formula: Formula) -> Iterator[Comparison]:
    """Every comparison of a formula, left to right."""
    stack = [formula]
    while stack:
        node = stack.pop()
        if isinstance(node, Comparison):
            yield node
        else:
            stack.extend(reversed(node.args))


# -- typed values -------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1 << 16)
def round_to_type(value: Fraction, element_type: str):
    """The exact rational ``value`` in ``element_type``: nearest (ties to even) for floating types, the
    value itself (a ``Fraction``) for ``real``, the integer for integer types (which must be integral)."""
    if element_type == REAL:
        return value
    if element_type in INTEGER_TYPES:
        if value.denominator != 1:
            raise ValueError(f"{value} is not an integer")
        return int(value)
    kind = FLOAT_TYPES[element_type]
    with np.errstate(over="ignore"):
        guess = kind(float(value))  # at most two roundings away from the nearest value; inf beyond the range
    if not np.isfinite(guess):
        return guess
    best = None
    for candidate in (np.nextafter(guess, kind(-np.inf)), guess, np.nextafter(guess, kind(np.inf))):
        if not np.isfinite(candidate):
            continue
        distance = abs(Fraction(float(candidate)) - value)
        even = int(np.frombuffer(np.asarray(candidate, dtype=kind).tobytes(), dtype=_uint_of(kind))[0]) % 2 == 0
        key = (distance, not even)
        if best is None or key < best[0]:
            best = (key, candidate)
    return best[1]


def _uint_of(kind) -> type:
    return {np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64}[kind]


def exact(value) -> Fraction:
    """A typed value (NumPy float or int, Python int, ``Fraction``) as an exact rational (NaN/inf rejected)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    return Fraction(float(value))


def evaluate_expression(expression: Expression, values: Mapping[str, np.ndarray], element_type: str):
    """The value of ``expression`` in ``element_type`` (see the module docstring) for the assignment ``values``
    (variable name -> flat array in the variable's type). ``real``: an exact ``Fraction``."""
    if isinstance(expression, Constant):
        return round_to_type(expression.value, element_type)
    if isinstance(expression, Element):
        value = values[expression.variable.name][expression.flat]
        if element_type == REAL:
            return float(value)   # exact; made a Fraction where arithmetic needs it
        if element_type in INTEGER_TYPES:
            return int(value)
        return FLOAT_TYPES[element_type](value)
    if isinstance(expression, Negate):
        return -evaluate_expression(expression.arg, values, element_type)
    args = [evaluate_expression(a, values, element_type) for a in expression.args]
    if element_type == REAL:
        args = [a if isinstance(a, Fraction) or not math.isfinite(a) else Fraction(a) for a in args]
    result = args[0]
    with np.errstate(over="ignore", invalid="ignore"):
        for value in args[1:]:
            if isinstance(expression, Sum):
                result = result + value
            elif isinstance(expression, Difference):
                result = result - value
            else:
                result = result * value
    return result


def compare(op: str, left, right) -> bool:
    """An exact comparison of two typed values (IEEE rules for NaN: only ``!=`` holds)."""
    a = float(left) if isinstance(left, np.floating) else left
    b = float(right) if isinstance(right, np.floating) else right
    # Python compares floats, ints and Fractions exactly (and NaN as IEEE does)
    return {"<=": a <= b, "<": a < b, ">=": a >= b, ">": a > b, "==": a == b, "!=": a != b}[op]


def evaluate(formula: Formula, values: Mapping[str, np.ndarray]) -> bool:
    """Whether the assignment ``values`` (variable name -> flat array in the declared type) satisfies ``formula``."""
    if isinstance(formula, Comparison):
        element_type = formula.element_type
        left = evaluate_expression(formula.left, values, element_type)
        right = evaluate_expression(formula.right, values, element_type)
        return compare(formula.op, left, right)
    if isinstance(formula, Conjunction):
        return all(evaluate(arg, values) for arg in formula.args)
    return any(evaluate(arg, values) for arg in formula.args)


def satisfies(query: Query, values: Mapping[str, np.ndarray]) -> bool:
    """Whether the assignment satisfies every assertion of ``query`` (those about outputs and hidden values
    first: they are the ones a candidate usually fails)."""
    return all(evaluate(assertion, values) for assertion in query.ordered_assertions)


def failing_assertion(query: Query, values: Mapping[str, np.ndarray]) -> int | None:
    """Index of the first assertion the assignment violates, ``None`` if it satisfies them all."""
    for i, assertion in enumerate(query.assertions):
        if not evaluate(assertion, values):
            return i
    return None
