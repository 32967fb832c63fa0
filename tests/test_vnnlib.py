"""VNN-LIB parsing: every public property parses with the network's sizes; hand-written files pin down
nesting, boxes inside disjunctions, terms and every error; random formulas check the normal form against
a direct evaluation; witnesses round-trip through the VNN-COMP result format."""

from __future__ import annotations

import csv
import gzip
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from conftest import MODELS, SHARED, shared_family

import verifier
from verifier.spec import (
    SpecError,
    Specification,
    check_counterexample,
    evaluate,
    format_counterexample,
    format_result,
    parse_counterexample,
    parse_vnnlib,
)
from verifier.spec.normalize import count_cases
from verifier.spec.parser import parse_property
from verifier.spec.reader import Source


def declarations(n_inputs: int, n_outputs: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_inputs)) + \
        "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_outputs))


def cases_as_set(spec: Specification) -> set[tuple]:
    """The cases as comparable tuples (box, sorted rows) — order-free."""
    return {
        (tuple(c.lower), tuple(c.upper), tuple(sorted(zip(map(tuple, c.C), c.d))))
        for c in spec.cases
    }


# -- every public property ------------------------------------------------------------------------

FAMILIES = sorted(p.name for p in SHARED.iterdir() if (p / "vnnlib").is_dir()) if SHARED.is_dir() else ["acasxu"]
_TOP_LEVEL_BOUND = re.compile(r"\(\s*assert\s*\(\s*(<=|>=)\s+X_(\d+)\s+([^\s()]+)\s*\)\s*\)")


