"""Smooth elementwise operators: Exp, Log, Sqrt, Reciprocal, Pow, Softplus, Sin, Cos, Erf, GELU.

Per operator: onnxruntime parity on a one-node model; the relaxation checked pointwise on many boxes
(narrow, wide, across inflections, degenerate, far from 0); IBP and CROWN bounds of a network with the
operator between two dense layers checked by sampling and PGD; one bound computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from operator_checks import (
    assert_relaxation,
    assert_sound,
    check_parity,
    make_model,
    random_boxes,
    sandwich_model,
    single_op_model,
)

import verifier
from verifier.ops.nonconvex import Cos, Erf, Gelu, Sin
from verifier.ops.smooth import Exp, Log, Power, Reciprocal, Softplus, Sqrt

# name, operator, reference function (float64), domain ("real" or "positive"), special points
SMOOTH = {
    "Exp": (Exp(), torch.exp, "real", [0.0]),
    "Log": (Log(), torch.log, "positive", [1.0]),
    "Sqrt": (Sqrt(), torch.sqrt, "positive", [0.0]),
    "Reciprocal": (Reciprocal(), torch.reciprocal, "positive", [1.0]),
    "Softplus": (Softplus(), lambda x: torch.logaddexp(x, torch.zeros_like(x)), "real", [0.0]),
    "Sin": (Sin(), torch.sin, "real", [0.0, math.pi / 2, math.pi, -math.pi / 2]),
    "Cos": (Cos(), torch.cos, "real", [0.0, math.pi / 2, math.pi, -math.pi / 2]),
    "Erf": (Erf(), torch.erf, "real", [0.0]),
    "Gelu": (Gelu(), F.gelu, "real", [0.0, -math.sqrt(2), math.sqrt(2), -0.75]),
    "Pow2": (Power(2.0), lambda x: x**2, "real", [0.0]),
    "Pow3": (Power(3.0), lambda x: x**3, "real", [0.0]),
    "Pow4": (Power(4.0), lambda x: x**4, "real", [0.0]),
    "Pow1.5": (Power(1.5), lambda x: x**1.5, "positive", [0.0]),
    "Pow0.3": (Power(0.3), lambda x: x**0.3, "positive", [0.0]),
    "Pow-2": (Power(-2.0), lambda x: x**-2.0, "positive", [1.0]),
    "Pow-0.5": (Power(-0.5), lambda x: x**-0.5, "positive", [1.0]),
}


def box_family(domain: str, special: list[float], seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, ...]:
    """1-D lower/upper tensors of many boxes: narrow, medium, wide, across special points, degenerate, far."""
    g = torch.Generator().manual_seed(seed)

    def u(n, a, b):
        return a + (b - a) * torch.rand(n, generator=g, dtype=torch.float64)

    lowers, uppers = [], []
    if domain == "real":
        for scale, (wa, wb) in ((5, (1e-6, 0.1)), (5, (0.1, 5)), (20, (5, 60)), (300, (0.5, 3))):
            c, w = u(200, -scale, scale), u(200, wa, wb)
            lowers.append(c - w / 2)
            uppers.append(c + w / 2)
        for p in special:
            lowers.append(p - u(100, 0, 4))
            uppers.append(p + u(100, 0, 4))
        c = u(20, -5, 5)
        lowers.append(c)
        uppers.append(c)
    else:
        for low_exp, (wa, wb) in ((-6, (1e-6, 0.1)), (-2, (0.1, 5)), (0, (5, 100))):
            lo = 10 ** u(200, low_exp, 1)
            lowers.append(lo)
            uppers.append(lo + u(200, wa, wb))
        for p in special:
            lo = p * u(100, 0, 1)
            lowers.append(lo)
            uppers.append(p + u(100, 0, 4))
        c = u(20, 0.01, 5)
        lowers.append(c)
        uppers.append(c)
    lower, upper = torch.cat(lowers).to(dtype), torch.cat(uppers).to(dtype)
    return lower, torch.maximum(lower, upper)


@pytest.mark.parametrize("name", list(SMOOTH))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relaxation_holds_pointwise(name, dtype):
    op, f, domain, special = SMOOTH[name]
    lower, upper = box_family(domain, special, dtype=dtype)
    if domain == "positive" and name in ("Log", "Reciprocal", "Pow-2", "Pow-0.5"):
        lower = lower.clamp(min=1e-6)  # where the function is bounded; the pole is tested separately
    assert_relaxation(op, f, lower, upper, extra_points=special, rtol=1e-5 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize("name", list(SMOOTH))
def test_interval_is_the_exact_range(name):
    op, f, domain, special = SMOOTH[name]
    lower, upper = box_family(domain, special, dtype=torch.float64)
    if domain == "positive":
        lower = lower.clamp(min=1e-6)
    out_lower, out_upper = op.interval((lower, upper))
    x = lower.unsqueeze(-1) + (upper - lower).unsqueeze(-1) * torch.linspace(0, 1, 2001, dtype=torch.float64)
    fx = f(x)
    assert (out_lower <= fx.amin(-1) + 1e-9 * (1 + fx.abs().amax(-1))).all()
    assert (out_upper >= fx.amax(-1) - 1e-9 * (1 + fx.abs().amax(-1))).all()
    # and it is tight: the grid comes within a grid step of each end
    span = (out_upper - out_lower).clamp(min=1e-12)
    narrow = (upper - lower) < 1
    assert ((fx.amin(-1) - out_lower)[narrow] <= 1e-2 * span[narrow] + 1e-9).all()


def test_relaxation_gets_tighter_as_the_box_shrinks():
    """What branch and bound needs: the gap between the lines shrinks with the box."""
    for name in ("Exp", "Sin", "Gelu", "Erf", "Pow3", "Log"):
        op, f, domain, _ = SMOOTH[name]
        center = torch.tensor([0.3, 1.7, 2.5], dtype=torch.float64)
        gaps = []
        for radius in (1.0, 0.1, 0.01):
            r = op.relax(center - radius, center + radius)
            mid = center
            gaps.append(((r.upper_slope - r.lower_slope) * mid + r.upper_intercept - r.lower_intercept).max())
        assert gaps[0] > gaps[1] > gaps[2], (name, gaps)
        assert gaps[2] < 1e-3


def _positive_ops(op: str, inputs: tuple[str, ...] = ()):
    """Sigmoid(H) + 0.05 -> op: keeps the operator on its domain inside a network."""

    def nodes(a, b):
        return [helper.make_node("Sigmoid", [a], ["S"]), helper.make_node("Add", ["S", "eps"], ["T"]),
                helper.make_node(op, ["T", *inputs], [b])]

    return nodes


EPS = {"eps": np.array(0.05, np.float32)}


NETWORK_CASES = {
    "Exp": (lambda a, b: [helper.make_node("Exp", [a], [b])], {}),
    "Softplus": (lambda a, b: [helper.make_node("Softplus", [a], [b])], {}),
    "Sin": (lambda a, b: [helper.make_node("Sin", [a], [b])], {}),
    "Cos": (lambda a, b: [helper.make_node("Cos", [a], [b])], {}),
    "Erf": (lambda a, b: [helper.make_node("Erf", [a], [b])], {}),
    "Pow3": (lambda a, b: [helper.make_node("Pow", [a, "p"], [b])], {"p": np.array(3.0, np.float32)}),
    "Pow2": (lambda a, b: [helper.make_node("Pow", [a, "p"], [b])], {"p": np.array(2.0, np.float32)}),
    "Log": (_positive_ops("Log"), EPS),
    "Sqrt": (_positive_ops("Sqrt"), EPS),
    "Reciprocal": (_positive_ops("Reciprocal"), EPS),
    "Pow-1.5": (_positive_ops("Pow", ("p",)), {**EPS, "p": np.array(-1.5, np.float32)}),
}


@pytest.mark.parametrize("name", list(NETWORK_CASES))
def test_network_bounds_are_sound(name):
    nodes, extra = NETWORK_CASES[name]
    model = sandwich_model(nodes, extra=dict(extra))
    net = check_parity(model, rtol=1e-4)
    for seed, (center, radius) in enumerate(((1.0, 0.05), (1.0, 0.5), (2.0, 2.0))):
        lower, upper = random_boxes((1, 4), 6, center, radius, seed)
        results = assert_sound(net, lower, upper)
    assert (results["crown"].upper - results["crown"].lower <= results["ibp"].upper - results["ibp"].lower + 1e-5).all()


def test_gelu_erf_pattern_is_fused_and_sound():
    """The ONNX export of exact GELU (Div, Erf, Add, Mul, Mul) becomes one Gelu node."""

    def nodes(a, b):
        return [helper.make_node("Div", [a, "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
                helper.make_node("Add", ["e", "one"], ["t"]), helper.make_node("Mul", [a, "t"], ["m"]),
                helper.make_node("Mul", ["m", "half"], [b])]

    extra = {"sqrt2": np.array(math.sqrt(2), np.float32), "one": np.array(1.0, np.float32),
             "half": np.array(0.5, np.float32)}
    net = check_parity(sandwich_model(nodes, extra=extra))
    ops = [type(node.op).__name__ for node in net.graph.nodes]
    assert "Gelu" in ops and "MulVariables" not in ops and "Erf" not in ops
    lower, upper = random_boxes((1, 4), 6, 1.0, 0.5, 0)
    assert_sound(net, lower, upper)


@pytest.mark.parametrize(
    "op,constants,low,high",
    [("Exp", (), -3, 3), ("Log", (), 0.01, 5), ("Sqrt", (), 0, 5), ("Reciprocal", (), 0.1, 5),
     ("Reciprocal", (), -5, -0.1), ("Softplus", (), -30, 30), ("Sin", (), -10, 10), ("Cos", (), -10, 10),
     ("Erf", (), -3, 3), ("Pow", (np.array(3.0, np.float32),), -3, 3), ("Pow", (np.array(0.5, np.float32),), 0, 4),
     ("Pow", (np.array(-2.0, np.float32),), 0.1, 3)],
)
def test_onnxruntime_parity(op, constants, low, high):
    check_parity(single_op_model(op, (1, 3, 5), constants), low, high)


def test_gelu_onnxruntime_parity_opset20():
    check_parity(single_op_model("Gelu", (1, 7), (), opset=20))


def test_pow_with_constant_base_is_an_exponential():
    model = make_model([helper.make_node("Pow", ["c", "X"], ["Y"])], (1, 4), {"c": np.array(2.0, np.float32)})
    net = check_parity(model)
    lower, upper = random_boxes((1, 4), 4, 1.0, 1.0, 0)
    assert_sound(net, lower, upper)


# -- hand-checked bounds -------------------------------------------------------------------------------------
def test_exp_relaxation_by_hand():
    """exp on [0, 1]: chord above (slope e - 1, intercept 1), tangent at 1/2 below."""
    r = Exp().relax(torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
    assert r.upper_slope.item() == pytest.approx(math.e - 1, rel=1e-12)
    assert r.upper_intercept.item() == pytest.approx(1.0, rel=1e-12)
    assert r.lower_slope.item() == pytest.approx(math.exp(0.5), rel=1e-12)
    assert r.lower_intercept.item() == pytest.approx(math.exp(0.5) * 0.5, rel=1e-12)


def test_log_relaxation_by_hand():
    """log on [1, e]: chord below (slope 1/(e-1), through (1, 0)), midpoint tangent above."""
    r = Log().relax(torch.tensor([1.0], dtype=torch.float64), torch.tensor([math.e], dtype=torch.float64))
    m = (1 + math.e) / 2
    assert r.lower_slope.item() == pytest.approx(1 / (math.e - 1), rel=1e-12)
    assert r.lower_intercept.item() == pytest.approx(-1 / (math.e - 1), rel=1e-12)
    assert r.upper_slope.item() == pytest.approx(1 / m, rel=1e-12)
    assert r.upper_intercept.item() == pytest.approx(math.log(m) - 1, rel=1e-12)


def test_sin_band_on_wide_boxes_and_exact_range():
    lower = torch.tensor([0.0, -10.0, 0.0], dtype=torch.float64)
    upper = torch.tensor([math.pi, 10.0, math.pi / 2], dtype=torch.float64)
    out_lower, out_upper = Sin().interval((lower, upper))
    assert out_lower.tolist() == pytest.approx([0.0, -1.0, 0.0], abs=1e-12)
    assert out_upper.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    r = Sin().relax(lower, upper)
    assert r.lower_slope[1].item() == 0 and r.upper_intercept[1].item() == 1 and r.lower_intercept[1].item() == -1
    # on [0, pi/2] sin is concave: the chord (slope 2/pi through 0) is the lower line
    assert r.lower_slope[2].item() == pytest.approx(2 / math.pi, rel=1e-12)
    assert r.lower_intercept[2].item() == pytest.approx(0.0, abs=1e-12)


def test_network_bound_by_hand():
    """Y = exp(X) on X in [0, 1]: IBP and CROWN both give exactly [1, e]."""
    net = verifier.load_onnx(single_op_model("Exp", (1, 1)))
    for method in ("ibp", "crown"):
        bounds = net.bounds(np.zeros(1), np.ones(1), method=method)
        assert bounds.lower.item() == pytest.approx(1.0, rel=1e-6)
        assert bounds.upper.item() == pytest.approx(math.e, rel=1e-6)


# -- extremes and poles -----------------------------------------------------------------------------------------
def test_extreme_boxes_give_no_nan():
    net = verifier.load_onnx(single_op_model("Exp", (1, 4)))
    lower = torch.tensor([[-1e4, -100.0, 50.0, 80.0]])
    upper = torch.tensor([[1e4, 80.0, 60.0, 200.0]])
    for method in ("ibp", "crown"):
        b = net.bounds(lower, upper, method=method)
        assert not torch.isnan(b.lower).any() and not torch.isnan(b.upper).any()
        assert torch.isfinite(b.upper[0, 1:3]).all()  # e^80 fits in float32
        assert torch.isinf(b.upper[0, 3])  # e^200 does not
    sin = verifier.load_onnx(single_op_model("Sin", (1, 2)))
    b = sin.bounds(torch.tensor([[-1e30, 1e6]]), torch.tensor([[1e30, 1e6 + 1]]), method="crown")
    assert torch.isfinite(b.lower).all() and (b.lower >= -1).all() and (b.upper <= 1).all()


def test_poles_give_infinite_bounds_not_nan():
    net = verifier.load_onnx(single_op_model("Reciprocal", (1, 3)))
    lower, upper = torch.tensor([[-1.0, 0.0, 0.5]]), torch.tensor([[1.0, 1.0, 2.0]])
    for method in ("ibp", "crown"):
        b = net.bounds(lower, upper, method=method)
        assert not torch.isnan(b.lower).any() and not torch.isnan(b.upper).any()
        assert b.lower[0, 0] == -math.inf and b.upper[0, 0] == math.inf and b.upper[0, 1] == math.inf
        assert b.lower[0, 2].item() == pytest.approx(0.5) and b.upper[0, 2].item() == pytest.approx(2.0)
    log = verifier.load_onnx(single_op_model("Log", (1, 2)))
    b = log.bounds(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]]), method="crown")
    assert b.lower[0, 0] == -math.inf and torch.isfinite(b.lower[0, 1]) and not torch.isnan(b.upper).any()


@pytest.mark.parametrize("p", [2.0, 3.0, 5.0, -1.0, -2.0, -3.0])
def test_integer_powers_on_negative_and_mixed_boxes(p):
    g = torch.Generator().manual_seed(0)
    lower = -10 ** (3 * torch.rand(300, generator=g, dtype=torch.float64) - 1)
    upper = lower + 3 * torch.rand(300, generator=g, dtype=torch.float64)
    if p < 0:
        upper = torch.minimum(upper, lower / 2)  # stay left of the pole
    op = Power(p)
    assert_relaxation(op, lambda x: x**p, lower, upper, extra_points=[0.0], rtol=1e-9)
    if p < 0:  # across the pole: infinite bounds, never NaN
        r = op.relax(torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 0.0]))
        assert r.upper_intercept[0] == math.inf and not torch.isnan(r.upper_slope).any()
        out_lower, out_upper = op.interval((torch.tensor([-1.0]), torch.tensor([1.0])))
        assert out_upper.item() == math.inf and (out_lower.item() == -math.inf) == (int(p) % 2 == 1)
