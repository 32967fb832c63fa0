"""Hand-computed IBP and CROWN bounds on a 2-input, 2-ReLU network.

    z1 = x1 + x2 + 1,  z2 = x1 - x2,  y = relu(z1) + relu(z2),  x in [-1, 1]^2

Pre-activation bounds: z1 in [-1, 3], z2 in [-2, 2].
IBP: relu(z1) in [0, 3], relu(z2) in [0, 2], so y in [0, 5].
CROWN upper: relu(z1) <= 3/4 (z1 + 1), relu(z2) <= 1/2 (z2 + 2), so
    y <= 1.25 x1 + 0.25 x2 + 2.5  ->  max 4.0.
CROWN lower (adaptive slopes: 1 for z1 since 3 > 1, 0 for z2 since 2 > 2 fails):
    y >= z1 = x1 + x2 + 1  ->  min -1, intersected with IBP's 0 -> 0.
Exact range: [0, 3].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

import verifier
from tests.conftest import TEST_DEVICE
from tests.netutil import make_model
from verifier.bounds.crown import CrownOptions, backward_lower, compute_intermediate_bounds


@pytest.fixture
def network() -> verifier.Network:
    w1 = np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    b1 = np.array([1.0, 0.0], np.float32)
    w2 = np.array([[1.0, 1.0]], np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["z"], transB=1),
        helper.make_node("Relu", ["z"], ["a"]),
        helper.make_node("Gemm", ["a", "w2"], ["y"], transB=1),
    ]
    return verifier.load_onnx(make_model(nodes, [1, 2], [1, 1], {"w1": w1, "b1": b1, "w2": w2})).to(TEST_DEVICE)


def test_ibp_by_hand(network):
    bounds = network.bounds([-1, -1], [1, 1], method="ibp")
    assert bounds.lower.item() == pytest.approx(0.0)
    assert bounds.upper.item() == pytest.approx(5.0)


def test_crown_by_hand(network):
    bounds = network.bounds([-1, -1], [1, 1], method="crown")
    assert bounds.lower.item() == pytest.approx(0.0)
    assert bounds.upper.item() == pytest.approx(4.0)
    inner = network.intermediate_bounds([-1, -1], [1, 1])
    z = network.graph.nodes[0].name
    np.testing.assert_allclose(inner[z][0].cpu().numpy().reshape(-1), [-1.0, -2.0])
    np.testing.assert_allclose(inner[z][1].cpu().numpy().reshape(-1), [3.0, 2.0])


def test_crown_linear_bound_before_intersection(network):
    """The raw CROWN lower bound (before intersecting with IBP) is min(x1 + x2 + 1) = -1."""
    lower = torch.tensor([[[-1.0, -1.0]]], device=TEST_DEVICE)
    upper = torch.tensor([[[1.0, 1.0]]], device=TEST_DEVICE)
    graph = network.graph
    bounds = compute_intermediate_bounds(graph, lower, upper, CrownOptions())
    A = torch.ones(1, 1, 1, 1, device=TEST_DEVICE)
    assert backward_lower(graph, graph.output_name, A, bounds).item() == pytest.approx(-1.0)
    assert -backward_lower(graph, graph.output_name, -A, bounds).item() == pytest.approx(4.0)


def test_spec_matrix_by_hand(network):
    """Bounds on -y are the negated bounds on y."""
    bounds = network.bounds([-1, -1], [1, 1], method="crown", C=[[-1.0]])
    assert bounds.lower.item() == pytest.approx(-4.0)
    assert bounds.upper.item() == pytest.approx(0.0)
