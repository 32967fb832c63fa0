"""Pooling, reductions and transposed convolutions: MaxPool, AveragePool, GlobalAveragePool,
GlobalMaxPool, ReduceSum/ReduceMean, ConvTranspose."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from operator_checks import (
    assert_backward_sound,
    assert_sound,
    check_parity,
    conv_sandwich_model,
    random_boxes,
    single_op_model,
)

import verifier
from verifier.ops.pooling import MaxPool, window_index

MAXPOOLS = {
    "k2s2": dict(kernel_shape=[2, 2], strides=[2, 2]),
    "k3s1": dict(kernel_shape=[3, 3], strides=[1, 1]),
    "k3s2pad1": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "k3s2asym": dict(kernel_shape=[3, 2], strides=[2, 1], pads=[0, 1, 1, 0]),
    "k2s2ceil": dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "k3s2ceilpad": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    "dilated": dict(kernel_shape=[2, 2], strides=[1, 1], dilations=[2, 2]),
    "same": dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
}


@pytest.mark.parametrize("name", list(MAXPOOLS))
@pytest.mark.parametrize("shape", [(1, 2, 5, 5), (1, 1, 6, 7)])
def test_maxpool_parity(name, shape):
    check_parity(single_op_model("MaxPool", shape, **MAXPOOLS[name]))


@pytest.mark.parametrize("name", ["k2s2", "k3s1", "k3s2pad1", "k3s2ceilpad", "dilated"])
def test_maxpool_network_is_sound(name):
    model = conv_sandwich_model(lambda a, b: [helper.make_node("MaxPool", [a], [b], **MAXPOOLS[name])])
    net = check_parity(model)
    for seed, (center, radius) in enumerate(((1.0, 0.02), (1.0, 0.3), (2.0, 2.0))):
        lower, upper = random_boxes((1, 2, 6, 6), 3, center, radius, seed)
        results = assert_sound(net, lower, upper)
    crown, ibp = results["crown"], results["ibp"]
    assert (crown.upper - crown.lower).mean() < (ibp.upper - ibp.lower).mean()


def test_maxpool_backward_is_sound_on_random_windows():
    shape = (1, 2, 5, 5)
    index, out = window_index(shape[2:], [3, 3], [2, 2], [(1, 1), (1, 1)], [1, 1])
    op = MaxPool(shape, (*shape[:2], *out), index)
    for seed, radius in enumerate((0.05, 0.5, 3.0)):
        assert_backward_sound(op, [random_boxes(shape, 3, 1.0, radius, seed)], seed=seed)


def test_maxpool_1d_and_3d():
    check_parity(single_op_model("MaxPool", (1, 2, 9), kernel_shape=[3], strides=[2], pads=[1, 0]))
    net = check_parity(single_op_model("MaxPool", (1, 1, 4, 4, 4), kernel_shape=[2, 2, 2], strides=[2, 2, 2]))
    assert_sound(net, *random_boxes((1, 1, 4, 4, 4), 2, 1.0, 0.5, 0))


def test_maxpool_by_hand():
    """Window of two inputs, x1 in [0, 1], x2 in [0.5, 2]: lower line x2 (larger midpoint); upper plane
    L + sum a_j (x_j - l_j) with L = 0.5, a_1 = (1 - 0.5) / 1, a_2 = 1: 0.5 x1 + x2 (at the centre 1.5 < 2)."""
    op = MaxPool((1, 1, 1, 2), (1, 1, 1, 1), torch.tensor([[0, 1]]))
    lower_weights, upper_weights, upper_bias = op.relax(torch.tensor([[[[0.0, 0.5]]]]), torch.tensor([[[[1.0, 2.0]]]]))
    assert lower_weights.flatten().tolist() == [0.0, 1.0]
    assert upper_weights.flatten().tolist() == [0.5, 1.0] and upper_bias.item() == 0.0
    # one input dominating its window makes both lines exact
    lower_weights, upper_weights, upper_bias = op.relax(torch.tensor([[[[3.0, 0.5]]]]), torch.tensor([[[[4.0, 2.0]]]]))
    assert lower_weights.flatten().tolist() == [1.0, 0.0]
    assert upper_weights.flatten().tolist() == [1.0, 0.0] and upper_bias.item() == 0.0


AVGPOOLS = {
    "k2s2": dict(kernel_shape=[2, 2], strides=[2, 2]),
    "k3s2pad1": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "k3s2pad1incl": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    "asym": dict(kernel_shape=[3, 2], strides=[1, 2], pads=[1, 0, 0, 1]),
    "ceil": dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
    "ceilpadincl": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
}


@pytest.mark.parametrize("name", list(AVGPOOLS))
@pytest.mark.parametrize("shape", [(1, 2, 5, 5), (1, 1, 6, 7)])
def test_averagepool_parity(name, shape):
    check_parity(single_op_model("AveragePool", shape, **AVGPOOLS[name]))


@pytest.mark.parametrize("op,attrs", [("AveragePool", AVGPOOLS["k3s2pad1"]), ("GlobalAveragePool", {}),
                                      ("GlobalMaxPool", {}), ("ReduceMean", {"axes": [2, 3], "keepdims": 0})])
def test_linear_pools_network_is_sound(op, attrs):
    model = conv_sandwich_model(lambda a, b: [helper.make_node("Relu", [a], ["r"]),
                                              helper.make_node(op, ["r"], [b], **attrs)])
    net = check_parity(model)
    for seed, (center, radius) in enumerate(((1.0, 0.05), (1.0, 1.0))):
        assert_sound(net, *random_boxes((1, 2, 6, 6), 3, center, radius, seed))


@pytest.mark.parametrize("op,axes,keepdims,opset", [("ReduceSum", [1], 1, 13), ("ReduceSum", [-1, 1], 0, 13),
                                                   ("ReduceMean", [2], 1, 17), ("ReduceMean", [1, 2], 0, 18)])
def test_reduce_parity(op, axes, keepdims, opset):
    as_input = op == "ReduceSum" or opset >= 18
    constants = (np.array(axes, np.int64),) if as_input else ()
    attrs = {"keepdims": keepdims} if as_input else {"keepdims": keepdims, "axes": axes}
    check_parity(single_op_model(op, (1, 3, 4), constants, opset=opset, **attrs))


def test_global_pools_by_hand():
    net = verifier.load_onnx(single_op_model("GlobalAveragePool", (1, 1, 2, 2)))
    b = net.bounds(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0, 5.0]), method="crown")
    assert (b.lower.item(), b.upper.item()) == pytest.approx((1.5, 2.25))
    net = verifier.load_onnx(single_op_model("GlobalMaxPool", (1, 1, 2, 2)))
    b = net.bounds(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0, 5.0]), method="crown")
    assert (b.lower.item(), b.upper.item()) == pytest.approx((3.0, 5.0))


CONV_TRANSPOSES = {
    "s1": dict(),
    "s2": dict(strides=[2, 2]),
    "s2pads": dict(strides=[2, 2], pads=[1, 0, 0, 1]),
    "s2outpad": dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    "dilated": dict(dilations=[2, 1], strides=[1, 2]),
    "outshape": dict(strides=[2, 2], output_shape=[9, 10]),
    "same": dict(strides=[2, 2], auto_pad="SAME_UPPER"),
}


@pytest.mark.parametrize("name", list(CONV_TRANSPOSES))
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_transpose_parity_and_soundness(name, groups):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=3 * groups).astype(np.float32)
    model = single_op_model("ConvTranspose", (1, 4, 4, 5), (weight, bias), group=groups, **CONV_TRANSPOSES[name])
    net = check_parity(model)
    assert_sound(net, *random_boxes((1, 4, 4, 5), 2, 1.0, 0.5, 0))
    # exactness: CROWN of a linear map is exact, so its bounds equal IBP's on every output
    lower, upper = random_boxes((1, 4, 4, 5), 2, 1.0, 0.5, 1)
    ibp, crown = net.bounds(lower, upper, method="ibp"), net.bounds(lower, upper, method="crown")
    assert torch.allclose(ibp.lower, crown.lower, atol=1e-4) and torch.allclose(ibp.upper, crown.upper, atol=1e-4)


def test_conv_transpose_network_is_sound():
    rng = np.random.default_rng(1)
    extra = {"Wt": rng.normal(size=(3, 2, 2, 2)).astype(np.float32)}
    model = conv_sandwich_model(lambda a, b: [helper.make_node("Relu", [a], ["r"]),
                                              helper.make_node("ConvTranspose", ["r", "Wt"], [b], strides=[2, 2])],
                                extra=extra)
    net = check_parity(model)
    assert_sound(net, *random_boxes((1, 2, 6, 6), 3, 1.0, 0.2, 0))
