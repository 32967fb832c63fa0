"""ONNX front end: execution matches onnxruntime; malformed files and unsupported operators fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

import verifier
from tests.netutil import (
    make_model,
    onnx_input_shape,
    project_networks,
    run_double_reference,
    run_onnxruntime,
    shared_networks,
)
from verifier.ops.conv import Conv
from verifier.ops.linear import Linear

RTOL, ATOL = 1e-5, 1e-6


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """rtol 1e-5 and atol 1e-6 relative to the output vector's scale: two float32 BLAS libraries sum in
    different orders, so an element near zero in a vector of size ~10 differs by more than 1e-6."""
    actual, expected = actual.reshape(-1), expected.reshape(-1)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * scale)


def _parity(source, rng: np.random.Generator, samples: int = 3, scale: float = 1.0) -> None:
    network = verifier.load_onnx(source)
    shape = onnx_input_shape(source)
    for _ in range(samples):
        x = (scale * rng.uniform(0, 1, shape)).astype(np.float32)
        expected = run_onnxruntime(source, x)
        actual = network.forward(x).numpy()
        _assert_close(actual, expected)
    # batched execution gives the same as one at a time
    xs = (scale * rng.uniform(0, 1, [4, *shape])).astype(np.float32)
    batched = network.forward(xs).numpy()
    for i in range(4):
        _assert_close(batched[i], run_onnxruntime(source, xs[i]))


@pytest.mark.parametrize("path", shared_networks(fast=True) + project_networks(), ids=lambda p: p.name)
def test_forward_matches_onnxruntime(path):
    if not path.is_file():
        pytest.skip("network not available")
    _parity(path, np.random.default_rng(0))


@pytest.mark.slow
@pytest.mark.parametrize("path", shared_networks(fast=False), ids=lambda p: p.name)
def test_forward_matches_onnxruntime_all(path):
    _parity(path, np.random.default_rng(1))


@pytest.mark.parametrize("path", shared_networks(fast=True) + project_networks(), ids=lambda p: p.name)
def test_float64_forward_matches_independent_double_reference(path):
    """In float64 the comparison is free of float32 summation-order noise, so it can be strict."""
    if not path.is_file():
        pytest.skip("network not available")
    network = verifier.load_onnx(path, dtype=torch.float64)
    x = np.random.default_rng(5).uniform(0, 1, onnx_input_shape(path))
    expected = run_double_reference(path, x)
    if expected is None:
        pytest.skip("onnxruntime has no float64 kernel for an operator of this model")
    np.testing.assert_allclose(network.forward(x).numpy().reshape(-1), expected.reshape(-1), rtol=1e-9, atol=1e-9)


# -- operator coverage on tiny models made here --------------------------------------------------------------
def _conv_model(dims: int, **attrs) -> bytes:
    rng = np.random.default_rng(3)
    channels, groups = 4, attrs.get("group", 1)
    kernel = attrs.pop("kernel", [3] * dims)
    weight = rng.standard_normal([6, channels // groups, *kernel]).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    spatial = [9] * dims if dims == 2 else [11]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    return make_model([node], [1, channels, *spatial], None, {"w": weight, "b": bias})


@pytest.mark.parametrize(
    "dims,attrs",
    [
        (2, {}),
        (2, {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
        (2, {"strides": [2, 1], "pads": [0, 1, 2, 1], "dilations": [1, 2]}),
        (2, {"group": 2, "pads": [1, 1, 1, 1]}),
        (2, {"group": 2, "kernel": [1, 1], "strides": [3, 3]}),
        (2, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
        (2, {"auto_pad": "SAME_LOWER", "strides": [2, 2], "kernel": [4, 4]}),
        (2, {"auto_pad": "VALID", "kernel": [2, 3]}),
        (1, {"strides": [2], "pads": [1, 2]}),
        (1, {"dilations": [2], "kernel": [3]}),
    ],
)
def test_conv_variants_match_onnxruntime_and_bound_soundly(dims, attrs):
    model = _conv_model(dims, **attrs)
    _parity(model, np.random.default_rng(0))
    network = verifier.load_onnx(model)
    x = torch.randn(2, *network.input_shape)
    bounds = network.bounds(x - 0.1, x + 0.1, method="crown")
    samples = x.repeat_interleave(500, 0) + 0.1 * (2 * torch.rand(1000, *network.input_shape) - 1)
    y = network.forward_flat(samples).reshape(2, 500, -1)
    assert (y >= bounds.lower.unsqueeze(1) - 1e-5).all() and (y <= bounds.upper.unsqueeze(1) + 1e-5).all()


def test_constant_shape_chain_is_folded():
    """Reshape to a shape computed by Shape -> Gather -> Unsqueeze -> Concat is folded at load time."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w"], ["y"], transB=1),
    ]
    init = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus_one": np.array([-1], np.int64),
            "w": np.random.default_rng(0).standard_normal([3, 12]).astype(np.float32)}
    model = make_model(nodes, ["N", 3, 2, 2], ["N", 3], init)
    network = verifier.load_onnx(model)
    assert [type(n.op).__name__ for n in network.graph.nodes] == ["Reshape", "Linear"]
    _parity(model, np.random.default_rng(1))


