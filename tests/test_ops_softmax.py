"""Softmax and LogSoftmax: classifier outputs and attention blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from onnx import helper
from operator_checks import assert_sound, check_parity, make_model, random_boxes, single_op_model

import verifier
from verifier.ops.softmax import PairwiseDifference


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,axis,opset", [((1, 5), -1, 17), ((1, 3, 4), 1, 17), ((1, 3, 4), None, 11),
                                              ((1, 3, 4), None, 13), ((1, 2, 3, 2), 2, 11)])
def test_parity(op, shape, axis, opset):
    attrs = {} if axis is None else {"axis": axis}
    check_parity(single_op_model(op, shape, opset=opset, **attrs), -5, 5)


def _classifier(op="Softmax", seed=0):
    rng = np.random.default_rng(seed)
    init = {"W": rng.normal(size=(5, 4)).astype(np.float32), "b": rng.normal(size=5).astype(np.float32)}
    return make_model([helper.make_node("Gemm", ["X", "W", "b"], ["H"], transB=1),
                       helper.make_node(op, ["H"], ["Y"], axis=-1)], (1, 4), init)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_classifier_output_is_sound(op):
    net = check_parity(_classifier(op))
    for seed, (center, radius) in enumerate(((1.0, 0.01), (1.0, 0.3), (2.0, 2.0), (1.0, 30.0))):
        lower, upper = random_boxes((1, 4), 5, center, radius, seed)
        results = assert_sound(net, lower, upper)
        if op == "Softmax":
            for b in results.values():
                assert (b.lower >= 0).all() and (b.upper <= 1 + 1e-6).all()
    crown, ibp = results["crown"], results["ibp"]
    assert ((crown.upper - crown.lower) <= (ibp.upper - ibp.lower) + 1e-6).all()


def test_crown_is_tighter_than_ibp_on_small_boxes():
    net = verifier.load_onnx(_classifier())
    lower, upper = random_boxes((1, 4), 5, 1.0, 0.05, 0)
    crown, ibp = net.bounds(lower, upper, method="crown"), net.bounds(lower, upper, method="ibp")
    assert (crown.upper - crown.lower).mean() < 0.8 * (ibp.upper - ibp.lower).mean()


def _attention(seed=0, n=3, d=4):
    """One attention head: softmax(X Wq (X Wk)^T / sqrt d) X Wv, then a dense layer."""
    rng = np.random.default_rng(seed)
    init = {name: rng.normal(size=(d, d)).astype(np.float32) / 2 for name in ("Wq", "Wk", "Wv")}
    init["scale"] = np.array(math.sqrt(d), np.float32)
    init["Wo"] = rng.normal(size=(n * d, 2)).astype(np.float32)
    init["flat"] = np.array([1, n * d], np.int64)
    nodes = [helper.make_node("MatMul", ["X", "Wq"], ["Q"]), helper.make_node("MatMul", ["X", "Wk"], ["K"]),
             helper.make_node("MatMul", ["X", "Wv"], ["V"]),
             helper.make_node("Transpose", ["K"], ["Kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["Q", "Kt"], ["S"]), helper.make_node("Div", ["S", "scale"], ["Z"]),
             helper.make_node("Softmax", ["Z"], ["P"], axis=-1), helper.make_node("MatMul", ["P", "V"], ["O"]),
             helper.make_node("Reshape", ["O", "flat"], ["F"]), helper.make_node("MatMul", ["F", "Wo"], ["Y"])]
    return make_model(nodes, (1, n, d), init)


def test_attention_block_is_sound():
    net = check_parity(_attention(), rtol=1e-4)
    for seed, radius in enumerate((0.01, 0.1, 0.5)):
        lower, upper = random_boxes((1, 3, 4), 3, 1.0, radius, seed)
        assert_sound(net, lower, upper)


def test_softmax_by_hand():
    """softmax([x, 0])_0 = 1 / (1 + e^-x) on x in [0, 1]: exactly [1/2, e/(1+e)]; the chain is exact at the
    ends, so IBP gives these numbers and CROWN contains them."""
    net = verifier.load_onnx(single_op_model("Softmax", (1, 2), axis=-1))
    lower, upper = np.array([0.0, 0.0]), np.array([1.0, 0.0])
    ibp = net.bounds(lower, upper, method="ibp")
    assert ibp.lower[0].tolist() == pytest.approx([0.5, 1 / (1 + math.e)], rel=1e-6)
    assert ibp.upper[0].tolist() == pytest.approx([math.e / (1 + math.e), 0.5], rel=1e-6)
    crown = net.bounds(lower, upper, method="crown")
    assert (crown.lower <= ibp.lower + 1e-6).all() or (crown.lower >= ibp.lower - 1e-6).all()
    assert crown.lower[0, 0] <= 0.5 + 1e-6 and crown.upper[0, 0] >= math.e / (1 + math.e) - 1e-6


def test_pairwise_difference_is_exact():
    op = PairwiseDifference(1, (2, 3, 2))
    x = torch.randn(4, 2, 3, 2)
    d = op.forward(x)
    assert d.shape == (4, 2, 3, 2, 3)
    assert torch.allclose(d[:, 1, 2, 0, 1], x[:, 1, 1, 0] - x[:, 1, 2, 0])
    A = torch.randn(4, 5, 2, 3, 2, 3)
    (A_x,), _ = op.backward(A, [None])
    assert torch.allclose((A * d.unsqueeze(1)).flatten(2).sum(-1), (A_x * x.unsqueeze(1)).flatten(2).sum(-1), atol=1e-5)


def test_log_sum_exp_backward_is_sound():
    from operator_checks import assert_backward_sound

    from verifier.ops.softmax import LogSumExp

    for seed, radius in enumerate((0.01, 1.0, 10.0, 100.0)):
        box = random_boxes((2, 5), 3, 3.0, radius, seed)
        assert_backward_sound(LogSumExp(), [box], seed=seed)
