"""Piecewise-linear operators: LeakyRelu, PRelu, Clip, Abs, Sign, Max/Min (two variables or a constant)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from operator_checks import (
    assert_backward_sound,
    assert_relaxation,
    assert_sound,
    check_parity,
    make_model,
    random_boxes,
    sandwich_model,
    single_op_model,
)

import verifier
from verifier.ops.piecewise import Abs, Clip, LeakyRelu, MaxVariables, MinVariables, Sign

ELEMENTWISE = {
    "LeakyRelu0.1": (LeakyRelu(0.1), lambda x: torch.where(x >= 0, x, 0.1 * x), [0.0]),
    "LeakyRelu2": (LeakyRelu(2.0), lambda x: torch.where(x >= 0, x, 2.0 * x), [0.0]),
    "LeakyRelu-0.5": (LeakyRelu(-0.5), lambda x: torch.where(x >= 0, x, -0.5 * x), [0.0]),
    "Clip": (Clip(torch.tensor(-1.0), torch.tensor(1.5)), lambda x: x.clamp(-1.0, 1.5), [-1.0, 1.5]),
    "ClipMin": (Clip(torch.tensor(0.5), None), lambda x: x.clamp(min=0.5), [0.5]),
    "ClipMax": (Clip(None, torch.tensor(6.0)), lambda x: x.clamp(max=6.0), [6.0]),
    "Abs": (Abs(), torch.abs, [0.0]),
}


def kink_boxes(kinks, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    lowers, uppers = [], []
    for scale, width in ((3, 0.5), (10, 8.0), (1e4, 1e3)):
        c = scale * (2 * torch.rand(200, generator=g, dtype=torch.float64) - 1)
        w = width * torch.rand(200, generator=g, dtype=torch.float64)
        lowers.append(c - w)
        uppers.append(c + w)
    for k in kinks:  # across each kink, and across all of them
        lowers.append(k - 3 * torch.rand(100, generator=g, dtype=torch.float64))
        uppers.append(k + 3 * torch.rand(100, generator=g, dtype=torch.float64))
    lowers.append(min(kinks) - 2 * torch.rand(100, generator=g, dtype=torch.float64))
    uppers.append(max(kinks) + 2 * torch.rand(100, generator=g, dtype=torch.float64))
    lowers.append(torch.tensor(kinks, dtype=torch.float64))  # degenerate boxes at the kinks
    uppers.append(torch.tensor(kinks, dtype=torch.float64))
    return torch.cat(lowers).to(dtype), torch.cat(uppers).to(dtype)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relaxation_holds_pointwise(name, dtype):
    op, f, kinks = ELEMENTWISE[name]
    lower, upper = kink_boxes(kinks, dtype=dtype)
    assert_relaxation(op, f, lower, upper, extra_points=kinks)


def test_sign_relaxation_holds_with_the_jump():
    lower, upper = kink_boxes([0.0])
    op = Sign()
    r = op.relax(lower, upper)
    # check at the points and just beside 0, where sign jumps
    x = torch.cat([lower.double().unsqueeze(-1) + (upper - lower).double().unsqueeze(-1) * torch.linspace(0, 1, 257,
                   dtype=torch.float64), torch.tensor([-1e-12, 0.0, 1e-12], dtype=torch.float64).expand(len(lower), 3)
                   .clamp(lower.double().unsqueeze(-1), upper.double().unsqueeze(-1))], -1)
    fx = torch.sign(x)
    below = r.lower_slope.double().unsqueeze(-1) * x + r.lower_intercept.double().unsqueeze(-1)
    above = r.upper_slope.double().unsqueeze(-1) * x + r.upper_intercept.double().unsqueeze(-1)
    assert (below <= fx + 1e-6).all() and (above >= fx - 1e-6).all()


def test_interval_is_exact():
    for name, (op, f, kinks) in ELEMENTWISE.items():
        lower, upper = kink_boxes(kinks, dtype=torch.float64)
        out_lower, out_upper = op.interval((lower, upper))
        x = lower.unsqueeze(-1) + (upper - lower).unsqueeze(-1) * torch.linspace(0, 1, 1001, dtype=torch.float64)
        x = torch.cat([x, torch.tensor(kinks, dtype=torch.float64).expand(len(lower), -1)
                       .clamp(lower.unsqueeze(-1), upper.unsqueeze(-1))], -1)
        fx = f(x)
        assert torch.allclose(out_lower, fx.amin(-1), rtol=1e-9, atol=1e-9), name
        assert torch.allclose(out_upper, fx.amax(-1), rtol=1e-9, atol=1e-9), name


def _split_pair(op):
    """H [1, 6] -> Split into P, Q [1, 3] -> op(P, Q)."""

    def nodes(a, b):
        return [helper.make_node("Split", [a, "sizes"], ["P", "Q"], axis=1), helper.make_node(op, ["P", "Q"], [b])]

    return nodes


NETWORK_CASES = {
    "LeakyRelu": (lambda a, b: [helper.make_node("LeakyRelu", [a], [b], alpha=0.1)], {}),
    "PRelu": (lambda a, b: [helper.make_node("PRelu", [a, "slope"], [b])],
              {"slope": np.array([0.1, -0.2, 0.3, 1.5, 0.0, 0.5], np.float32)}),
    "Clip": (lambda a, b: [helper.make_node("Clip", [a, "lo", "hi"], [b])],
             {"lo": np.array(-0.5, np.float32), "hi": np.array(1.0, np.float32)}),
    "Abs": (lambda a, b: [helper.make_node("Abs", [a], [b])], {}),
    "Sign": (lambda a, b: [helper.make_node("Sign", [a], [b])], {}),
    "MaxConst": (lambda a, b: [helper.make_node("Max", [a, "c"], [b])], {"c": np.array(0.3, np.float32)}),
    "Max": (_split_pair("Max"), {"sizes": np.array([3, 3]), "out_width": 3}),
    "Min": (_split_pair("Min"), {"sizes": np.array([3, 3]), "out_width": 3}),
}


@pytest.mark.parametrize("name", list(NETWORK_CASES))
def test_network_bounds_are_sound(name):
    nodes, extra = NETWORK_CASES[name]
    net = check_parity(sandwich_model(nodes, extra=dict(extra)))
    for seed, (center, radius) in enumerate(((1.0, 0.05), (1.0, 0.5), (2.0, 2.0), (1e3, 1e2))):
        lower, upper = random_boxes((1, 4), 6, center, radius, seed)
        assert_sound(net, lower, upper, pgd=name != "Sign", rtol=1e-4)


@pytest.mark.parametrize("cls", [MaxVariables, MinVariables])
def test_max_min_backward_is_sound(cls):
    shapes = [(2, 3), (2, 3)]
    for seed, radius in enumerate((0.1, 1.0, 5.0)):
        lx, ux = random_boxes(shapes[0], 4, 1.0, radius, seed)
        ly, uy = random_boxes(shapes[1], 4, 1.0, radius, seed + 10)
        assert_backward_sound(cls(shapes), [(lx, ux), (ly, uy)], seed=seed)
    # broadcasting: y has shape (3,)
    lx, ux = random_boxes((2, 3), 4, 1.0, 1.0, 3)
    ly, uy = random_boxes((3,), 4, 1.0, 1.0, 4)
    assert_backward_sound(cls([(2, 3), (3,)]), [(lx, ux), (ly, uy)])


@pytest.mark.parametrize(
    "op,constants,attrs",
    [("LeakyRelu", (), {"alpha": 0.2}), ("Abs", (), {}), ("Sign", (), {}),
     ("Clip", (np.array(-1.0, np.float32), np.array(2.0, np.float32)), {}),
     ("PRelu", (np.array([[0.1], [0.5], [2.0]], np.float32),), {}),
     ("Max", (np.array([0.5, -1, 0, 2, 1], np.float32),), {}), ("Min", (np.array(0.5, np.float32),), {})],
)
def test_onnxruntime_parity(op, constants, attrs):
    check_parity(single_op_model(op, (1, 3, 5), constants, **attrs))


def test_clip_before_opset11_uses_attributes():
    check_parity(single_op_model("Clip", (1, 6), (), opset=10, min=-0.5, max=0.5))


def test_max_of_two_variables_parity():
    model = make_model([helper.make_node("Neg", ["X"], ["N"]), helper.make_node("Max", ["X", "N"], ["Y"])], (1, 5))
    net = check_parity(model)
    lower, upper = random_boxes((1, 5), 4, 1.0, 1.0, 0)
    assert_sound(net, lower, upper)  # max(x, -x) = |x|


# -- hand-checked ---------------------------------------------------------------------------------------------
def _lines(op, lo, hi):
    r = op.relax(torch.tensor([lo], dtype=torch.float64), torch.tensor([hi], dtype=torch.float64))
    return [round(t.item(), 9) for t in (r.lower_slope, r.lower_intercept, r.upper_slope, r.upper_intercept)]


def test_relaxations_by_hand():
    # LeakyRelu(0.1) on [-1, 3]: chord above from (-1, -0.1) to (3, 3); below the slope-1 line (u > -l)
    assert _lines(LeakyRelu(0.1), -1, 3) == pytest.approx([1.0, 0.0, 0.775, 0.675], abs=1e-9)
    # |x| on [-1, 3]: chord 0.5 x + 1.5 above, x below
    assert _lines(Abs(), -1, 3) == pytest.approx([1.0, 0.0, 0.5, 1.5], abs=1e-9)
    # clip(x, 0, 1) on [-1, 2]: both lines have the chord slope 1/3: x/3 below, x/3 + 2/3 above
    clip = Clip(torch.tensor(0.0), torch.tensor(1.0))
    assert _lines(clip, -1, 2) == pytest.approx([1 / 3, 0, 1 / 3, 2 / 3], abs=1e-9)
    # sign on [-1, 2]: below the line from (0, -1) to (2, 1), above the constant 1 (less area than 2x + 1)
    assert _lines(Sign(), -1, 2) == pytest.approx([1.0, -1.0, 0.0, 1.0], abs=1e-9)
    # and mirrored on [-2, 1]: below the constant -1, above the line from (-2, -1) to (0, 1)
    assert _lines(Sign(), -2, 1) == pytest.approx([0.0, -1.0, 1.0, 1.0], abs=1e-9)


def test_max_relaxation_by_hand():
    """max(x, y), x in [0, 1], y in [0.5, 2]: x - y in [-2, 0.5], s = 0.5 / 2.5 = 0.2:
    upper 0.2 x + 0.8 y + 0.4, lower y (y's box has the larger midpoint)."""
    op = MaxVariables([(1,), (1,)])
    boxes = [(torch.tensor([[0.0]]), torch.tensor([[1.0]])), (torch.tensor([[0.5]]), torch.tensor([[2.0]]))]
    A = torch.tensor([[[1.0], [-1.0]]])  # rows: lower bound of y, lower bound of -y
    (A_x, A_y), bias = op.backward(A, boxes)
    assert A_x.flatten().tolist() == pytest.approx([0.0, -0.2])
    assert A_y.flatten().tolist() == pytest.approx([1.0, -0.8])
    assert bias.flatten().tolist() == pytest.approx([0.0, -0.4])


def test_max_network_bound_by_hand():
    model = make_model([helper.make_node("Split", ["X", "s"], ["P", "Q"], axis=1),
                        helper.make_node("Max", ["P", "Q"], ["Y"])], (1, 2), {"s": np.array([1, 1])})
    net = verifier.load_onnx(model)
    b = net.bounds(np.array([0.0, 0.5]), np.array([1.0, 2.0]), method="crown")
    assert b.lower.item() == pytest.approx(0.5) and b.upper.item() == pytest.approx(2.0)
