"""CROWN refines the output of an elementwise nonlinearity only where that can help (stable active ReLUs);
the bounds must be the same as when every neuron is refined."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from operator_checks import conv_sandwich_model, random_boxes

import verifier


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid", "LeakyRelu", "Abs", "Sign"])
def test_skipping_refinement_after_elementwise_ops_loses_nothing(activation):
    def direct(a, b):
        return [helper.make_node("Relu", [a], ["h"]), helper.make_node("Conv", ["h", "W"], ["c"], pads=[1, 1, 1, 1]),
                helper.make_node(activation, ["c"], ["r"]),
                helper.make_node("MaxPool", ["r"], [b], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]

    def through_identity(a, b):  # Mul by 1 hides the producer, so every neuron of r1 is refined
        return [helper.make_node("Relu", [a], ["h"]), helper.make_node("Conv", ["h", "W"], ["c"], pads=[1, 1, 1, 1]),
                helper.make_node(activation, ["c"], ["r"]), helper.make_node("Mul", ["r", "one"], ["r1"]),
                helper.make_node("MaxPool", ["r1"], [b], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]

    weight = np.random.default_rng(0).normal(size=(3, 3, 3, 3)).astype(np.float32) / 3
    one = {"one": np.array(1.0, np.float32), "W": weight}
    fast = verifier.load_onnx(conv_sandwich_model(direct, extra=one))
    full = verifier.load_onnx(conv_sandwich_model(through_identity, extra=one))
    assert len(full.graph.nodes) == len(fast.graph.nodes) + 1
    for seed, radius in enumerate((0.02, 0.3)):
        lower, upper = random_boxes((1, 2, 6, 6), 2, 1.0, radius, seed)
        a, b = fast.bounds(lower, upper, method="crown"), full.bounds(lower, upper, method="crown")
        assert torch.allclose(a.lower, b.lower, rtol=1e-5, atol=1e-5)
        assert torch.allclose(a.upper, b.upper, rtol=1e-5, atol=1e-5)