def test_batchnorm_is_folded_into_conv_and_gemm():
    rng = np.random.default_rng(0)
    c = 3
    bn = {f"{k}{i}": v for i, n in ((1, c), (2, 5)) for k, v in (
        ("g", rng.uniform(0.5, 2, n)), ("be", rng.standard_normal(n)), ("m", rng.standard_normal(n)),
        ("v", rng.uniform(0.5, 2, n)))}
    init = {k: v.astype(np.float32) for k, v in bn.items()}
    init.update({"w": rng.standard_normal([c, 2, 3, 3]).astype(np.float32),
                 "fw": rng.standard_normal([5, c * 16]).astype(np.float32)})
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g1", "be1", "m1", "v1"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fw"], ["h"], transB=1),
        helper.make_node("BatchNormalization", ["h", "g2", "be2", "m2", "v2"], ["y"]),
    ]
    model = make_model(nodes, [1, 2, 4, 4], [1, 5], init)
    network = verifier.load_onnx(model)
    kinds = [type(n.op) for n in network.graph.nodes]
    assert kinds.count(Conv) == 1 and kinds.count(Linear) == 1 and len(kinds) == 4  # Conv, Relu, Reshape, Linear
    _parity(model, rng)


def test_identity_dropout_and_normalisation_nodes():
    init = {"mean": np.array([0.5], np.float32), "std": np.array([0.25], np.float32),
            "w": np.eye(3, dtype=np.float32) * 2}
    nodes = [
        helper.make_node("Identity", ["x"], ["i"]),
        helper.make_node("Sub", ["i", "mean"], ["s"]),
        helper.make_node("Div", ["s", "std"], ["d"]),
        helper.make_node("Dropout", ["d"], ["o"]),
        helper.make_node("MatMul", ["o", "w"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["y"]),
    ]
    model = make_model(nodes, [1, 3], [1, 3], init)
    network = verifier.load_onnx(model)
    assert "Dropout" not in network.summary() and "Identity" not in network.summary()
    _parity(model, np.random.default_rng(2))


def test_symbolic_and_absent_batch_dimension():
    w = np.random.default_rng(0).standard_normal([4, 2]).astype(np.float32)
    for shape_in, shape_out in ((["batch", 4], ["batch", 2]), ([4], [2]), ([1, 4], [1, 2])):
        model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], shape_in, shape_out, {"w": w})
        network = verifier.load_onnx(model)
        assert network.input_size == 4 and network.output_size == 2
        _parity(model, np.random.default_rng(0))


def test_transpose_squeeze_unsqueeze_residual_add():
    rng = np.random.default_rng(0)
    init = {"w": rng.standard_normal([3, 3]).astype(np.float32), "ax": np.array([0], np.int64)}
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),        # [1, 3, 2]
        helper.make_node("Unsqueeze", ["t", "ax"], ["u"]),                   # [1, 1, 3, 2]
        helper.make_node("Squeeze", ["u", "ax"], ["s"]),                     # [1, 3, 2]
        helper.make_node("Transpose", ["s"], ["b"], perm=[0, 2, 1]),        # [1, 2, 3]
        helper.make_node("MatMul", ["b", "w"], ["m"]),
        helper.make_node("Relu", ["m"], ["r"]),
        helper.make_node("Add", ["r", "b"], ["a"]),                          # residual
        helper.make_node("Sub", ["a", "m"], ["y"]),
    ]
    model = make_model(nodes, [1, 2, 3], [1, 2, 3], init)
    _parity(model, rng)


# -- errors --------------------------------------------------------------------------------------------------
def test_unsupported_operator_names_op_node_and_supported_list():
    nodes = [helper.make_node("Hardmax", ["x"], ["y"], name="my_hardmax")]
    model = make_model(nodes, [1, 4], [1, 4])
    with pytest.raises(verifier.UnsupportedOperatorError) as info:
        verifier.load_onnx(model)
    message = str(info.value)
    assert "Hardmax" in message and "my_hardmax" in message and "Gemm" in message and "Relu" in message


def test_malformed_file_gives_clear_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf at all \x00\x01\x02")
    with pytest.raises(verifier.ModelLoadError, match="broken.onnx"):
        verifier.load_onnx(bad)
    with pytest.raises(verifier.ModelLoadError, match="not found"):
        verifier.load_onnx(tmp_path / "missing.onnx")


def test_nan_weight_is_rejected_with_its_name():
    w = np.ones([2, 2], np.float32)
    w[0, 1] = np.nan
    model = make_model([helper.make_node("MatMul", ["x", "bad_weight"], ["y"])], [1, 2], [1, 2], {"bad_weight": w})
    with pytest.raises(verifier.InvalidWeightError, match="bad_weight"):
        verifier.load_onnx(model)


def test_undefined_tensor_and_several_inputs_are_reported():
    model = make_model([helper.make_node("Relu", ["nowhere"], ["y"], name="r")], [1, 2], [1, 2])
    with pytest.raises(verifier.ModelLoadError, match="nowhere"):
        verifier.load_onnx(model)
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    with pytest.raises(verifier.ModelLoadError, match="exactly one input"):
        verifier.load_onnx(helper.make_model(graph).SerializeToString())


def test_shape_mismatch_names_the_node():
    w = np.ones([3, 2], np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [1, 4], [1, 2], {"w": w})
    with pytest.raises(verifier.VerifierError, match="mm"):
        verifier.load_onnx(model)


def test_box_of_wrong_size_is_a_shape_error():
    network = verifier.load_onnx(project_networks()[0])
    with pytest.raises(verifier.ShapeError, match="does not fit"):
        network.bounds(np.zeros(3), np.ones(3))