def _independent_box(text: str, n_inputs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The input box read with a regular expression, for files whose every input constraint is a top-level
    ``(assert (<= X_i c))`` / ``(assert (>= X_i c))``; ``None`` for other files."""
    text = re.sub(r";[^\n]*", "", text)
    matches = _TOP_LEVEL_BOUND.findall(text)
    if len(re.findall(r"\bX_\d+", text)) - n_inputs != len(matches):
        return None
    lower, upper = np.full(n_inputs, -np.inf), np.full(n_inputs, np.inf)
    for op, index, value in matches:
        if op == "<=":
            upper[int(index)] = min(upper[int(index)], float(value))
        else:
            lower[int(index)] = max(lower[int(index)], float(value))
    return lower, upper


@pytest.mark.parametrize("family", FAMILIES)
def test_every_public_property_parses_with_network_sizes(family):
    root = shared_family(family)
    networks: dict[str, set[str]] = defaultdict(set)
    with open(root / "instances.csv", newline="") as file:
        for row in csv.reader(file):
            if row:
                networks[row[1].strip()].add(row[0].strip())
    sizes = {}
    for onnx_path in {path for paths in networks.values() for path in paths}:
        net = verifier.load_onnx(root / onnx_path)
        sizes[onnx_path] = (net.input_size, net.output_size)
    files = sorted((root / "vnnlib").glob("*.vnnlib"))
    assert files
    for path in files:
        shapes = {sizes[onnx] for onnx in networks.get(f"vnnlib/{path.name}", ())}
        assert len(shapes) <= 1, f"{path.name} is used with networks of different sizes {shapes}"
        n_inputs, n_outputs = shapes.pop() if shapes else (None, None)
        spec = parse_vnnlib(path, n_inputs=n_inputs, n_outputs=n_outputs)
        assert spec.cases, path
        for case in spec.cases:
            assert case.lower.shape == case.upper.shape == (spec.n_inputs,)
            assert (case.lower <= case.upper).all() and np.isfinite(case.lower).all() and np.isfinite(case.upper).all()
            assert case.C.shape == (len(case.d), spec.n_outputs)
        box = _independent_box(path.read_text(), spec.n_inputs)
        if box is not None:
            assert len(spec.box_groups()) == 1
            group = spec.box_groups()[0]
            np.testing.assert_array_equal(group.lower, box[0], err_msg=str(path))
            np.testing.assert_array_equal(group.upper, box[1], err_msg=str(path))


def test_bundled_model_properties_parse_with_model_sizes():
    from verifier.spec.vnnlib2 import vnnlib_version

    for path in sorted(MODELS.glob("*.vnnlib")):
        if vnnlib_version(path.read_text()) is not None:  # 2.0 queries: tests/test_vnnlib2_*.py
            continue
        model = next(m for m in MODELS.glob("*.onnx") if path.name.startswith(m.stem + "_"))
        net = verifier.load_onnx(model)
        spec = parse_vnnlib(path, n_inputs=net.input_size, n_outputs=net.output_size)
        assert spec.cases and spec.n_inputs == net.input_size


def test_acasxu_property_6_has_two_boxes_of_four_cases():
    spec = parse_vnnlib(shared_family("acasxu") / "vnnlib" / "prop_6.vnnlib", 5, 5)
    groups = spec.box_groups()
    assert len(spec.cases) == 8 and len(groups) == 2
    assert groups[0].lower[1] == pytest.approx(0.11140846) and groups[1].upper[1] == pytest.approx(-0.11140846)
    for group in groups:
        assert group.C.shape == (4, 5) and list(group.row_case) == [0, 1, 2, 3]
        # (<= Y_j Y_0): Y_j - Y_0 <= 0
        np.testing.assert_array_equal(group.C[:, 0], -1.0)
        np.testing.assert_array_equal(group.C[:, 1:], np.eye(4))
        np.testing.assert_array_equal(group.d, 0.0)


# -- hand-written properties ----------------------------------------------------------------------


def test_nesting_three_deep_with_boxes_inside_disjuncts():
    text = declarations(2, 2) + """
(assert (>= X_1 -1))
(assert (<= X_1 1))
(assert (or
    (and (>= X_0 0) (<= X_0 1)
         (or (and (<= Y_0 Y_1)
                  (or (>= Y_0 2) (<= (+ Y_0 (* -1.0 Y_1)) -3)))
             (>= Y_1 5)))
    (and (>= X_0 2) (<= X_0 3) (>= X_1 0.5) (>= Y_1 1))))
"""
    spec = parse_vnnlib(text, n_inputs=2, n_outputs=2)
    box_a = ((0.0, -1.0), (1.0, 1.0))
    box_b = ((2.0, 0.5), (3.0, 1.0))
    expected = {
        (*box_a, tuple(sorted([((1.0, -1.0), 0.0), ((-1.0, 0.0), -2.0)]))),
        (*box_a, tuple(sorted([((1.0, -1.0), 0.0), ((1.0, -1.0), -3.0)]))),
        (*box_a, (((0.0, -1.0), -5.0),)),
        (*box_b, (((0.0, -1.0), -1.0),)),
    }
    assert cases_as_set(spec) == expected
    groups = spec.box_groups()
    assert [len(g.case_indices) for g in groups] == [3, 1]
    assert groups[0].C.shape == (5, 2) and list(groups[0].row_case) == [0, 0, 1, 1, 2]


def test_deep_nesting_parses_and_too_deep_is_a_clear_error():
    def nested(depth: int) -> str:
        formula = "(>= Y_0 1)"
        for level in range(depth):
            formula = f"({'and' if level % 2 else 'or'} {formula} (<= Y_0 {level}))"
        return declarations(1, 1) + _VALID_TAIL + f"(assert {formula})\n"

    spec = parse_vnnlib(nested(200))
    assert len(spec.cases) == 101
    with pytest.raises(SpecError, match=r"<text>:\d+:\d+: formula nested too deeply"):
        parse_vnnlib(nested(5000))


def test_comments_scientific_notation_and_linear_terms():
    text = """; a comment (with an unbalanced parenthesis
(declare-const X_0 Real) ; trailing comment )
(declare-const X_1 Real)
(declare-const Y_0 Real)(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (<= X_0 1.5e-3)) (assert (>= X_0 -2.5E+1))
(assert (<= -.5 X_1 5.))            ; chained: -0.5 <= X_1 <= 5
(assert (>= (* 2 X_1) -0.25))       ; tightens the lower bound to -0.125
(assert (and
  (<= (- Y_0 Y_1) +2)
  (>= (* 2 Y_0) (- Y_2))
  (< (/ Y_2 4) 1e0)
  (> (+ Y_0 Y_1 Y_2 3) 0)
  (= (- Y_1 (* 0.5 Y_0) Y_0) 7)))
"""
    spec = parse_vnnlib(text, n_inputs=2, n_outputs=3)
    (case,) = spec.cases
    np.testing.assert_array_equal(case.lower, [-25.0, -0.125])
    np.testing.assert_array_equal(case.upper, [1.5e-3, 5.0])
    rows = sorted(zip(map(tuple, case.C), case.d))
    assert rows == sorted([
        ((1.0, -1.0, 0.0), 2.0),     # Y_0 - Y_1 <= 2
        ((-2.0, 0.0, -1.0), 0.0),    # -Y_2 - 2 Y_0 <= 0
        ((0.0, 0.0, 0.25), 1.0),     # Y_2 / 4 <= 1 (strict read as non-strict)
        ((-1.0, -1.0, -1.0), 3.0),   # 0 - (Y_0 + Y_1 + Y_2 + 3) <= 0
        ((-1.5, 1.0, 0.0), 7.0),     # Y_1 - 1.5 Y_0 = 7, both directions
        ((1.5, -1.0, 0.0), -7.0),
    ])


def test_constant_comparisons_true_false_and_empty_boxes():
    text = declarations(1, 1) + """
(assert (<= X_0 1)) (assert (>= X_0 0))
(assert (or (and (<= 1 0) (>= Y_0 9))     ; false: dropped
            (and (>= X_0 2) (>= Y_0 8))   ; empty box: dropped and counted
            (and true (<= 0 1) (>= Y_0 7))
            false))
"""
    spec = parse_vnnlib(text)
    assert spec.infeasible_cases == 1
    assert cases_as_set(spec) == {((0.0,), (1.0,), (((-1.0,), -7.0),))}


def test_property_without_output_constraint_has_a_case_with_no_rows():
    spec = parse_vnnlib(declarations(1, 2) + "(assert (<= X_0 1)) (assert (>= X_0 0))")
    (case,) = spec.cases
    assert case.C.shape == (0, 2) and case.d.shape == (0,)


def test_reads_paths_and_gzip(tmp_path):
    text = declarations(1, 1) + "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (>= Y_0 3))"
    plain = tmp_path / "p.vnnlib"
    plain.write_text(text)
    packed = tmp_path / "p.vnnlib.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, str(plain), packed):
        assert cases_as_set(parse_vnnlib(path)) == {((0.0,), (1.0,), (((-1.0,), -3.0),))}
    with pytest.raises(SpecError, match="cannot read property file"):
        parse_vnnlib(tmp_path / "missing.vnnlib")


_VALID_TAIL = "(assert (<= X_0 1))\n(assert (>= X_0 0))\n"

ERRORS = [
    ("unclosed", declarations(1, 1) + "(assert (or (and (<= X_0 1) (>= X_0 0))\n", r"<text>:4:\d+: .*end of file.*"
     r"'\(' at <text>:3:\d+ is never closed"),
    ("extra close", declarations(1, 1) + _VALID_TAIL + "(assert (>= Y_0 1)))\n", r"<text>:5:20: .*'\)'.*unbalanced"),
    ("undeclared", declarations(1, 1) + _VALID_TAIL + "(assert (>= Y_3 1))\n", r"<text>:5:13: undeclared variable Y_3"),
    ("missing bound", declarations(2, 1) + _VALID_TAIL + "\n(assert (>= X_1 0))\n",
     r"<text>:7:9: input X_1 has no upper bound; every input"),
    ("missing both bounds", declarations(2, 1) + _VALID_TAIL, r"<text>:2:16: input X_1 has no lower bound"),
    ("missing bound in one disjunct", declarations(1, 1) + "(assert (>= X_0 0))\n"
     "(assert (or (and (<= X_0 1) (>= Y_0 0))\n            (>= Y_0 1)))\n",
     r"<text>:3:9: input X_0 has no upper bound in the case that includes the constraint at line 5"),
    ("unknown operator", declarations(1, 1) + _VALID_TAIL + "(assert (not (>= Y_0 1)))\n",
     r"<text>:5:10: unknown operator 'not'"),
    ("unknown term operator", declarations(1, 1) + _VALID_TAIL + "(assert (>= (exp Y_0) 1))\n",
     r"<text>:5:14: unknown operator 'exp' in a term"),
    ("mixed", declarations(1, 1) + _VALID_TAIL + "(assert (>= Y_0 X_0))\n", r"<text>:5:9: constraint mixes inputs"),
    ("two inputs", declarations(2, 1) + _VALID_TAIL + "(assert (>= X_1 X_0))\n", r"<text>:6:9: input constraint"),
    ("nonlinear", declarations(1, 2) + _VALID_TAIL + "(assert (>= (* Y_0 Y_1) 1))\n", r"<text>:6:13: product"),
    ("sort", "(declare-const X_0 Int)\n", r"<text>:1:20: .*only Real"),
    ("name", "(declare-const x0 Real)\n", r"<text>:1:16: variable 'x0' is not named"),
    ("twice", "(declare-const X_0 Real)\n(declare-const X_0 Real)\n", r"<text>:2:16: .*declared twice"),
    ("gap", "(declare-const X_0 Real)\n(declare-const X_2 Real)\n(declare-const Y_0 Real)\n" + _VALID_TAIL,
     r"<text>:2:16: .*X_1 is not declared"),
    ("number", declarations(1, 1) + _VALID_TAIL + "(assert (>= Y_0 1e999))\n", r"<text>:5:17: number 1e999"),
    ("command", declarations(1, 1) + "(define-fun f () Real 1)\n", r"<text>:3:2: unknown command 'define-fun'"),
    ("bare symbol", declarations(1, 1) + "(assert Y_0)\n", r"<text>:3:9: expected a formula"),
    ("one-term comparison", declarations(1, 1) + "(assert (<= Y_0))\n", r"<text>:3:9: .*at least two terms"),
]


@pytest.mark.parametrize("text, pattern", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_name_line_and_column(text, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_vnnlib(text)


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.vnnlib"
    path.write_text(declarations(1, 1) + "(assert (>= Y_9 1))\n")
    with pytest.raises(SpecError, match=re.escape(f"{path}:3:13: undeclared variable Y_9")):
        parse_vnnlib(path)


def test_variable_counts_must_match_the_network():
    text = declarations(2, 3) + "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (<= X_1 1)) (assert (>= X_1 0))"
    parse_vnnlib(text, n_inputs=2, n_outputs=3)
    with pytest.raises(SpecError, match=r"<text>:1:16: the property declares 2 inputs .* network has 784 inputs"):
        parse_vnnlib(text, n_inputs=784)
    with pytest.raises(SpecError, match=r"<text>:3:16: the property declares 3 outputs .* network has 10 outputs"):
        parse_vnnlib(text, n_outputs=10)
    with pytest.raises(SpecError, match="declares no output variables"):
        parse_vnnlib(declarations(1, 0) + "(assert (<= X_0 1)) (assert (>= X_0 0))")


def test_normal_form_too_large_is_refused_before_expansion():
    disjunction = "(assert (or " + " ".join(f"(>= Y_{j} {k})" for j in range(4) for k in range(10)) + "))\n"
    text = declarations(1, 4) + _VALID_TAIL + disjunction * 6  # 40**6 = 4.1e9 cases
    with pytest.raises(SpecError, match=r"<text>:8:9: the property expands to 4096000000 cases .* limit of "
                                        r"100000 .* lines 8, 9, 10, 11, 12, 13"):
        parse_vnnlib(text)
    with pytest.raises(SpecError, match=r"expands to 1600 cases .* limit of 1000"):
        parse_vnnlib(declarations(1, 4) + _VALID_TAIL + disjunction * 2, max_cases=1000)
    assert len(parse_vnnlib(declarations(1, 4) + _VALID_TAIL + disjunction * 2).cases) == 1600


# -- normal form against direct evaluation ---------------------------------------------------------


@dataclass
class Node:
    """A random formula: its VNN-LIB text and an exact evaluator (Fractions), independent of the parser."""

    text: str
    holds: object  # callable (x, y) -> bool


def _random_output_term(rng: random.Random, n_outputs: int, depth: int = 0) -> tuple[str, object]:
    kind = rng.choice(["var", "var", "const"] + (["+", "-", "neg", "*", "/"] if depth < 2 else []))
    if kind == "var":
        j = rng.randrange(n_outputs)
        return f"Y_{j}", lambda y, j=j: y[j]
    if kind == "const":
        c = rng.randint(-3, 3)
        return str(c), lambda y, c=c: Fraction(c)
    if kind == "neg":
        text, f = _random_output_term(rng, n_outputs, depth + 1)
        return f"(- {text})", lambda y, f=f: -f(y)
    if kind in "*/":
        text, f = _random_output_term(rng, n_outputs, depth + 1)
        k = rng.choice([-2, -1, 2, 4])
        if kind == "/":
            return f"(/ {text} {k})", lambda y, f=f, k=k: f(y) / k
        return (f"(* {k} {text})", lambda y, f=f, k=k: k * f(y)) if rng.random() < 0.5 else \
            (f"(* {text} {k}.0)", lambda y, f=f, k=k: k * f(y))
    parts = [_random_output_term(rng, n_outputs, depth + 1) for _ in range(rng.randint(2, 3))]
    text = f"({kind} " + " ".join(p[0] for p in parts) + ")"
    if kind == "+":
        return text, lambda y, fs=[p[1] for p in parts]: sum(f(y) for f in fs)
    return text, lambda y, fs=[p[1] for p in parts]: fs[0](y) - sum(f(y) for f in fs[1:])


_OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a <= b,  # strict read as non-strict (documented)
        ">=": lambda a, b: a >= b, ">": lambda a, b: a >= b, "=": lambda a, b: a == b}


def _random_leaf(rng: random.Random, n_inputs: int, n_outputs: int) -> Node:
    op = rng.choice(["<=", ">=", "<", ">", "<=", ">=", "="])
    if rng.random() < 0.4:  # an input bound, in one of several spellings
        i, c = rng.randrange(n_inputs), Fraction(rng.randint(-8, 8), 2)
        k = rng.choice([1, 1, 2, -1, -2, 4])
        term = f"X_{i}" if k == 1 else rng.choice([f"(* {k} X_{i})", f"(* X_{i} {k})"])
        lhs, rhs = (term, lambda x, i=i, k=k: k * x[i]), (str(float(c)), lambda x, c=c: c)
        if rng.random() < 0.3:
            lhs, rhs = rhs, lhs
        return Node(f"({op} {lhs[0]} {rhs[0]})", lambda x, y, o=_OPS[op], a=lhs[1], b=rhs[1]: o(a(x), b(x)))
    lhs, rhs = _random_output_term(rng, n_outputs), _random_output_term(rng, n_outputs)
    return Node(f"({op} {lhs[0]} {rhs[0]})", lambda x, y, o=_OPS[op], a=lhs[1], b=rhs[1]: o(a(y), b(y)))


def _random_formula(rng: random.Random, n_inputs: int, n_outputs: int, depth: int) -> Node:
    if depth == 0 or rng.random() < 0.25:
        return _random_leaf(rng, n_inputs, n_outputs)
    op = rng.choice(["and", "or"])
    children = [_random_formula(rng, n_inputs, n_outputs, depth - 1) for _ in range(rng.randint(1, 3))]
    combine = all if op == "and" else any
    return Node(f"({op} " + " ".join(c.text for c in children) + ")",
                lambda x, y, cs=children, combine=combine: combine(c.holds(x, y) for c in cs))


def _in_some_case(spec: Specification, x: list, y: list) -> bool:
    xs, ys = np.array(x, dtype=float), np.array(y, dtype=float)
    return any((c.lower <= xs).all() and (xs <= c.upper).all() and (c.C @ ys <= c.d).all() for c in spec.cases)


def test_normal_form_agrees_with_direct_evaluation_on_random_formulas():
    rng = random.Random(0)
    outcomes = defaultdict(int)
    for _ in range(150):
        n_inputs, n_outputs = rng.randint(1, 3), rng.randint(1, 3)
        asserts = [Node(f"(>= X_{i} -4)", lambda x, y, i=i: x[i] >= -4) for i in range(n_inputs)]
        asserts += [Node(f"(<= X_{i} 4)", lambda x, y, i=i: x[i] <= 4) for i in range(n_inputs)]
        for _ in range(rng.randint(1, 3)):
            asserts.append(_random_formula(rng, n_inputs, n_outputs, depth=rng.randint(1, 4)))
        rng.shuffle(asserts)
        text = declarations(n_inputs, n_outputs) + "".join(f"(assert {a.text})\n" for a in asserts)
        parsed = parse_property(Source(text, "<random>")).formula
        if count_cases(parsed) > 2000:
            continue
        spec = parse_vnnlib(text, n_inputs=n_inputs, n_outputs=n_outputs)
        grid = [Fraction(v, 2) for v in range(-12, 13)]
        for _ in range(60):
            x = [rng.choice(grid) for _ in range(n_inputs)]
            y = [rng.choice(grid) for _ in range(n_outputs)]
            if spec.cases and rng.random() < 0.5:  # aim at a box so that points inside are frequent
                case = rng.choice(spec.cases)
                x = [Fraction(rng.choice([lo, hi, (lo + hi) / 2])) for lo, hi in zip(case.lower, case.upper)]
            expected = all(a.holds(x, y) for a in asserts)
            assert _in_some_case(spec, x, y) == expected, (text, x, y)
            assert evaluate(parsed, [float(v) for v in x], [float(v) for v in y]) == expected, (text, x, y)
            outcomes[expected] += 1
    assert outcomes[True] > 500 and outcomes[False] > 500, outcomes


# -- counterexamples ------------------------------------------------------------------------------


def _read_like_vnncomp(text: str) -> tuple[list[float], list[float]]:
    """Reads a witness the way the VNN-COMP scoring script does (newlines to spaces, outer parentheses
    stripped, entries split at ')', 'X_'/'Y_' names in index order)."""
    content = text.replace("\n", " ").strip()
    assert content[0] == "(" and content[-1] == ")"
    xs, ys = [], []
    for part in content[1:-1].split(")"):
        part = part.strip()
        if not part:
            continue
        while "  " in part:
            part = part.replace("  ", " ")
        assert part[0] == "("
        name, number = part[1:].split(" ")
        target = xs if name.startswith("X_") else ys
        assert name[:2] in ("X_", "Y_") and int(name[2:]) == len(target)
        target.append(float(number))
    return xs, ys


def test_counterexample_format_matches_vnncomp_reader_and_round_trips_float32():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 3, 2, 2)).astype(np.float32) * np.float32(1e-6)
    y = rng.normal(size=(1, 10)).astype(np.float32) * np.float32(1e4)
    block = format_counterexample(x, y)
    assert block.startswith("((X_0 ") and block.endswith(")") and "\n (X_1 " in block and "\n (Y_0 " in block
    xs, ys = _read_like_vnncomp(block)
    np.testing.assert_array_equal(np.array(xs, dtype=np.float32), x.reshape(-1))
    np.testing.assert_array_equal(np.array(ys, dtype=np.float32), y.reshape(-1))
    result = format_result("sat", x, y)
    assert result.splitlines()[0] == "sat" and result.endswith(")\n")
    parsed_x, parsed_y = parse_counterexample(result)
    np.testing.assert_array_equal(parsed_x, xs)
    np.testing.assert_array_equal(parsed_y, ys)
    assert format_result("unsat") == "unsat\n"
    with pytest.raises(ValueError):
        format_result("sat")
    with pytest.raises(ValueError):
        format_counterexample([np.nan], [0.0])


def test_check_counterexample_uses_vnncomp_tolerances():
    text = declarations(2, 2) + """
(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 Y_1))
            (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (>= Y_0 5) (>= Y_1 5))))
"""
    spec = parse_vnnlib(text)
    assert check_counterexample(spec, [0.5, 0.5], [1.0, 2.0]).case == 0
    check = check_counterexample(spec, [2.5, 0.5], [6.0, 7.0])
    assert check and check.case == 1
    assert check_counterexample(spec, [1.00005, 0.5], [1.0, 1.00005])             # within 1e-4
    assert not check_counterexample(spec, [1.00005, 0.5], [1.0, 1.0], tolerance=0.0)
    assert not check_counterexample(spec, [1.0002, 0.5], [1.0, 2.0])               # outside the box
    assert "outside every input box" in check_counterexample(spec, [1.5, 0.5], [1.0, 2.0]).reason
    assert not check_counterexample(spec, [2.5, 0.5], [6.0, 4.0])                 # Y_1 >= 5 fails
    assert not check_counterexample(spec, [0.5, 0.5], [1.0, np.nan])
    assert not check_counterexample(spec, [0.5], [1.0, 2.0])
