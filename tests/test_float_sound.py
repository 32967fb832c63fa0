"""Networks and properties built to defeat floating point: box ends that float32 cannot represent, large
cancelling weights, margins a few ulps from zero. The exact answer is worked out by hand in the reals
(rational arithmetic where it matters). The default path must never answer `unsat` where a counterexample
exists in exact arithmetic; `--float-sound` must never answer `unsat` where its float64 error model cannot
confirm the margin, and still proves well-separated properties.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import verifier
from tests.netutil import make_model
from verifier.complete import VerifyOptions, verify
from verifier.complete.float_sound import rounding_model
from verifier.complete.problem import Problem, round_outward
from verifier.spec import parse_vnnlib

WIDE = 20   # inputs: above the input-split limit, so the float32 ReLU-split path runs


def _gemm_model(w1, b1, w2, b2, n_in) -> bytes:
    from onnx import helper

    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    inits = {"w1": np.asarray(w1, np.float32), "b1": np.asarray(b1, np.float32),
             "w2": np.asarray(w2, np.float32), "b2": np.asarray(b2, np.float32)}
    return make_model(nodes, [1, n_in], [1, 1], inits)


def _box_text(n, lower, upper, output):
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + ["(declare-const Y_0 Real)"]
    for i in range(n):
        lines += [f"(assert (>= X_{i} {lower[i]}))", f"(assert (<= X_{i} {upper[i]}))"]
    return "\n".join(lines + [output]) + "\n"


def _linear_x0(tmp_path, n, scale, offset):
    """``y = scale * x_0 + offset`` through an (active) ReLU pair: relu(x_0) - relu(-x_0) = x_0."""
    w1 = np.zeros((2, n))
    w1[0, 0], w1[1, 0] = 1.0, -1.0
    path = tmp_path / f"lin{n}.onnx"
    path.write_bytes(_gemm_model(w1, [0, 0], [[scale, -scale]], [offset], n))
    return path


@pytest.mark.parametrize("n", [1, WIDE])
@pytest.mark.parametrize("float_sound", [False, True])
def test_box_end_not_representable(tmp_path, n, float_sound):
    """``y = 1e6 x_0 - 1e5`` on ``x_0 in [0.1, 0.3]``, unsafe ``y <= 0``: in the reals ``x_0 = 0.1`` gives 0, a
    counterexample. Rounded to nearest, float32's 0.1 is 0.10000000149 and the bound 1.49 > 0 would "prove"
    the property."""
    path = _linear_x0(tmp_path, n, 1e6, -1e5)
    lower, upper = [0.1] + [0] * (n - 1), [0.3] + [1] * (n - 1)
    prop = tmp_path / "p.vnnlib"
    prop.write_text(_box_text(n, lower, upper, "(assert (<= Y_0 0))"))
    result = verify(str(path), str(prop), timeout=30, options=VerifyOptions(float_sound=float_sound))
    assert result.status != "unsat"


def test_outward_rounding_contains_the_decimal_box():
    lower, upper = np.array([0.1, -0.1, 1 / 3, 2.0]), np.array([0.3, 0.7, 0.5, 2.0])
    lo, hi = round_outward(lower, upper, torch.float32)
    for a, b, l, u in zip(lo.tolist(), hi.tolist(), [Fraction("0.1"), Fraction("-0.1"), Fraction(1, 3), 2],
                          [Fraction("0.3"), Fraction("0.7"), Fraction(1, 2), 2]):
        assert Fraction(a) <= l and Fraction(b) >= u


@pytest.mark.parametrize("float_sound", [False, True])
def test_sum_of_unrepresentable_lower_ends(tmp_path, float_sound):
    """``y = sum_i x_i`` over ``[0.1, 0.2]^20``, unsafe ``y <= 2``: the lower corner gives exactly 2 in the reals
    (a counterexample); float32's 0.1 sums to 2.0000000298."""
    n = WIDE
    w1 = np.eye(n)
    path = tmp_path / "sum.onnx"
    path.write_bytes(_gemm_model(w1, np.zeros(n), np.ones((1, n)), [0.0], n))
    prop = tmp_path / "p.vnnlib"
    prop.write_text(_box_text(n, [0.1] * n, [0.2] * n, "(assert (<= Y_0 2))"))
    result = verify(str(path), str(prop), timeout=30, options=VerifyOptions(float_sound=float_sound))
    assert result.status != "unsat"


