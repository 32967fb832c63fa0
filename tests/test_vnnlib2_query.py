"""VNN-LIB 2.0 queries: reading (the standard's parser), the semantics of assertions, and the lowering to cases.

Checked against things we did not write: the ``vnnlib`` package's type checker for what is accepted, exact
rational arithmetic (``fractions``) and NumPy's IEEE float32/float16 arithmetic for the semantics, and
brute-force enumeration of float32 values for the strict-comparison conversions.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("vnnlib")

from verifier.errors import SpecError  # noqa: E402
from verifier.spec import parse_vnnlib  # noqa: E402
from verifier.spec.lowering import ElementFeature, ExpressionFeature, MonomialFeature, lower_query  # noqa: E402
from verifier.spec.query import compare, evaluate, round_to_type, satisfies  # noqa: E402
from verifier.spec.vnnlib2 import parse_query, vnnlib_version  # noqa: E402

HEADER = "(vnnlib-version <2.0>)\n"


def net(*lines: str, name: str = "N") -> str:
    return f"(declare-network {name}\n" + "\n".join(f"    {line}" for line in lines) + "\n)\n"


SIMPLE = HEADER + net("(declare-input X float32 [2])", "(declare-output Y float32 [1])")


def test_version_header_selects_the_reader():
    assert vnnlib_version("; a comment\n  (vnnlib-version <2.0>)\n(declare-network") == (2, 0)
    assert vnnlib_version("(declare-const X_0 Real)") is None
    with pytest.raises(SpecError, match="VNN-LIB 2.0 query"):
        parse_vnnlib(SIMPLE + "(assert (>= X[0] 0.0))")


def test_declarations_positions_and_types():
    query = parse_query(HEADER + net("(declare-input X float32 [1,3])",
                                     '(declare-hidden H float16 [2] "inner")',
                                     "(declare-output Y real [1])")
                        + "(assert (<= X[0,2] 1.0))")
    x, h, y = query.variables
    assert (x.kind, x.element_type, x.shape, x.size) == ("input", "float32", (1, 3), 3)
    assert (h.kind, h.onnx_name, h.element_type) == ("hidden", "inner", "float16")
    assert (y.kind, y.element_type) == ("output", "real")
    assert str(x.position) == "3:5" and str(h.position) == "4:5"
    comparison = query.assertions[0]
    assert comparison.op == "<=" and comparison.left.flat == 2 and str(comparison.position) == "7:13"


@pytest.mark.parametrize("body, where, words", [
    ("(assert (>= Z[0] 1.0))", ":6:13:", "undeclared"),
    ("(assert (>= X[2] 1.0))", ":6:13:", "out of bounds"),
    ("(assert (>= X[0] 1))", ":6:18:", "type mismatch"),
    ("(assert (>= X[0] Y[0] 1.0))", ":6:23:", "syntax error"),
    ("(assert (>= X[0,0] 1.0))", ":6:13:", "too many indices"),
])
def test_bad_queries_are_one_line_with_line_and_column(body, where, words):
    with pytest.raises(SpecError) as error:
        parse_query(SIMPLE + body, name="q.vnnlib")
    message = str(error.value)
    assert message.startswith("q.vnnlib" + where) and words in message.lower() and "\n" not in message


def test_isomorphic_networks_may_use_other_element_types():
    text = HEADER + net("(declare-input X float32 [1])", "(declare-output Y float32 [1])", name="A") + \
        net("(isomorphic-to A)", "(declare-input U float16 [1])", "(declare-output V float16 [1])", name="B")
    query = parse_query(text + "(assert (<= V[0] 0.5))")
    assert [v.element_type for v in query.variables] == ["float32", "float32", "float16", "float16"]
    assert query.networks[1].isomorphic_to == "A"
    with pytest.raises(SpecError, match=r":\d+:\d+: type mismatch: U is float16 but X is float32"):
        parse_query(text + "(assert (<= X[0] U[0]))")
    with pytest.raises(SpecError, match="shape"):  # shapes must still agree
        parse_query(text.replace("U float16 [1]", "U float16 [2]") + "(assert (<= V[0] 0.5))")


def test_round_to_type_is_nearest_with_ties_to_even():
    rng = np.random.default_rng(0)
    for _ in range(300):
        value = Fraction(int(rng.integers(-10**12, 10**12)), int(rng.integers(1, 10**9)))
        for name, kind in (("float32", np.float32), ("float16", np.float16)):
            got = round_to_type(value, name)
            assert isinstance(got, kind)
            if not np.isfinite(got):  # beyond the largest value plus half a unit: overflow to infinity
                assert abs(value) >= Fraction(float(np.finfo(kind).max)) and np.sign(got) == np.sign(value)
                continue
            for neighbour in (np.nextafter(got, kind(np.inf)), np.nextafter(got, kind(-np.inf))):
                if np.isfinite(neighbour):
                    assert abs(Fraction(float(got)) - value) <= abs(Fraction(float(neighbour)) - value)
    # 1 + 2^-24 is halfway between 1 and the next float32: ties go to the even one, 1
    assert round_to_type(Fraction(1) + Fraction(1, 2**24), "float32") == np.float32(1.0)
    assert round_to_type(Fraction(1) + Fraction(3, 2**24), "float32") == np.float32(1 + 2**-22)
    assert round_to_type(Fraction(7, 3), "real") == Fraction(7, 3)
    assert round_to_type(Fraction(-4), "int64") == -4


def test_assertions_are_evaluated_in_their_element_type():
    query = parse_query(SIMPLE + "(assert (== (+ X[0] X[1]) 1.0))")
    # in float32, 1 + 2^-25 rounds to 1 (exact arithmetic would say the sum is not 1)
    values = {"X": np.array([1.0, 2**-25], dtype=np.float32), "Y": np.zeros(1, dtype=np.float32)}
    assert satisfies(query, values)
    real = parse_query(SIMPLE.replace("float32", "real") + "(assert (== (+ X[0] X[1]) 1.0))")
    assert not satisfies(real, {"X": np.array([1.0, 2**-25]), "Y": np.zeros(1)})
    # constants are rounded to the type: 0.1 in float32 is 0.100000001490116...
    tenth = parse_query(SIMPLE + "(assert (> X[0] 0.1))")
    assert not evaluate(tenth.assertions[0], {"X": np.array([0.1, 0], dtype=np.float32)})
    assert evaluate(tenth.assertions[0], {"X": np.array([np.nextafter(np.float32(0.1), np.float32(1)), 0],
                                                        dtype=np.float32)})


def test_strict_comparisons_and_nan():
    assert compare("<", np.float32(1), np.float32(1)) is False and compare("<=", np.float32(1), np.float32(1))
    nan = np.float32("nan")
    assert [compare(op, nan, np.float32(0)) for op in ("<=", "<", ">=", ">", "==", "!=")] == [False] * 5 + [True]


def _lower(text: str):
    return lower_query(parse_query(text))


def test_float32_bounds_follow_the_type():
    lowered = _lower(SIMPLE + "(assert (>= X[0] 0.1)) (assert (< X[0] 0.5)) (assert (> X[1] -1.0)) "
                              "(assert (<= X[1] 1.0)) (assert (>= Y[0] 2.0))")
    case, = lowered.specification.cases
    assert case.lower[0] == float(np.float32(0.1))                                   # the constant in float32
    assert case.upper[0] == float(np.nextafter(np.float32(0.5), np.float32(0)))      # x < 0.5: x <= pred(0.5)
    assert case.lower[1] == float(np.nextafter(np.float32(-1), np.float32(0)))       # x > -1: x >= succ(-1)
    assert case.strict is None and case.C.tolist() == [[-1.0]] and case.d.tolist() == [-2.0]


def test_real_bounds_round_outward_and_strict_real_rows_stay_strict():
    text = SIMPLE.replace("float32", "real")
    lowered = _lower(text + "(assert (>= X[0] 0.1)) (assert (<= X[0] 0.3)) (assert (> X[1] 0.0)) "
                            "(assert (<= X[1] 1.0)) (assert (< Y[0] 0.7))")
    case, = lowered.specification.cases
    assert Fraction(case.lower[0]) <= Fraction(1, 10) and Fraction(case.upper[0]) >= Fraction(3, 10)
    assert case.lower[1] == 0.0                                  # the closure of X[1] > 0 as the box ...
    labels = [f.label for f in lowered.features]
    assert labels == ["X[1]", "Y[0]"]                            # ... and the strict row over X[1]
    assert case.strict.tolist() == [True, True]
    y_row = int(np.flatnonzero(case.C[:, labels.index("Y[0]")])[0])
    assert Fraction(case.d[y_row]) >= Fraction(7, 10)           # the right-hand side rounded up


def test_equalities_disequalities_and_disjunctions_become_cases():
    lowered = _lower(SIMPLE + "(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0))) "
                              "(assert (or (== Y[0] 1.0) (!= Y[0] X[0])))")
    spec = lowered.specification
    assert len(spec.cases) == 3
    equal, below, above = spec.cases
    assert equal.C.shape[0] == 2 and equal.strict is None                 # Y <= 1 and -Y <= -1
    assert below.strict.tolist() == [True] and above.strict.tolist() == [True]
    assert {f.label for f in lowered.features} == {"Y[0]", "X[0]"}


def test_integer_strict_comparisons_become_non_strict():
    text = HEADER + net("(declare-input X float32 [1])", "(declare-output K int64 [1])")
    case, = _lower(text + "(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (> K[0] 3))").specification.cases
    assert case.strict is None and case.C.tolist() == [[-1.0]] and case.d.tolist() == [-4.0]   # K >= 4


def test_floating_expressions_and_products_are_features():
    lowered = _lower(SIMPLE + "(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (>= X[1] 0.0)) "
                              "(assert (<= X[1] 1.0)) (assert (>= (+ (* 0.5 X[0]) X[1]) (* Y[0] Y[0])))")
    features = lowered.features
    assert len(features) == 2 and all(isinstance(f, ExpressionFeature) for f in features)
    real = _lower(SIMPLE.replace("float32", "real") + "(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) "
                  "(assert (>= X[1] 0.0)) (assert (<= X[1] 1.0)) (assert (>= (+ (* 0.5 X[0]) X[1]) (* Y[0] Y[0])))")
    kinds = sorted(type(f).__name__ for f in real.features)
    assert kinds == ["ElementFeature", "ElementFeature", "MonomialFeature"]
    case, = real.specification.cases
    row = dict(zip([f.label for f in real.features], case.C[0]))
    assert row == {"X[0]": -0.5, "X[1]": -1.0, "Y[0]*Y[0]": 1.0} and case.d.tolist() == [0.0]
    assert isinstance(real.features[0], (ElementFeature, MonomialFeature))


def test_polytope_inputs_are_bounded_by_linear_programming():
    text = SIMPLE.replace("float32", "real")
    lowered = _lower(text + "(assert (>= X[0] 0.0)) (assert (>= X[1] 0.0)) (assert (<= (+ X[0] X[1]) 2.0)) "
                            "(assert (>= Y[0] 1.0))")
    case, = lowered.specification.cases
    assert case.lower.tolist() == [0.0, 0.0]
    np.testing.assert_allclose(case.upper, [2.0, 2.0], rtol=1e-6)
    assert (case.upper >= 2.0).all()                     # rounded outward
    assert not lowered.unbounded_inputs
    labels = [f.label for f in lowered.features]
    assert "X[0]" in labels and "X[1]" in labels         # the constraint stays a row over the inputs


def test_unbounded_inputs_get_the_type_range_and_are_recorded():
    lowered = _lower(SIMPLE + "(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (>= Y[0] 1.0))")
    case, = lowered.specification.cases
    assert case.lower[1] == -float(np.finfo(np.float32).max) and case.upper[1] == float(np.finfo(np.float32).max)
    assert lowered.unbounded_inputs == ["X"]


def test_input_layout_follows_declarations():
    text = HEADER + net("(declare-input A float32 [2])", "(declare-input B float32 [1,2])",
                        "(declare-output Y float32 [1])", name="F") + \
        net("(declare-input C float32 [1])", "(declare-output Z float32 [1])", name="G")
    box = " ".join(f"(assert (>= {v} {lo}.0)) (assert (<= {v} {lo + 1}.0))"
                   for v, lo in (("A[0]", 0), ("A[1]", 1), ("B[0,0]", 2), ("B[0,1]", 3), ("C[0]", 4)))
    lowered = _lower(text + box + " (assert (<= Y[0] Z[0]))")
    assert [(v.name, o) for v, o in lowered.inputs] == [("A", 0), ("B", 2), ("C", 4)]
    case, = lowered.specification.cases
    assert case.lower.tolist() == [0, 1, 2, 3, 4] and case.upper.tolist() == [1, 2, 3, 4, 5]


def test_strict_rows_are_refuted_by_a_zero_margin_and_stay_with_their_cases():
    import torch

    from verifier.complete.problem import Problem
    from verifier.spec.specification import Case, Specification

    box = (np.zeros(1), np.ones(1))
    strict = Case(*box, np.array([[1.0]]), np.array([0.0]), np.array([True]))
    loose = Case(*box, np.array([[1.0], [-1.0]]), np.array([0.0, 1.0]))
    group, = Specification(1, 1, (strict, loose)).box_groups()
    assert group.strict.tolist() == [True, False, False]

    class Net:
        dtype, input_shape, output_size = torch.float64, (1,), 1

    problem = Problem.from_group(group, Net())
    margins = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1e-9, -1.0], [-1e-12, 0.0, -1.0]], dtype=torch.float64)
    # y < 0 is refuted by y >= 0; y <= 0 needs y > 0
    assert problem.refuted(margins).tolist() == [[True, False], [True, True], [False, False]]
    kept, rows = problem.restrict(torch.tensor([False, True]))
    assert kept.strict.tolist() == [False, False] and rows.tolist() == [False, True, True]


def test_inputs_declared_equal_share_one_position():
    text = HEADER + net("(declare-input X real [2])", "(declare-output Y real [1])", name="F") + \
        net("(equal-to F)", "(declare-input U real [2])", "(declare-output V real [1])", name="G")
    lowered = _lower(text + "(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))\n"
                            "(assert (and (>= U[0] 0.5) (<= U[0] 2.0) (== U[1] X[1]) (== X[0] U[0])))\n"
                            "(assert (> V[0] Y[0]))")
    assert lowered.aliases.tolist() == [0, 1, 0, 1]
    assert lowered.input_indices(lowered.query.inputs[1]).tolist() == [0, 1]
    case, = lowered.specification.cases
    assert case.lower.tolist() == [0.5, 0.0, 0.0, 0.0] and case.upper.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert [f.label for f in lowered.features] == ["V[0]", "Y[0]"]      # the equalities left no rows
    assert not lowered.unbounded_inputs
    # an equality inside a disjunction holds in some cases only: it stays a pair of rows
    other = _lower(text + "(assert (and (>= X[0] 0.0) (<= X[0] 1.0) (>= X[1] 0.0) (<= X[1] 1.0)))\n"
                          "(assert (and (>= U[0] 0.5) (<= U[0] 2.0) (>= U[1] 0.0) (<= U[1] 1.0)))\n"
                          "(assert (or (== U[1] X[1]) (> V[0] Y[0])))")
    assert other.aliases.tolist() == [0, 1, 2, 3] and len(other.specification.cases) == 2
