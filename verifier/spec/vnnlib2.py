"""Read a VNN-LIB 2.0 query (chosen by its ``(vnnlib-version <2.0>)`` header) into a
:class:`~verifier.spec.query.Query`.

Parsing, scoping and type checking are done by the standard's own parser, the ``vnnlib`` package (MIT,
pybind11; install the extra ``verifier[vnnlib2]``); its tree is converted to the plain dataclasses of
:mod:`verifier.spec.query`. Every error becomes a one-line :class:`~verifier.errors.SpecError` naming
``file:line:column`` (the package reports the line and the offending symbol; the column is where that
symbol first occurs on the line).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from fractions import Fraction
from pathlib import Path

from verifier.errors import SpecError
from verifier.spec.query import (
    Comparison,
    Conjunction,
    Constant,
    Difference,
    Disjunction,
    Element,
    Expression,
    Formula,
    Negate,
    NetworkDeclaration,
    Position,
    Product,
    Query,
    Sum,
    Variable,
)

#: the pinned version of the standard's parser this reader was written against
VNNLIB_PACKAGE_VERSION = "1.0.2"

_HEADER = re.compile(r"\(\s*vnnlib-version\s*<\s*([0-9]+)\.([0-9]+)\s*>\s*\)")
_COMMENT = re.compile(r";[^\n]*")
_DECLARATION = re.compile(r"\(\s*declare-(network|input|hidden|output)\s+([A-Za-z][A-Za-z0-9_]*)(\s+([A-Za-z0-9_]+))?")
_OPERATORS = {"GreaterThan": ">", "GreaterEqual": ">=", "LessThan": "<", "LessEqual": "<=", "Equal": "==",
              "NotEqual": "!="}
_DTYPES = {
    "Real": "real", "F16": "float16", "F32": "float32", "F64": "float64", "BF16": "bfloat16",
    "F8E4M3FN": "float8e4m3fn", "F8E5M2": "float8e5m2", "F8E4M3FNUZ": "float8e4m3fnuz",
    "F8E5M2FNUZ": "float8e5m2fnuz", "F4E2M1": "float4e2m1", "I8": "int8", "I16": "int16", "I32": "int32",
    "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "C64": "complex64",
    "C128": "complex128", "Bool": "bool", "String": "string",
}


def strip_comments(text: str) -> str:
    """``text`` with every ``; ...`` comment blanked out (offsets, lines and columns unchanged)."""
    return _COMMENT.sub(lambda m: " " * len(m.group()), text)


def vnnlib_version(text: str) -> tuple[int, int] | None:
    """The ``(vnnlib-version <M.m>)`` header of a query, if its first form is one (``None``: VNN-LIB 1.0)."""
    body = strip_comments(text[:4096]).lstrip()
    match = _HEADER.match(body)
    return (int(match.group(1)), int(match.group(2))) if match else None


def read_text(path_or_text: str | os.PathLike) -> tuple[str, str]:
    """The text of a query and the name to use in messages: a path (``.gz`` decompressed) or the text itself."""
    if isinstance(path_or_text, str) and "(" in path_or_text:
        return path_or_text, "<text>"
    path = Path(path_or_text)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as file:
                return file.read(), str(path)
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise SpecError(f"cannot read query file {path}: {error}") from None


def parse_query(path_or_text: str | os.PathLike, name: str | None = None) -> Query:
    """Parse and type-check a VNN-LIB 2.0 query (a path or the text itself).

    Raises :class:`SpecError` (``file:line:col: message``) on a syntax error, an undeclared or doubly
    declared name, a type mismatch, an index out of range, or when the ``vnnlib`` package is missing.
    """
    text, default_name = read_text(path_or_text)
    source = name or default_name
    try:
        import vnnlib
    except ImportError:
        raise SpecError(f"{source}: reading VNN-LIB 2.0 queries needs the 'vnnlib' package "
                        f"(pip install 'vnnlib=={VNNLIB_PACKAGE_VERSION}', or the extra verifier[vnnlib2])") from None
    checked, isomorphic_types = _isomorphic_as_referenced(text)
    try:
        tree = vnnlib.parse_query_string(checked)
    except vnnlib.VNNLibException as error:
        raise _package_error(str(error), text, source) from None
    except Exception as error:  # noqa: BLE001 - the C++ parser may raise other exceptions on odd input
        raise SpecError(f"{source}: the query could not be parsed ({type(error).__name__}: {error})") from None
    query = _Converter(text, source).query(tree)
    if isomorphic_types:
        _check_isomorphic_types(query)
    return query


_NETWORK_BLOCK = re.compile(r"\(\s*declare-network\s+([A-Za-z][A-Za-z0-9_]*)\s*(\(\s*(isomorphic-to|equal-to)\s+"
                            r"([A-Za-z][A-Za-z0-9_]*)\s*\))?")
_VARIABLE_TYPE = re.compile(r"\(\s*declare-(input|hidden|output)\s+[A-Za-z][A-Za-z0-9_]*\s+([A-Za-z0-9_]+)")


def _isomorphic_as_referenced(text: str) -> tuple[str, bool]:
    """The query with each ``isomorphic-to`` network's element types replaced by those of the network it refers
    to (position by position), for the ``vnnlib`` package's type checker.

    The standard's typing rule for ``isomorphic-to`` (NetworkIso) constrains only the shapes of the two
    networks' variables: an isomorphic network may use other element types (a float16 copy of a float32
    network). ``vnnlib`` 1.0.2 also demands equal element types; the declared types are restored afterwards and
    checked by :func:`_check_isomorphic_types`. Returns the text and whether anything was replaced."""
    clean = strip_comments(text)
    blocks = list(_NETWORK_BLOCK.finditer(clean))
    if not any(m.group(3) == "isomorphic-to" for m in blocks):
        return text, False
    spans = {}
    for i, match in enumerate(blocks):
        end = blocks[i + 1].start() if i + 1 < len(blocks) else len(clean)
        kinds: dict[str, list] = {"input": [], "hidden": [], "output": []}
        for var in _VARIABLE_TYPE.finditer(clean, match.end(), end):
            kinds[var.group(1)].append((var.start(2), var.end(2), var.group(2)))
        spans[match.group(1)] = (match, kinds)
    edits = []
    for match, kinds in spans.values():
        if match.group(3) != "isomorphic-to" or match.group(4) not in spans:
            continue
        reference = spans[match.group(4)][1]
        for kind, variables in kinds.items():
            for (start, end, _), (_, _, type_name) in zip(variables, reference[kind]):
                edits.append((start, end, type_name))
    out, last = [], 0
    for start, end, type_name in sorted(edits):
        out.append(text[last:start])
        out.append(type_name)
        last = end
    out.append(text[last:])
    return "".join(out), bool(edits)


def _check_isomorphic_types(query: Query) -> None:
    """Type checks the ``vnnlib`` package could not do with the declared types of isomorphic networks: one element
    type per comparison, integer literals in integer comparisons, decimal literals in floating-point ones."""
    from verifier.spec.query import comparisons, elements, is_float_type

    for assertion in query.assertions:
        for comparison in comparisons(assertion):
            found = list(elements(comparison))
            types = {e.variable.element_type for e in found}
            if len(types) > 1:
                first = found[0]
                other = next(e for e in found if e.variable.element_type != first.variable.element_type)
                raise SpecError(f"{query.where(other.position)}: type mismatch: {other.variable.name} is "
                                f"{other.variable.element_type} but {first.variable.name} is "
                                f"{first.variable.element_type}")
            element_type = next(iter(types), "real")
            for constant in _constants(comparison):
                integral = re.fullmatch(r"[-+]?[0-9]+", constant.text) is not None
                if is_float_type(element_type) and integral or element_type.startswith(("int", "uint")) \
                        and not integral:
                    raise SpecError(f"{query.where(constant.position)}: type mismatch: constant {constant.text} "
                                    f"in a comparison of {element_type} values")


def _constants(node):
    if isinstance(node, Constant):
        yield node
    elif isinstance(node, Comparison):
        yield from _constants(node.left)
        yield from _constants(node.right)
    elif isinstance(node, Negate):
        yield from _constants(node.arg)
    elif isinstance(node, (Sum, Difference, Product)):
        for arg in node.args:
            yield from _constants(arg)


def _package_error(message: str, text: str, source: str) -> SpecError:
    """One ``file:line:col: message`` line from an error of the ``vnnlib`` package."""
    syntax = re.search(r"line (\d+), column (\d+): '(.*)'", message)
    if syntax:
        # the package counts columns from 0
        line, column, token = int(syntax.group(1)), int(syntax.group(2)) + 1, syntax.group(3)
        found = f"unexpected {token!r}" if token else "unexpected end of input"
        return SpecError(f"{source}:{line}:{column}: syntax error: {found}")
    try:
        report = json.loads(message)
        first = report["errors"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return SpecError(f"{source}: {' '.join(message.split())}")
    line = int(first.get("line", 0) or 0)
    symbol = str(first.get("offendingSymbol", ""))
    column = _column_of(text, line, symbol)
    detail = first.get("message", "error")
    hint = first.get("hint", "")
    more = len(report["errors"]) - 1
    tail = f" ({more} more error{'s' if more > 1 else ''})" if more > 0 else ""
    what = f" {symbol!r}" if symbol else ""
    return SpecError(f"{source}:{line}:{column}: {detail[:1].lower()}{detail[1:]}{what}"
                     + (f": {hint}" if hint else "") + tail)


def _column_of(text: str, line: int, symbol: str) -> int:
    """Column of the first occurrence of ``symbol`` (or of its name before ``[``) on ``line``; 1 if not found."""
    lines = strip_comments(text).split("\n")
    if not 1 <= line <= len(lines):
        return 1
    row = lines[line - 1]
    for candidate in (symbol, symbol.split("[")[0].strip(), symbol.strip('"')):
        if candidate:
            match = re.search(r"(?<![A-Za-z0-9_])" + re.escape(candidate) + r"(?![A-Za-z0-9_])", row) \
                if candidate[0].isalnum() or candidate[0] == "_" else None
            index = match.start() if match else row.find(candidate)
            if index >= 0:
                return index + 1
    return len(row) - len(row.lstrip()) + 1


class _Converter:
    """The ``vnnlib`` package's tree -> :mod:`verifier.spec.query` dataclasses, with source positions."""

    def __init__(self, text: str, source: str):
        self.text = text
        self.source = source
        self.clean = strip_comments(text)
        self.lines = self.clean.split("\n")
        self.declared: dict[str, tuple[Position, str]] = {}
        for match in _DECLARATION.finditer(self.clean):
            position = self.position(match.start())
            self.declared.setdefault(f"{match.group(1)}:{match.group(2)}", (position, match.group(4) or ""))
        self.variables: dict[str, Variable] = {}
        self.cursor: dict[int, int] = {}   # per line, where the next search for a variable starts

    def position(self, offset: int) -> Position:
        line = self.clean.count("\n", 0, offset) + 1
        return Position(line, offset - (self.clean.rfind("\n", 0, offset) + 1) + 1)

    def query(self, tree) -> Query:
        networks = [self.network(n) for n in tree.networks]
        assertions = [self.formula(a.expr) for a in tree.assertions]
        return Query("2.0", networks, assertions, self.source, self.text)

    def network(self, node) -> NetworkDeclaration:
        position = self.declared.get(f"network:{node.name}", (Position(1, 1), ""))[0]
        declaration = NetworkDeclaration(
            name=node.name,
            inputs=[self.variable(v, "input", node.name) for v in node.inputs],
            hidden=[self.variable(v, "hidden", node.name) for v in node.hidden],
            outputs=[self.variable(v, "output", node.name) for v in node.outputs],
            position=position,
            equal_to=node.equal_to or None,
            isomorphic_to=node.isometric_to or None,
        )
        return declaration

    def variable(self, node, kind: str, network: str) -> Variable:
        position, spelling = self.declared.get(f"{kind}:{node.name}", (Position(1, 1), ""))
        element_type = _DTYPES.get(node.dtype.name, node.dtype.name.lower())
        if spelling and spelling.lower() != element_type and spelling.lower() in _DTYPES.values():
            element_type = spelling.lower()  # an isomorphic network's own type (see _isomorphic_as_referenced)
        onnx_name = node.onnx_name
        if onnx_name is not None:
            onnx_name = onnx_name[1:-1] if len(onnx_name) >= 2 and onnx_name[0] == onnx_name[-1] == '"' else onnx_name
        variable = Variable(node.name, kind, element_type, tuple(int(d) for d in node.shape), network, position,
                            onnx_name, spelling or element_type)
        self.variables[node.name] = variable
        return variable

    def formula(self, node) -> Formula:
        kind = type(node).__name__
        if kind == "And":
            return Conjunction(tuple(self.formula(a) for a in node.args))
        if kind == "Or":
            return Disjunction(tuple(self.formula(a) for a in node.args))
        if kind not in _OPERATORS:
            raise SpecError(f"{self.source}: unexpected boolean expression {node}")
        left, right = self.expression(node.lhs), self.expression(node.rhs)
        position = next((p for p in (_position_of(left), _position_of(right)) if p is not None), None)
        return Comparison(_OPERATORS[kind], left, right, position)

    def expression(self, node) -> Expression:
        kind = type(node).__name__
        if kind == "Var":
            variable = self.variables[node.name]
            flat = variable.flat_index(list(node.indices))
            return Element(variable, flat, self.find(node.line, node.name))
        if kind in ("Float", "Int", "Literal"):
            lexeme = node.lexeme
            return Constant(lexeme, Fraction(lexeme), self.find(node.line, lexeme))
        if kind == "Negate":
            return Negate(self.expression(node.expr))
        if kind == "Plus":
            return Sum(tuple(self.expression(a) for a in node.args))
        if kind == "Minus":
            return Difference((self.expression(node.head), *(self.expression(a) for a in node.rest)))
        if kind == "Multiply":
            return Product(tuple(self.expression(a) for a in node.args))
        raise SpecError(f"{self.source}: unexpected arithmetic expression {node}")

    def find(self, line: int, token: str) -> Position:
        """Position of the next occurrence of ``token`` on ``line`` (left to right as the tree is read)."""
        if not 1 <= line <= len(self.lines):
            return Position(max(line, 1), 1)
        row = self.lines[line - 1]
        start = self.cursor.get(line, 0)
        pattern = re.compile(r"(?<![A-Za-z0-9_.\-+])" + re.escape(token) + r"(?![A-Za-z0-9_.])")
        match = pattern.search(row, start) or pattern.search(row)
        if match is None:
            return Position(line, 1)
        self.cursor[line] = match.end()
        return Position(line, match.start() + 1)


def _position_of(expression: Expression) -> Position | None:
    if isinstance(expression, (Element, Constant)):
        return expression.position
    if isinstance(expression, Negate):
        return _position_of(expression.arg)
    for arg in expression.args:
        position = _position_of(arg)
        if position is not None:
            return position
    return None