@pytest.mark.parametrize("n", [1, WIDE])
@pytest.mark.parametrize("float_sound", [False, True])
def test_large_cancelling_weights(tmp_path, n, float_sound):
    """``y = relu(1e9 x_0 + 1) - relu(1e9 x_0) - 1 - 2^-20 = -2^-20`` for ``x_0 in [0.5, 1]``: every point is a
    counterexample to ``y >= 0`` in the reals (unsafe ``y <= 0``), while float32 loses the +1 next to 1e9."""
    w1 = np.zeros((2, n))
    w1[0, 0] = w1[1, 0] = 1e9
    path = tmp_path / "cancel.onnx"
    path.write_bytes(_gemm_model(w1, [1.0, 0.0], [[1.0, -1.0]], [-1.0 - 2.0 ** -20], n))
    prop = tmp_path / "p.vnnlib"
    prop.write_text(_box_text(n, [0.5] + [0] * (n - 1), [1] * n, "(assert (<= Y_0 0))"))
    result = verify(str(path), str(prop), timeout=30, options=VerifyOptions(float_sound=float_sound))
    assert result.status != "unsat"


@pytest.mark.parametrize("n", [1, WIDE])
def test_margin_below_the_error_model_is_not_proved_float_sound(tmp_path, n):
    """``y = x_0`` on ``[0.5, 1]``, unsafe ``y <= 0.5 - 2^-50``: true in the reals by 2^-50 (unsat), but below
    what float64 with its error terms can confirm: float-sound says ``unknown``; a margin of 2^-10 is proved."""
    path = _linear_x0(tmp_path, n, 1.0, 0.0)
    lower, upper = [0.5] + [0] * (n - 1), [1] * n
    tight = Fraction(1, 2) - Fraction(1, 2 ** 50)
    prop = tmp_path / "tight.vnnlib"
    prop.write_text(_box_text(n, lower, upper, f"(assert (<= Y_0 {float(tight)!r}))"))
    assert Fraction(float(tight)) == tight
    result = verify(str(path), str(prop), timeout=8, options=VerifyOptions(float_sound=True))
    assert result.status != "unsat"      # (unknown, or a timeout on the wide box: never a proof)
    prop.write_text(_box_text(n, lower, upper, f"(assert (<= Y_0 {0.5 - 2.0 ** -10!r}))"))
    result = verify(str(path), str(prop), timeout=30, options=VerifyOptions(float_sound=True))
    assert result.status == "unsat", result.message
    assert 0 < result.stats["float_sound"]["row_error"] < 1e-9


def test_error_model_bounds_observed_float64_error():
    """The model's row error is above the gap between float64 CROWN and an exact rational evaluation of a
    random ReLU network's output at sampled points (a necessary, not sufficient, check)."""
    rng = np.random.default_rng(0)
    layers = [(rng.standard_normal((30, 8)) * 10, rng.standard_normal(30)),
              (rng.standard_normal((30, 30)), rng.standard_normal(30)), (rng.standard_normal((1, 30)), np.zeros(1))]
    from tests.milp import to_torch

    network = verifier.from_torch(to_torch(layers), torch.zeros(1, 8, dtype=torch.float64))
    lower, upper = torch.full((8,), -1.0, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    model = rounding_model(network.graph, lower, upper, torch.ones(1, 1, dtype=torch.float64),
                           torch.zeros(1, dtype=torch.float64))
    for x in rng.uniform(-1, 1, (20, 8)):
        h = [Fraction(v) for v in x]
        for i, (w, b) in enumerate(layers):
            h = [sum((Fraction(wij) * hj for wij, hj in zip(row, h)), Fraction(bi)) for row, bi in zip(w, b)]
            if i < len(layers) - 1:
                h = [max(v, Fraction(0)) for v in h]
        computed = float(network.forward_flat(torch.as_tensor(x).reshape(1, 8))[0, 0])
        assert abs(Fraction(computed) - h[0]) <= Fraction(float(model.row_error[0]))


def test_default_tolerance_and_float_sound_agree_on_shipped_models():
    """No answer changes on the project's own models with float soundness on."""
    for name, prop in [("acasxu_like", "acasxu_like_prop_1"), ("digits_mlp", "digits_mlp_img0_eps0.02")]:
        plain = verify(f"models/{name}.onnx", f"models/{prop}.vnnlib", timeout=60)
        sound = verify(f"models/{name}.onnx", f"models/{prop}.vnnlib", timeout=60,
                       options=VerifyOptions(float_sound=True))
        assert plain.status == sound.status == "unsat"


def test_problem_tolerance_blocks_ulp_margins():
    network = verifier.load_onnx("models/acasxu_like.onnx")
    spec = parse_vnnlib("models/acasxu_like_prop_1.vnnlib", n_inputs=network.input_size,
                        n_outputs=network.output_size)
    problem = Problem.from_group(spec.box_groups()[0], network)
    problem.tolerance = torch.full((problem.rows,), 1e-6)
    lb = torch.full((1, problem.rows), 5e-7)
    assert not problem.refuted(lb).any()
    assert problem.refuted(lb + 1e-6).all()
