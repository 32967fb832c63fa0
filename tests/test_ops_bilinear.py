"""Products of two variables: Mul, Div and MatMul (McCormick envelopes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from onnx import helper
from operator_checks import (
    assert_backward_sound,
    assert_sound,
    check_parity,
    make_model,
    random_boxes,
    sandwich_model,
)

import verifier
from verifier.ops.bilinear import DivVariables, MatMulVariables, MulVariables


@pytest.mark.parametrize("shapes", [[(2, 3), (2, 3)], [(2, 3), (3,)], [(1, 3), (2, 1)]])
def test_mul_backward_is_sound(shapes):
    for seed, (center, radius) in enumerate(((1.0, 0.1), (0.0, 1.0), (3.0, 5.0))):
        first = random_boxes(shapes[0], 4, center, radius, seed)
        second = random_boxes(shapes[1], 4, center, radius, seed + 7)
        assert_backward_sound(MulVariables(shapes), [first, second], seed=seed)


def test_div_backward_is_sound():
    shapes = [(2, 3), (2, 3)]
    for seed, radius in enumerate((0.1, 0.5, 0.9)):
        first = random_boxes(shapes[0], 4, 1.0, radius * 3, seed)
        positive = random_boxes(shapes[1], 4, 0.0, radius, seed + 3)
        positive = tuple(t + 1.0 for t in positive)  # denominators in (0.1, 1.9)
        negative = tuple(-t for t in reversed(positive))
        for second in (positive, negative):
            assert_backward_sound(DivVariables(shapes), [first, second], seed=seed)


@pytest.mark.parametrize("shapes", [[(2, 3, 4), (2, 4, 5)], [(1, 2, 3, 4), (1, 1, 4, 2)], [(3, 4), (4, 2)]])
def test_matmul_backward_is_sound(shapes):
    for seed, (center, radius) in enumerate(((1.0, 0.1), (0.0, 1.0))):
        first = random_boxes(shapes[0], 3, center, radius, seed)
        second = random_boxes(shapes[1], 3, center, radius, seed + 5)
        assert_backward_sound(MatMulVariables(shapes), [first, second], seed=seed, samples=100)


def test_matmul_interval_contains_products():
    shapes = [(2, 3, 4), (2, 4, 5)]
    op = MatMulVariables(shapes)
    first, second = random_boxes(shapes[0], 3, 0.5, 1.0, 0), random_boxes(shapes[1], 3, 0.5, 1.0, 1)
    lower, upper = op.interval(first, second)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        x = first[0] + torch.rand(first[0].shape, generator=g) * (first[1] - first[0])
        y = second[0] + torch.rand(second[0].shape, generator=g) * (second[1] - second[0])
        z = op.forward(x, y)
        assert (z >= lower - 1e-5).all() and (z <= upper + 1e-5).all()


def _pair(op):
    def nodes(a, b):
        return [helper.make_node("Split", [a, "sizes"], ["P", "Q"], axis=1), helper.make_node(op, ["P", "Q"], [b])]

    return nodes


def _positive_denominator(a, b):
    return [helper.make_node("Split", [a, "sizes"], ["P", "Q"], axis=1), helper.make_node("Sigmoid", ["Q"], ["S"]),
            helper.make_node("Add", ["S", "eps"], ["T"]), helper.make_node("Div", ["P", "T"], [b])]


def _square(a, b):
    return [helper.make_node("Mul", [a, a], [b])]


def _matmul(a, b):
    """H [1, 6] -> [1, 2, 3] and [1, 3, 2] (a transpose of the same values) -> [1, 2, 2] -> [1, 4]."""
    return [helper.make_node("Reshape", [a, "s1"], ["R"]), helper.make_node("Transpose", ["R"], ["T"], perm=[0, 2, 1]),
            helper.make_node("Tanh", ["T"], ["U"]), helper.make_node("MatMul", ["R", "U"], ["M"]),
            helper.make_node("Reshape", ["M", "s2"], [b])]


NETWORK_CASES = {
    "Mul": (_pair("Mul"), {"sizes": np.array([3, 3]), "out_width": 3}),
    "Div": (_positive_denominator, {"sizes": np.array([3, 3]), "eps": np.array(0.1, np.float32), "out_width": 3}),
    "Square": (_square, {}),
    "MatMul": (_matmul, {"s1": np.array([1, 2, 3]), "s2": np.array([1, 4]), "out_width": 4}),
}


@pytest.mark.parametrize("name", list(NETWORK_CASES))
def test_network_bounds_are_sound(name):
    nodes, extra = NETWORK_CASES[name]
    net = check_parity(sandwich_model(nodes, extra=dict(extra)), rtol=1e-4)
    for seed, (center, radius) in enumerate(((1.0, 0.05), (1.0, 0.5), (2.0, 2.0))):
        lower, upper = random_boxes((1, 4), 6, center, radius, seed)
        assert_sound(net, lower, upper)


def test_square_is_converted_to_a_power():
    net = verifier.load_onnx(sandwich_model(_square))
    assert "SelfProduct" in [type(n.op).__name__ for n in net.graph.nodes]


def test_onnxruntime_parity_of_products():
    model = make_model([helper.make_node("Sin", ["X"], ["S"]), helper.make_node("Mul", ["X", "S"], ["P"]),
                        helper.make_node("Cos", ["X"], ["C"]), helper.make_node("Add", ["C", "two"], ["D"]),
                        helper.make_node("Div", ["P", "D"], ["Q"]), helper.make_node("Transpose", ["Q"], ["T"]),
                        helper.make_node("MatMul", ["Q", "T"], ["Y"])], (3, 4), {"two": np.array(2.0, np.float32)})
    net = check_parity(model)
    lower, upper = random_boxes((3, 4), 3, 0.5, 0.3, 0)
    assert_sound(net, lower, upper)
    # a constant divided by a variable: c / x = c * (1 / x)
    c = np.array([1, -2, 3, 0.5], np.float32)
    model = make_model([helper.make_node("Div", ["c", "X"], ["Y"])], (1, 4), {"c": c})
    net = check_parity(model, 0.5, 3)
    assert_sound(net, *random_boxes((1, 4), 3, 1.0, 0.5, 0, center=2.0))


def test_mccormick_by_hand():
    """x in [0, 1], y in [1, 2]: lower plane z >= l_y x + l_x y - l_x l_y = x,
    upper plane z <= u_y x + l_x y - l_x u_y = 2x."""
    op = MulVariables([(1,), (1,)])
    boxes = [(torch.tensor([[0.0]]), torch.tensor([[1.0]])), (torch.tensor([[1.0]]), torch.tensor([[2.0]]))]
    (A_x, A_y), bias = op.backward(torch.tensor([[[1.0], [-1.0]]]), boxes)
    assert A_x.flatten().tolist() == [1.0, -2.0] and A_y.flatten().tolist() == [0.0, 0.0]
    assert bias.flatten().tolist() == [0.0, 0.0]
    model = make_model([helper.make_node("Split", ["X", "s"], ["P", "Q"], axis=1),
                        helper.make_node("Mul", ["P", "Q"], ["Y"])], (1, 2), {"s": np.array([1, 1])})
    net = verifier.load_onnx(model)
    for method in ("ibp", "crown"):
        b = net.bounds(np.array([0.0, 1.0]), np.array([1.0, 2.0]), method=method)
        assert (b.lower.item(), b.upper.item()) == pytest.approx((0.0, 2.0))


def test_division_by_a_box_containing_zero_is_unbounded():
    model = make_model([helper.make_node("Split", ["X", "s"], ["P", "Q"], axis=1),
                        helper.make_node("Div", ["P", "Q"], ["Y"])], (1, 2), {"s": np.array([1, 1])})
    net = verifier.load_onnx(model)
    for method in ("ibp", "crown"):
        b = net.bounds(np.array([1.0, -1.0]), np.array([2.0, 1.0]), method=method)
        assert b.lower.item() == -math.inf and b.upper.item() == math.inf
        b = net.bounds(np.array([1.0, 1.0]), np.array([2.0, 4.0]), method=method)
        assert (b.lower.item(), b.upper.item()) == pytest.approx((0.25, 2.0))
