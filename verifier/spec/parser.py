"""Recursive-descent parser from VNN-LIB 1.0 tokens to a :mod:`~verifier.spec.formula` formula.

Accepted commands: ``(declare-const X_i Real)``, ``(declare-const Y_j Real)``, ``(assert F)``; the
SMT-LIB bookkeeping commands ``set-logic``, ``set-info``, ``set-option``, ``check-sat``, ``get-model``,
``get-value`` and ``exit`` are skipped.

Formulas ``F``: ``(and F ...)``, ``(or F ...)`` nested to any depth, ``true``, ``false``, and comparisons
``(<= t t ...)``, ``(>= ...)``, ``(< ...)``, ``(> ...)``, ``(= ...)`` (chained as in SMT-LIB:
``(<= a b c)`` is ``a <= b and b <= c``). Strict comparisons are read as non-strict: the closure of the
unsafe set is checked, which is sound for ``unsat`` and is what VNN-COMP does.

Terms ``t`` are linear: a number (``3``, ``-0.5``, ``1.5e-3``), a declared variable, ``(+ t ...)``,
``(- t)``, ``(- t t ...)``, ``(* t ...)`` with at most one non-constant factor, ``(/ t c ...)`` with
non-zero constant divisors.

Each comparison must involve only inputs or only outputs: an input comparison must bound one variable
(``(<= X_0 0.5)``, ``(>= (* 2 X_1) 1)``); an output comparison may be any linear inequality.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from verifier.errors import SpecError, quote, shorten
from verifier.spec.formula import And, Bound, Formula, Leaf, Or, OutputConstraint, Truth
from verifier.spec.reader import Source

_VARIABLE = re.compile(r"([XY])_(0|[1-9][0-9]*)")
# no two ways to match a digit (linear time: "[0-9]+\.?[0-9]*" took minutes on a 300 000-digit token)
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_NUMBER_START = frozenset("0123456789-+.")
_IGNORED_COMMANDS = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model", "get-value", "exit"})
_COMPARISONS = ("<=", ">=", "<", ">", "=")
_ARITHMETIC = ("+", "-", "*", "/")
_ACCEPTED = "and, or, <=, >=, <, >, = (and the terms +, -, *, /)"


class _Term:
    """A linear term ``sum(x_coeffs) + sum(y_coeffs) + const`` (never mutated once built)."""

    __slots__ = ("x", "y", "const")

    def __init__(self, x: dict[int, float], y: dict[int, float], const: float):
        self.x = x
        self.y = y
        self.const = const

    def is_constant(self) -> bool:
        return not self.x and not self.y

    def combine(self, other: _Term, factor: float) -> _Term:
        """``self + factor * other``."""
        x = dict(self.x)
        for i, c in other.x.items():
            x[i] = x.get(i, 0.0) + factor * c
        y = dict(self.y)
        for j, c in other.y.items():
            y[j] = y.get(j, 0.0) + factor * c
        return _Term(x, y, self.const + factor * other.const)

    def scale(self, factor: float) -> _Term:
        return _Term({i: factor * c for i, c in self.x.items()}, {j: factor * c for j, c in self.y.items()},
                     factor * self.const)


@dataclass
class ParsedProperty:
    """Declarations and the conjunction of all asserts of one file."""

    source: Source
    input_declarations: dict[int, int]  # X index -> token of its name in the declaration
    output_declarations: dict[int, int]  # Y index -> token of its name
    formula: And


def parse_property(source: Source) -> ParsedProperty:
    """Parse the tokens of ``source`` into declarations and a formula; raises :class:`SpecError` at the first error."""
    parser = _Parser(source)
    try:
        parser.parse()
    except RecursionError:
        raise source.error(parser.pos, "formula nested too deeply for the parser") from None
    formula = And(tuple(parser.asserts), 0)
    return ParsedProperty(source, parser.inputs, parser.outputs, formula)


class _Parser:
    def __init__(self, source: Source):
        self.source = source
        self.tokens = source.tokens
        self.pos = 0
        self.variables: dict[str, _Term] = {}
        self.inputs: dict[int, int] = {}
        self.outputs: dict[int, int] = {}
        self.asserts: list[Formula] = []

    # -- token helpers ------------------------------------------------------------------------------

    def error(self, token: int, message: str) -> SpecError:
        return self.source.error(token, message)

    def take(self, opened: int, expected: str) -> str:
        """The next token; at the end of the file, an error naming the unclosed ``(``."""
        if self.pos >= len(self.tokens):
            raise self.error(self.pos, f"unexpected end of file, expected {expected}: "
                                       f"the '(' at {self.source.where(opened)} is never closed")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at_close(self, opened: int, expected: str) -> bool:
        """Whether the next token is ``)`` (without consuming it); errors at the end of the file."""
        if self.pos >= len(self.tokens):
            raise self.error(self.pos, f"unexpected end of file, expected {expected}: "
                                       f"the '(' at {self.source.where(opened)} is never closed")
        return self.tokens[self.pos] == ")"

    def close(self, opened: int, what: str) -> None:
        token = self.take(opened, f"')' closing the {what}")
        if token != ")":
            raise self.error(self.pos - 1, f"expected ')' to close the {what} opened at "
                                           f"{self.source.where(opened)}, got {quote(token)}")

    # -- commands ---------------------------------------------------------------------------------

    def parse(self) -> None:
        while self.pos < len(self.tokens):
            self.command()

    def command(self) -> None:
        opened = self.pos
        tokens = self.tokens
        if (opened + 7 < len(tokens) and tokens[opened + 1] == "assert" and tokens[opened + 7] == ")"
                and tokens[opened + 6] == ")" and tokens[opened] == tokens[opened + 2] == "("):
            leaf = self.simple_comparison(tokens[opened + 3], tokens[opened + 4], tokens[opened + 5], opened + 2)
            if leaf is not None:  # fast path for (assert (op a b)), most of every file
                self.asserts.append(leaf)
                self.pos = opened + 8
                return
        token = tokens[opened]
        self.pos += 1
        if token != "(":
            raise self.error(opened, f"expected '(' to start a command, got {quote(token)}"
                             + (" (unbalanced parentheses: one ')' too many)" if token == ")" else ""))
        head = self.take(opened, "a command")
        if head == "declare-const":
            self.declaration(opened)
        elif head == "assert":
            self.asserts.append(self.formula(opened))
            self.close(opened, "assert")
        elif head in _IGNORED_COMMANDS:
            self.skip_to_close(opened)
        else:
            raise self.error(self.pos - 1, f"unknown command {quote(head)}; expected declare-const or assert")

    def declaration(self, opened: int) -> None:
        name_token = self.pos
        name = self.take(opened, "a variable name")
        sort = self.take(opened, "the sort Real")
        match = _VARIABLE.fullmatch(name)
        if match is None:
            raise self.error(name_token, f"variable {quote(name)} is not named X_<i> (input) or Y_<j> (output)")
        if name in self.variables:
            raise self.error(name_token, f"variable {quote(name)} is declared twice")
        if sort != "Real":
            raise self.error(name_token + 1, f"variable {quote(name)} has sort {quote(sort)}; only Real is supported")
        self.close(opened, "declare-const")
        if len(match.group(2)) > 9:
            raise self.error(name_token, f"variable {quote(name)}: index too large (at most 9 digits)")
        index = int(match.group(2))
        if match.group(1) == "X":
            self.inputs[index] = name_token
            self.variables[name] = _Term({index: 1.0}, {}, 0.0)
        else:
            self.outputs[index] = name_token
            self.variables[name] = _Term({}, {index: 1.0}, 0.0)

    def skip_to_close(self, opened: int) -> None:
        depth = 1
        while depth:
            token = self.take(opened, "')'")
            depth += (token == "(") - (token == ")")

    # -- formulas ---------------------------------------------------------------------------------

    def formula(self, parent: int) -> Formula:
        start = self.pos
        tokens = self.tokens
        if start + 4 < len(tokens) and tokens[start + 4] == ")" and tokens[start] == "(":
            simple = self.simple_comparison(tokens[start + 1], tokens[start + 2], tokens[start + 3], start)
            if simple is not None:
                self.pos = start + 5
                return simple
        token = self.take(parent, "a formula")
        if token == "(":
            head = self.take(start, "an operator")
            if head in ("and", "or"):
                children = []
                while not self.at_close(start, f"a formula or ')' closing the {quote(head)}"):
                    children.append(self.formula(start))
                self.pos += 1
                return (And if head == "and" else Or)(tuple(children), start)
            if head in _COMPARISONS:
                terms = []
                while not self.at_close(start, f"a term or ')' closing the {quote(head)}"):
                    terms.append(self.term(start))
                self.pos += 1
                if len(terms) < 2:
                    raise self.error(start, f"comparison {quote(head)} needs at least two terms, got {len(terms)}")
                return self.comparison(head, terms, start)
            raise self.error(self.pos - 1, f"unknown operator {quote(head)} in a formula; accepted: {_ACCEPTED}")
        if token in ("true", "false"):
            return Truth(token == "true", start)
        raise self.error(start, f"expected a formula (a comparison, 'and' or 'or'), got {quote(token)}")

    def simple_comparison(self, op: str, a: str, b: str, token: int) -> Formula | None:
        """Fast path for ``(op a b)`` with two plain symbols (most of every file); ``None`` if it does not apply."""
        if op not in _COMPARISONS:
            return None
        variables = self.variables
        left, right = variables.get(a), variables.get(b)
        if (left is None) == (right is None):
            if left is not None:
                return self.comparison(op, [left, right], token)
            return None
        variable, number = (left, b) if left is not None else (right, a)
        if not variable.x or number[0] not in _NUMBER_START or not _NUMBER.fullmatch(number):
            return None
        value = float(number)
        if not math.isfinite(value):
            return None
        (index,) = variable.x
        if op == "=":
            return And((Bound(index, value, True, token), Bound(index, value, False, token)), token)
        upper = (op in ("<=", "<")) == (left is not None)
        return Bound(index, value, upper, token)

    def comparison(self, op: str, terms: list[_Term], token: int) -> Formula:
        leaves: list[Leaf] = []
        for a, b in zip(terms, terms[1:]):
            if op in ("<=", "<", "="):
                leaves.append(self.leaf(a.combine(b, -1.0), token))
            if op in (">=", ">", "="):
                leaves.append(self.leaf(b.combine(a, -1.0), token))
        return leaves[0] if len(leaves) == 1 else And(tuple(leaves), token)

    def leaf(self, term: _Term, token: int) -> Leaf:
        """The constraint ``term <= 0``, classified as an input bound, an output constraint or a constant."""
        x = {i: c for i, c in term.x.items() if c != 0.0}
        y = {j: c for j, c in term.y.items() if c != 0.0}
        if not all(math.isfinite(c) for c in (*x.values(), *y.values())):
            raise self.error(token, "a coefficient of this constraint is not a finite number")
        if x and y:
            raise self.error(token, f"constraint mixes inputs (X_{min(x)}) and outputs (Y_{min(y)}); "
                                    "each comparison must involve only X or only Y")
        if len(x) > 1:
            first, second = sorted(x)[:2]
            raise self.error(token, f"input constraint involves X_{first} and X_{second}; input constraints "
                                    "must bound a single variable (linear input constraints are not supported)")
        if x:
            (index, coefficient), = x.items()
            value = -term.const / coefficient
            if not math.isfinite(value):
                raise self.error(token, f"bound on X_{index} is not a finite number")
            return Bound(index, value, coefficient > 0, token)
        if y:
            if not math.isfinite(term.const):
                raise self.error(token, "output constraint has a non-finite constant")
            return OutputConstraint(tuple(sorted(y.items())), 0.0 - term.const, token)
        return Truth(term.const <= 0.0, token)

    # -- terms ------------------------------------------------------------------------------------

    def term(self, parent: int) -> _Term:
        start = self.pos
        token = self.take(parent, "a term")
        variable = self.variables.get(token)
        if variable is not None:
            return variable
        if token == "(":
            op = self.take(start, "an arithmetic operator")
            args = []
            while not self.at_close(start, f"a term or ')' closing the {quote(op)}"):
                args.append(self.term(start))
            self.pos += 1
            return self.arithmetic(op, args, start)
        if token[0] in _NUMBER_START and _NUMBER.fullmatch(token):
            value = float(token)
            if not math.isfinite(value):
                raise self.error(start, f"number {shorten(token)} is out of range")
            return _Term({}, {}, value)
        if token == ")":
            raise self.error(start, "expected a term, got ')'")
        if _VARIABLE.fullmatch(token):
            raise self.error(start, f"undeclared variable {shorten(token)} "
                                    f"(declare it with (declare-const {shorten(token)} Real))")
        raise self.error(start, f"expected a term (a number, a declared variable or (+ - * / ...)), got {quote(token)}")

    def arithmetic(self, op: str, args: list[_Term], token: int) -> _Term:
        if op not in _ARITHMETIC:
            raise self.error(token + 1, f"unknown operator {quote(op)} in a term; accepted: +, -, *, /")
        if not args:
            raise self.error(token, f"operator {quote(op)} needs at least one term")
        if op == "+":
            total = args[0]
            for arg in args[1:]:
                total = total.combine(arg, 1.0)
            return total
        if op == "-":
            if len(args) == 1:
                return args[0].scale(-1.0)
            total = args[0]
            for arg in args[1:]:
                total = total.combine(arg, -1.0)
            return total
        if op == "*":
            variable = [arg for arg in args if not arg.is_constant()]
            if len(variable) > 1:
                raise self.error(token, "product of two variables is not linear; '*' takes at most one non-constant")
            factor = math.prod(arg.const for arg in args if arg.is_constant())
            return variable[0].scale(factor) if variable else _Term({}, {}, factor)
        for divisor in args[1:]:
            if not divisor.is_constant() or divisor.const == 0.0:
                raise self.error(token, "'/' divides only by non-zero constants")
        return args[0].scale(1.0 / math.prod(arg.const for arg in args[1:]))
