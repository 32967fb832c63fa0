"""Lower a VNN-LIB 2.0 :class:`~verifier.spec.query.Query` to the engine's :class:`Specification`.

The engine decides "is there an ``x`` in a box with ``C g(x) <= d`` (every row of some case)?" for one
function ``g`` with one flat input. The lowering fixes what ``x`` and ``g`` are:

* ``x`` is the concatenation of every declared input of every network, each flattened in row-major order,
  in declaration order (:attr:`Lowered.inputs` gives each variable's offset);
* ``g(x)`` is a vector of **features** the composed network computes (:mod:`verifier.frontend.compose`): the
  elements of inputs, hidden tensors and outputs that rows refer to, the values of floating-point
  expressions of the assertions (computed in their element type, so their rounding is part of ``g``), and
  products of variables (polynomial assertions over ``real`` or integer values).

Each comparison becomes, by its element type:

* ``real`` and integers (exact arithmetic): both sides are expanded into one polynomial ``p`` with rational
  coefficients; ``p <= 0`` / ``p < 0`` is a row over the monomials (degree >= 2 monomials are features);
* floating types: each side is one feature (or a constant rounded to the type), so ``L op R`` is the row
  ``L - R op 0``, which compares the two typed values exactly.

``>=``/``>`` are negated into ``<=``/``<``, ``==`` is two non-strict rows, ``!=`` a disjunction of two strict
rows. A strict row on one typed value and a constant becomes non-strict exactly (``y < c`` is
``y <= pred(c)`` in the type; for integers ``<= c - 1``); other strict rows stay strict (the engine refutes
them by a margin ``>= 0``). A non-strict row on one input element and a constant becomes a bound of the box
(rounded inward to the input's type, outward for ``real``); a strict ``real`` one gives its closure as the
bound and stays a row. Linear constraints among inputs (a polytope) stay rows over input features; the box is
their bounding box where the single-variable bounds leave an input unbounded (by linear programming).

Input elements declared equal at the top level of the assertions (``(== U[0,1] X[0,1])``, both inputs of one
type: a relation between the inputs of two networks, typically) are read from one position of ``x``, with the
intersection of their bounds: the search then never has to hit an equality by chance. (For floating types this
identifies ``+0`` and ``-0``, which compare equal; the engine's real-valued boxes do not tell them apart anyway.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from verifier.errors import SpecError
from verifier.spec.formula import And, Bound, Or, OutputConstraint, Truth
from verifier.spec.normalize import DEFAULT_MAX_CASES, count_cases, disjuncts
from verifier.spec.query import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    Comparison,
    Conjunction,
    Constant,
    Difference,
    Element,
    Expression,
    Formula,
    Negate,
    Position,
    Product,
    Query,
    Sum,
    Variable,
    is_float_type,
    round_to_type,
)
from verifier.spec.specification import Case, Specification


@dataclass(frozen=True, slots=True)
class Row(OutputConstraint):
    """``sum(c * g[j]) <= rhs`` over the features ``g`` (``< rhs`` when ``strict``)."""

    strict: bool = False


@dataclass(frozen=True)
class ElementFeature:
    """One element of a declared variable."""

    variable: Variable
    flat: int

    @property
    def label(self) -> str:
        return self.variable.element_name(self.flat)


@dataclass(frozen=True, eq=False)
class ExpressionFeature:
    """A floating-point expression of an assertion, computed in ``element_type``."""

    expression: Expression
    element_type: str
    label: str = "expression"


@dataclass(frozen=True)
class MonomialFeature:
    """A product of declared elements (exact arithmetic), e.g. ``X[0] * X[1]``."""

    factors: tuple[ElementFeature, ...]

    @property
    def label(self) -> str:
        return "*".join(f.label for f in self.factors)


Feature = ElementFeature | ExpressionFeature | MonomialFeature


@dataclass
class Lowered:
    """A query lowered to a specification over the composed input ``x`` and the features ``g(x)``."""

    query: Query
    specification: Specification
    features: list[Feature]
    inputs: list[tuple[Variable, int]]       # each declared input and its offset in x
    n_inputs: int
    #: the element type each feature takes values in (``real`` for monomials of real variables)
    feature_types: list[str] = field(default_factory=list)
    #: inputs without a finite bound in some case: the box gives them the finite range of their type, which
    #: leaves out +-inf (and, for ``real``, the reals beyond float64), so an ``unsat`` is not claimed
    unbounded_inputs: list[str] = field(default_factory=list)

    #: ``[n_inputs]``: the position of x holding each input element (its own, or that of an element the
    #: assertions declare equal to it everywhere, see :func:`lower_query`)
    aliases: np.ndarray | None = None

    def input_offset(self, variable: Variable) -> int:
        return next(offset for v, offset in self.inputs if v is variable)

    def input_indices(self, variable: Variable) -> np.ndarray:
        """The positions of x holding the elements of the input ``variable`` (row-major)."""
        offset = self.input_offset(variable)
        indices = np.arange(offset, offset + variable.size)
        return indices if self.aliases is None else self.aliases[indices]


_Key = tuple  # ("e", Variable, flat) | ("x", ExpressionFeature) | ("m", tuple of ("e", ...) keys)


class _Lowering:
    def __init__(self, query: Query, max_cases: int):
        self.query = query
        self.max_cases = max_cases
        self.inputs: list[tuple[Variable, int]] = []
        offset = 0
        for variable in query.inputs:
            self.inputs.append((variable, offset))
            offset += variable.size
        self.n_inputs = offset
        self.offsets = {id(v): o for v, o in self.inputs}
        self.aliases, self.alias_comparisons = self.equal_inputs()
        self.features: dict[_Key, int] = {}
        self.feature_list: list[Feature] = []
        self.positions: list[Position | None] = []
        self.unbounded: set[str] = set()

    def equal_inputs(self) -> tuple[np.ndarray, set[int]]:
        """Input elements the assertions declare equal in every case (``(== A[i] B[j])`` at the top level, both
        inputs of one type): each is read from one position of x, the first of its class. Returns that map and
        the ids of the comparisons it makes redundant."""
        parent = np.arange(self.n_inputs)

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return int(i)

        used = set()
        stack = list(self.query.assertions)
        while stack:
            node = stack.pop()
            if isinstance(node, Conjunction):
                stack.extend(node.args)
                continue
            if not (isinstance(node, Comparison) and node.op == "==" and isinstance(node.left, Element)
                    and isinstance(node.right, Element)):
                continue
            a, b = node.left, node.right
            if a.variable.kind != "input" or b.variable.kind != "input":
                continue
            i = find(self.offsets[id(a.variable)] + a.flat)
            j = find(self.offsets[id(b.variable)] + b.flat)
            parent[max(i, j)] = min(i, j)
            used.add(id(node))
        return np.array([find(i) for i in range(self.n_inputs)], dtype=np.int64), used

    # -- features ------------------------------------------------------------------------------------------
    def feature(self, key: _Key) -> int:
        if key not in self.features:
            self.features[key] = len(self.feature_list)
            if key[0] == "e":
                self.feature_list.append(ElementFeature(key[1], key[2]))
            elif key[0] == "x":
                self.feature_list.append(key[1])
            else:
                self.feature_list.append(MonomialFeature(tuple(ElementFeature(k[1], k[2]) for k in key[1])))
        return self.features[key]

    def token(self, position: Position | None) -> int:
        self.positions.append(position)
        return len(self.positions) - 1

    # -- formulas ------------------------------------------------------------------------------------------
    def formula(self, node: Formula):
        if isinstance(node, Conjunction):
            return And(tuple(self.formula(a) for a in node.args), self.token(None))
        if not isinstance(node, Comparison):
            return Or(tuple(self.formula(a) for a in node.args), self.token(None))
        return self.comparison(node)

    def comparison(self, node: Comparison):
        if id(node) in self.alias_comparisons:  # the two inputs are one position of x: always equal
            return Truth(True, self.token(node.position))
        element_type = node.element_type
        if is_float_type(element_type):
            difference = self.typed_side(node.left, element_type)
            for key, c in self.typed_side(node.right, element_type).items():
                difference[key] = difference.get(key, Fraction(0)) - c
        else:
            difference = _polynomial(node.left)
            for key, c in _polynomial(node.right).items():
                difference[key] = difference.get(key, Fraction(0)) - c
        difference = {k: c for k, c in difference.items() if c != 0}
        token = self.token(node.position)
        negated = {k: -c for k, c in difference.items()}
        if node.op == "<=":
            return self.leaf(difference, False, element_type, token)
        if node.op == "<":
            return self.leaf(difference, True, element_type, token)
        if node.op == ">=":
            return self.leaf(negated, False, element_type, token)
        if node.op == ">":
            return self.leaf(negated, True, element_type, token)
        if node.op == "==":
            return And((self.leaf(difference, False, element_type, token),
                        self.leaf(negated, False, element_type, token)), token)
        return Or((self.leaf(difference, True, element_type, token),
                   self.leaf(negated, True, element_type, token)), token)

    def typed_side(self, expression: Expression, element_type: str) -> dict[_Key, Fraction]:
        """One side of a floating-point comparison as ``{feature: coefficient, (): constant}``."""
        sign = Fraction(1)
        while isinstance(expression, Negate) or isinstance(expression, (Sum, Difference, Product)) \
                and len(expression.args) == 1:
            if isinstance(expression, Negate):
                sign, expression = -sign, expression.arg
            else:
                expression = expression.args[0]
        if isinstance(expression, Constant):
            return {(): sign * Fraction(float(round_to_type(expression.value, element_type)))}
        if isinstance(expression, Element):
            return {("e", expression.variable, expression.flat): sign}
        return {("x", ExpressionFeature(expression, element_type, _describe(expression))): sign}

    def leaf(self, poly: dict[_Key, Fraction], strict: bool, element_type: str, token: int):
        """``poly (< or <=) 0`` as a box bound or a row."""
        constant = poly.pop((), Fraction(0))
        if not poly:  # a comparison of constants
            holds = constant < 0 if strict else constant <= 0
            return Truth(holds, token)
        poly = {_normal_key(key): c for key, c in poly.items()}
        integral = element_type in INTEGER_TYPES and all(c.denominator == 1 for c in poly.values()) \
            and constant.denominator == 1
        if strict and integral:  # sum < -k over integers: sum <= -k - 1
            constant, strict = constant + 1, False
        if len(poly) == 1:
            (key, c), = poly.items()
            value = -constant / c    # c * v + constant (<|<=) 0  <=>  v (<|<=) value if c > 0, else (>|>=)
            upper = c > 0
            if strict and key[0] in ("e", "x") and is_float_type(element_type):  # y < c in T: y <= pred(c)
                value, strict = _step(value, element_type, down=upper), False
            if key[0] == "e" and key[1].kind == "input" and not strict:
                return self.bound(key[1], key[2], value, upper, token)
            if key[0] == "e" and key[1].kind == "input":  # a strict real bound: its closure, and the row
                return And((self.bound(key[1], key[2], value, upper, token),
                            self.row({key: c}, constant, True, token)), token)
        return self.row(poly, constant, strict, token)

    def bound(self, variable: Variable, flat: int, value: Fraction, upper: bool, token: int) -> Bound:
        element_type = variable.element_type
        if element_type in INTEGER_TYPES:
            number = math.floor(value) if upper else math.ceil(value)
        elif is_float_type(element_type):
            number = float(_inward(value, element_type, upper))
        else:  # real: outward in float64, so the box contains every real point
            number = _outward(value, upper)
        return Bound(int(self.aliases[self.offsets[id(variable)] + flat]), float(number), upper, token)

    def row(self, poly: dict[_Key, Fraction], constant: Fraction, strict: bool, token: int) -> Row:
        coeffs = tuple((self.feature(key), float(c)) for key, c in poly.items())
        return Row(coeffs, _outward(-constant, True), token, strict)

    # -- cases -------------------------------------------------------------------------------------------
    def lower(self) -> Lowered:
        formula = And(tuple(self.formula(a) for a in self.query.assertions), self.token(None))
        total = count_cases(formula)
        if total > self.max_cases:
            raise SpecError(f"{self.query.source}: the query expands to {total} cases in disjunctive normal form, "
                            f"more than the limit of {self.max_cases}")
        n_features = max(1, len(self.feature_list))
        cases, infeasible = [], 0
        for conjunction in disjuncts(formula):
            leaves = [leaf for chunk in conjunction for leaf in chunk]
            lower = np.full(self.n_inputs, -np.inf)
            upper = np.full(self.n_inputs, np.inf)
            rows = []
            for leaf in leaves:
                if isinstance(leaf, Bound):
                    if leaf.upper:
                        upper[leaf.index] = min(upper[leaf.index], leaf.value)
                    else:
                        lower[leaf.index] = max(lower[leaf.index], leaf.value)
                else:
                    rows.append(leaf)
            C = np.zeros((len(rows), n_features))
            for r, row in enumerate(rows):
                for j, c in row.coeffs:
                    C[r, j] += c
            d = np.array([row.rhs for row in rows], dtype=np.float64)
            strict = np.array([row.strict for row in rows], dtype=bool)
            dead = self.aliases != np.arange(self.n_inputs)   # positions of x nothing reads
            lower[dead], upper[dead] = 0.0, 0.0
            if (lower > upper).any():
                infeasible += 1
                continue
            lower, upper = self.bounded(lower, upper, C, d, leaves)
            if lower is None:
                infeasible += 1
                continue
            cases.append(Case(lower, upper, C, d, strict if strict.any() else None))
        spec = Specification(self.n_inputs, n_features, tuple(cases), self.query.source, infeasible)
        return Lowered(self.query, spec, list(self.feature_list), self.inputs, self.n_inputs,
                       [_feature_type(f) for f in self.feature_list], sorted(self.unbounded), self.aliases)

    def bounded(self, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray, leaves) -> tuple:
        """The box, with inputs the bounds leave unbounded bounded by the linear rows over inputs (linear
        programming); ``(None, None)`` if those rows have no solution in the box. An input that stays unbounded
        gets the largest finite range of its type (``real``: float64's) and is recorded in ``self.unbounded``."""
        missing = ~(np.isfinite(lower) & np.isfinite(upper))
        if not missing.any():
            return lower, upper
        input_columns = [j for j, f in enumerate(self.feature_list)
                         if isinstance(f, ElementFeature) and f.variable.kind == "input"]
        only_inputs = [r for r in range(len(d)) if not np.delete(C[r], input_columns).any()] if len(d) else []
        if only_inputs:
            from scipy.optimize import linprog

            A = np.zeros((len(only_inputs), self.n_inputs))
            for j in input_columns:
                feature = self.feature_list[j]
                A[:, self.aliases[self.offsets[id(feature.variable)] + feature.flat]] += C[only_inputs, j]
            b = d[only_inputs]
            box = [(None if not np.isfinite(lo) else lo, None if not np.isfinite(hi) else hi)
                   for lo, hi in zip(lower, upper)]
            for i in np.flatnonzero(missing):
                for sign, side in ((1.0, lower), (-1.0, upper)):
                    if np.isfinite(side[i]):
                        continue
                    objective = np.zeros(self.n_inputs)
                    objective[i] = sign
                    result = linprog(objective, A_ub=A, b_ub=b, bounds=box, method="highs")
                    if result.status == 2:
                        return None, None
                    if result.status == 0:
                        value = float(result.fun) * sign
                        slack = 1e-9 * (1 + abs(value))  # the LP's tolerance, outward
                        side[i] = value - slack if sign > 0 else value + slack
        for side, sign in ((lower, -1.0), (upper, 1.0)):
            for i in np.flatnonzero(~np.isfinite(side)):
                variable = next(v for v, o in reversed(self.inputs) if o <= i)
                side[i] = sign * _largest(variable.element_type)
                self.unbounded.add(variable.name)
        return lower, upper


def lower_query(query: Query, max_cases: int = DEFAULT_MAX_CASES) -> Lowered:
    """Lower ``query`` to a :class:`Lowered` specification (see the module docstring). Raises :class:`SpecError`
    naming the input and its declaration when some input has no finite bound in some case."""
    return _Lowering(query, max_cases).lower()


# -- helpers -----------------------------------------------------------------------------------------------
def _polynomial(expression: Expression) -> dict[_Key, Fraction]:
    """``expression`` as ``{monomial: coefficient}`` with exact arithmetic (the constant under ``()``)."""
    if isinstance(expression, Constant):
        return {(): expression.value}
    if isinstance(expression, Element):
        return {(("e", expression.variable, expression.flat),): Fraction(1)}
    if isinstance(expression, Negate):
        return {k: -c for k, c in _polynomial(expression.arg).items()}
    parts = [_polynomial(a) for a in expression.args]
    result = parts[0]
    for part in parts[1:]:
        if isinstance(expression, Product):
            product: dict = {}
            for k1, c1 in result.items():
                for k2, c2 in part.items():
                    key = tuple(sorted(k1 + k2, key=_order))
                    product[key] = product.get(key, Fraction(0)) + c1 * c2
            result = product
        else:
            sign = 1 if isinstance(expression, Sum) else -1
            result = dict(result)
            for k, c in part.items():
                result[k] = result.get(k, Fraction(0)) + sign * c
    return result


def _order(key) -> tuple:
    return (key[1].name, key[2])


def _normal_key(key: _Key) -> _Key:
    """A polynomial monomial (a tuple of element keys) as a feature key; typed keys are already features."""
    if key and key[0] in ("e", "x"):
        return key
    if len(key) == 1:
        return key[0]
    return ("m", key)


def _feature_type(feature: Feature) -> str:
    if isinstance(feature, ElementFeature):
        return feature.variable.element_type
    if isinstance(feature, ExpressionFeature):
        return feature.element_type
    return "real"


def _largest(element_type: str) -> float:
    """The largest finite value of an element type (``real``: float64's)."""
    if element_type in INTEGER_TYPES:
        return float(np.iinfo(INTEGER_TYPES[element_type]).max)
    return float(np.finfo(FLOAT_TYPES.get(element_type, np.float64)).max)


def _step(value: Fraction, element_type: str, down: bool) -> Fraction:
    """The largest value of the type below ``value`` (``down``) or the smallest above it."""
    kind = FLOAT_TYPES[element_type]
    nearest = round_to_type(value, element_type)
    target = kind(-np.inf) if down else kind(np.inf)
    while (Fraction(float(nearest)) >= value) if down else (Fraction(float(nearest)) <= value):
        nearest = np.nextafter(nearest, target)
    return Fraction(float(nearest))


def _inward(value: Fraction, element_type: str, upper: bool):
    """The largest value of the type ``<= value`` (``upper``) or the smallest ``>= value``."""
    nearest = round_to_type(value, element_type)
    if Fraction(float(nearest)) == value or not np.isfinite(nearest):
        return nearest
    return _step(value, element_type, down=upper)


def _outward(value: Fraction, up: bool) -> float:
    """``value`` rounded to float64 away from the inside: up for an upper bound, down for a lower one."""
    number = float(value)
    if up and Fraction(number) < value:
        number = float(np.nextafter(number, np.inf))
    if not up and Fraction(number) > value:
        number = float(np.nextafter(number, -np.inf))
    return number


def _describe(expression: Expression) -> str:
    if isinstance(expression, Constant):
        return expression.text
    if isinstance(expression, Element):
        return expression.variable.element_name(expression.flat)
    if isinstance(expression, Negate):
        return f"(- {_describe(expression.arg)})"
    symbol = {Sum: "+", Difference: "-", Product: "*"}[type(expression)]
    return f"({symbol} {' '.join(_describe(a) for a in expression.args)})"
