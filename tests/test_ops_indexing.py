"""Shape and indexing operators on variables: Pad, Concat, Slice, Split, Gather, Expand, Tile, Squeeze,
Unsqueeze, Transpose. All are exact: CROWN and IBP must agree, and both must contain every output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper
from operator_checks import assert_sound, check_parity, make_model, random_boxes, sandwich_model, single_op_model

import verifier

I64 = np.int64


def _exact_and_sound(net, shape, seed=0):
    lower, upper = random_boxes(shape, 3, 1.0, 0.5, seed)
    results = assert_sound(net, lower, upper, pgd=False)
    ibp, crown = results["ibp"], results["crown"]
    assert torch.allclose(ibp.lower, crown.lower, atol=1e-5) and torch.allclose(ibp.upper, crown.upper, atol=1e-5)


CASES = {
    "Pad constant": ("Pad", (1, 2, 3, 4), (np.array([0, 0, 1, 2, 0, 0, 2, 1], I64), np.array(0.5, np.float32)), {}, 17),
    "Pad crop": ("Pad", (1, 2, 3, 4), (np.array([0, 0, -1, 2, 0, 0, 1, -2], I64),), {}, 17),
    "Pad reflect": ("Pad", (1, 2, 3, 4), (np.array([0, 0, 2, 1, 0, 0, 1, 3], I64),), {"mode": "reflect"}, 17),
    "Pad edge": ("Pad", (1, 2, 3, 4), (np.array([0, 1, 2, 1, 0, 0, 1, 3], I64),), {"mode": "edge"}, 17),
    "Pad wrap": ("Pad", (1, 2, 3, 4), (np.array([0, 0, 2, 1, 0, 0, 1, 3], I64),), {"mode": "wrap"}, 19),
    "Pad axes": ("Pad", (1, 2, 3, 4), (np.array([1, 2, 3, 0], I64), np.array(-1.0, np.float32),
                                         np.array([-1, 2], I64)), {}, 18),
    "Pad attrs": ("Pad", (1, 2, 3), (), {"pads": [0, 1, 0, 0, 2, 1], "value": 2.0}, 10),
    "Slice": ("Slice", (1, 6, 5), (np.array([1, -1], I64), np.array([5, -100], I64), np.array([1, 2], I64),
                                   np.array([2, -2], I64)), {}, 17),
    "Slice huge end": ("Slice", (1, 6, 5), (np.array([2], I64), np.array([2**62], I64), np.array([1], I64)), {}, 17),
    "Slice attrs": ("Slice", (1, 6, 5), (), {"starts": [1], "ends": [4], "axes": [2]}, 9),
    "Gather": ("Gather", (1, 4, 3), (np.array([[0, 2], [-1, 1]], I64),), {"axis": 1}, 17),
    "Gather scalar": ("Gather", (1, 4, 3), (np.array(2, I64),), {"axis": 2}, 17),
    "Gather axis0": ("Gather", (1, 4, 3), (np.array(0, I64),), {"axis": 0}, 17),
    "Expand": ("Expand", (1, 1, 3), (np.array([2, 4, 1], I64),), {}, 17),
    "Expand rank": ("Expand", (1, 3), (np.array([2, 1, 3], I64),), {}, 17),
    "Tile": ("Tile", (1, 2, 3), (np.array([1, 3, 2], I64),), {}, 17),
    "Squeeze": ("Squeeze", (1, 3, 1, 2), (np.array([2], I64),), {}, 17),
    "Unsqueeze": ("Unsqueeze", (1, 3, 2), (np.array([0, -1], I64),), {}, 17),
    "Transpose": ("Transpose", (1, 2, 3, 4), (), {"perm": [0, 3, 1, 2]}, 17),
}


@pytest.mark.parametrize("name", list(CASES))
def test_parity_and_exact_bounds(name):
    op, shape, constants, attrs, opset = CASES[name]
    net = check_parity(single_op_model(op, shape, constants, opset=opset, **attrs))
    _exact_and_sound(net, shape)


def test_concat_of_variables_and_constants():
    model = make_model([helper.make_node("Split", ["X", "s"], ["P", "Q"], axis=1),
                        helper.make_node("Relu", ["P"], ["R"]),
                        helper.make_node("Concat", ["Q", "c", "R", "Q"], ["Y"], axis=1)],
                       (1, 5), {"s": np.array([2, 3], I64), "c": np.array([[1.5, -2.0]], np.float32)})
    net = check_parity(model)
    assert net.output_shape == (1, 10)
    lower, upper = random_boxes((1, 5), 3, 1.0, 0.5, 0)
    assert_sound(net, lower, upper)
    # the constant part is bounded exactly
    b = net.bounds(lower, upper, method="crown")
    assert torch.allclose(b.lower[:, 3:5], torch.tensor([1.5, -2.0]).expand(3, 2))
    assert torch.allclose(b.upper[:, 3:5], torch.tensor([1.5, -2.0]).expand(3, 2))


@pytest.mark.parametrize("opset,split,attrs,outputs,width", [
    (17, np.array([1, 2, 3], I64), {}, 3, 6),
    (17, None, {}, 3, 6),
    (11, None, {"split": [4, 2]}, 2, 6),
    (18, None, {"num_outputs": 4}, 4, 7),
])
def test_split_outputs(opset, split, attrs, outputs, width):
    names = [f"P{i}" for i in range(outputs)]
    inputs = ["X", "s"] if split is not None else ["X"]
    nodes = [helper.make_node("Split", inputs, names, axis=1, **attrs)]
    nodes += [helper.make_node("ReduceSum", [n], [f"S{i}"], keepdims=1) for i, n in enumerate(names)]
    nodes += [helper.make_node("Concat", [f"S{i}" for i in range(outputs)], ["Y"], axis=1)]
    init = {"s": split} if split is not None else {}
    if opset < 13:  # ReduceSum takes axes as an attribute before opset 13
        for node in nodes[1 : 1 + outputs]:
            node.attribute.append(helper.make_attribute("axes", [1]))
    net = check_parity(make_model(nodes, (1, width), init, opset=opset))
    _exact_and_sound(net, (1, width))


def test_split_with_an_unused_output():
    nodes = [helper.make_node("Split", ["X", "s"], ["P", "Q"], axis=1), helper.make_node("Exp", ["Q"], ["Y"])]
    model = make_model(nodes, (1, 5), {"s": np.array([2, 3], I64)})
    net = check_parity(model)
    assert net.output_shape == (1, 3)


def test_shape_ops_in_a_network_are_sound():
    def nodes(a, b):
        return [helper.make_node("Reshape", [a, "shape"], ["R"]), helper.make_node("Pad", ["R", "pads"], ["P"]),
                helper.make_node("Relu", ["P"], ["Q"]), helper.make_node("Tile", ["Q", "reps"], ["T"]),
                helper.make_node("Slice", ["T", "st", "en", "ax", "sp"], ["S"]),
                helper.make_node("Transpose", ["S"], ["U"], perm=[0, 2, 1]),
                helper.make_node("Reshape", ["U", "flat"], [b])]

    extra = {"shape": np.array([1, 2, 3], I64), "pads": np.array([0, 1, 0, 0, 0, 1], I64),
             "reps": np.array([1, 1, 2], I64), "st": np.array([-1], I64), "en": np.array([-100], I64),
             "ax": np.array([2], I64), "sp": np.array([-2], I64), "flat": np.array([1, -1], I64), "out_width": 12}
    net = check_parity(sandwich_model(nodes, extra=extra))
    for seed, radius in enumerate((0.05, 1.0)):
        assert_sound(net, *random_boxes((1, 4), 4, 1.0, radius, seed))


def test_unsupported_configurations_name_the_node():
    model = make_model([helper.make_node("Pad", ["X", "p"], ["Y"], mode="reflect", name="bad_pad")], (1, 3),
                       {"p": np.array([0, 3, 0, 0], I64)})
    with pytest.raises(verifier.UnsupportedOperatorError, match="bad_pad"):
        verifier.load_onnx(model)
    model = make_model([helper.make_node("Gather", ["c", "X"], ["Y"], name="bad_gather")], (1, 3),
                       {"c": np.ones(4, np.float32)})
    with pytest.raises(verifier.UnsupportedOperatorError, match="bad_gather"):
        verifier.load_onnx(model)


def test_forward_mode_bounds_through_the_new_affine_operators():
    """Forward-mode linear bounds (verifier.bounds.forward) use the affine operators' linear parts."""
    from verifier.bounds.forward import forward_bounds, supports_forward

    nodes = [helper.make_node("Reshape", ["X", "shape"], ["R"]), helper.make_node("Pad", ["R", "pads", "v"], ["P"]),
             helper.make_node("Tanh", ["P"], ["T"]), helper.make_node("Tile", ["T", "reps"], ["U"]),
             helper.make_node("Slice", ["U", "st", "en", "ax"], ["S"]),
             helper.make_node("Concat", ["S", "c", "S"], ["C"], axis=2),
             helper.make_node("Softmax", ["C"], ["M"], axis=2), helper.make_node("ReduceSum", ["M", "ax2"], ["Y"])]
    init = {"shape": np.array([1, 2, 2], I64), "pads": np.array([0, 0, 1, 0, 0, 1], I64),
            "v": np.array(0.5, np.float32), "reps": np.array([1, 1, 2], I64), "st": np.array([1], I64),
            "en": np.array([7], I64), "ax": np.array([2], I64), "c": np.array([[[0.25], [-0.5]]], np.float32),
            "ax2": np.array([1], I64)}
    net = check_parity(make_model(nodes, (1, 4), init))
    assert supports_forward(net.graph)
    lower, upper = random_boxes((1, 4), 3, 1.0, 0.3, 0)
    bounds = forward_bounds(net.graph, lower, upper)[net.graph.output_name]
    g = torch.Generator().manual_seed(0)
    x = lower.unsqueeze(1) + torch.rand(3, 500, 1, 4, generator=g) * (upper - lower).unsqueeze(1)
    y = net.forward(x.reshape(-1, 1, 4)).reshape(3, 500, *net.output_shape)
    assert (y >= bounds[0].unsqueeze(1) - 1e-5).all() and (y <= bounds[1].unsqueeze(1) + 1e-5).all()
