"""Operators added for VNN-LIB 2.0 models: Cast, comparisons, Where, Pow with exponent 0 or a tensor exponent,
constant and identity models, and the rounding operators.

Forward passes against onnxruntime; bounds by sampling, corners and PGD (``assert_sound``); relaxations
pointwise (``assert_relaxation``) and backward steps at random points (``assert_backward_sound``).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from operator_checks import assert_backward_sound, assert_relaxation, assert_sound

import verifier
from verifier.ops.rounding import RoundedCast, Roundoff, RoundToType, rounding_error
from verifier.ops.select import Compare, NonZero, Truncate, Where


def model(nodes, shape, init=None, out_type=TensorProto.FLOAT, opset=18) -> bytes:
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("Y", out_type, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (init or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9).SerializeToString()


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def cast(src: str, dst: str, to: int):
    return helper.make_node("Cast", [src], [dst], to=to)


SLICES = {"s0": np.array([0]), "e0": np.array([2]), "s1": np.array([2]), "e1": np.array([4])}
HALVES = [helper.make_node("Slice", ["X", "s0", "e0"], ["A"]), helper.make_node("Slice", ["X", "s1", "e1"], ["B"])]

MODELS = {
    "cast_int64": model([cast("X", "I", TensorProto.INT64), cast("I", "Y", TensorProto.FLOAT)], [4]),
    "cast_int8_output": model([cast("X", "Y", TensorProto.INT8)], [4], out_type=TensorProto.INT8),
    "cast_bool": model([cast("X", "I", TensorProto.BOOL), cast("I", "Y", TensorProto.FLOAT)], [4]),
    "cast_float16": model([cast("X", "I", TensorProto.FLOAT16), cast("I", "Y", TensorProto.FLOAT)], [4]),
    "cast_float64": model([cast("X", "I", TensorProto.DOUBLE), cast("I", "Y", TensorProto.FLOAT)], [4]),
    "equal_constant": model([helper.make_node("Equal", ["X", "c"], ["I"]), cast("I", "Y", TensorProto.FLOAT)],
                            [4], {"c": f32([0.5])}),
    "greater_where": model([helper.make_node("Greater", ["X", "c"], ["I"]),
                            helper.make_node("Where", ["I", "X", "d"], ["Y"])], [4],
                           {"c": f32([0.5]), "d": f32([10.0])}),
    "less_or_equal_variables": model([*HALVES, helper.make_node("LessOrEqual", ["A", "B"], ["I"]),
                                      helper.make_node("Where", ["I", "A", "B"], ["Y"])], [4], SLICES),
    "greater_or_equal_constant_first": model([helper.make_node("GreaterOrEqual", ["c", "X"], ["I"]),
                                              cast("I", "Y", TensorProto.FLOAT)], [4], {"c": f32([0.5])}),
    "less_broadcast_where": model([helper.make_node("Less", ["X", "c"], ["I"]),
                                   helper.make_node("Where", ["I", "e", "X"], ["Y"])], [2, 2],
                                  {"c": f32([[0.0], [1.0]]), "e": f32([-3.0, 4.0])}),
    "equal_variables": model([*HALVES, helper.make_node("Equal", ["A", "B"], ["I"]),
                              cast("I", "Y", TensorProto.FLOAT)], [4], SLICES),
    "pow_zero": model([helper.make_node("Pow", ["X", "c"], ["Y"])], [4], {"c": f32(0.0)}),
    "pow_tensor": model([helper.make_node("Pow", ["X", "c"], ["Y"])], [4], {"c": f32([2, 3, 0.5, 0])}),
    "pow_broadcast": model([helper.make_node("Pow", ["X", "c"], ["Y"])], [2, 1], {"c": f32([[2.0, 3.0]])}),
    "shape_output": model([helper.make_node("Shape", ["X"], ["Y"])], [4], out_type=TensorProto.INT64),
    "identity_output": model([helper.make_node("Identity", ["X"], ["Y"])], [4]),
}


def _points(name: str, shape, rng) -> list[np.ndarray]:
    low = 0.05 if name.startswith("pow") else -3.0
    points = [rng.uniform(low, 3, shape).astype(np.float32) for _ in range(16)]
    points += [np.round(p * 2) / 2 for p in points[:8]]           # exact thresholds and integers
    points.append(np.full(shape, 0.5, np.float32))
    points.append(np.zeros(shape, np.float32) + (0.25 if name.startswith("pow") else 0.0))
    return points


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_matches_onnxruntime(name):
    data = MODELS[name]
    net = verifier.load_onnx(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for x in _points(name, net.input_shape, np.random.default_rng(0)):
        expected = session.run(None, {"X": x})[0].astype(np.float64).reshape(-1)
        actual = net.forward(x).double().numpy().reshape(-1)
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6, err_msg=f"{name} at {x}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bounds_contain_every_sampled_output(name):
    net = verifier.load_onnx(MODELS[name])
    shape = net.input_shape
    g = torch.Generator().manual_seed(3)
    base = 0.05 if name.startswith("pow") else -2.0
    lower = base + 2 * torch.rand(12, *shape, generator=g)
    scale = torch.tensor([0.0, 0.3, 1.0, 3.0]).repeat(3).reshape(12, *[1] * len(shape))
    width = torch.rand(12, *shape, generator=g) * scale
    lower[:3] = torch.round(lower[:3] * 2) / 2                     # boxes that are points on thresholds
    assert_sound(net, lower, lower + width)


def test_decided_comparisons_and_selections_are_exact():
    net = verifier.load_onnx(MODELS["greater_where"])   # Y = X if X > 0.5 else 10
    lower = torch.tensor([[0.6, -1.0, 0.0, 0.5]])
    upper = torch.tensor([[0.9, 0.4, 1.0, 0.5]])
    for method in ("ibp", "crown"):
        bounds = net.bounds(lower, upper, method=method)
        assert bounds.lower[0].tolist() == pytest.approx([0.6, 10.0, 0.0, 10.0])
        assert bounds.upper[0].tolist() == pytest.approx([0.9, 10.0, 10.0, 10.0])
    equal = verifier.load_onnx(MODELS["equal_constant"])  # Y = (X == 0.5)
    bounds = equal.bounds(torch.tensor([[0.5, 0.0, 0.6, 0.4]]), torch.tensor([[0.5, 1.0, 0.7, 0.49]]), method="crown")
    assert bounds.lower[0].tolist() == [1.0, 0.0, 0.0, 0.0] and bounds.upper[0].tolist() == [1.0, 1.0, 0.0, 0.0]


def test_cast_to_integer_truncates_toward_zero_like_onnxruntime():
    net = verifier.load_onnx(MODELS["cast_int8_output"])
    x = f32([-2.7, -0.5, 2.5, 3.99])
    assert net.forward(x).numpy().reshape(-1).tolist() == [-2.0, -0.0, 2.0, 3.0]
    bounds = net.bounds(torch.tensor([[3.1, -2.9, -0.5, 1.0]]), torch.tensor([[3.4, -2.1, 0.5, 2.0]]), method="crown")
    assert bounds.lower[0].tolist() == [3.0, -2.0, 0.0, 1.0] and bounds.upper[0].tolist() == [3.0, -2.0, 0.0, 2.0]


def test_backward_rules_hold_at_random_points():
    g = torch.Generator().manual_seed(0)

    def box(*shape):
        lo = torch.randn(*shape, generator=g, dtype=torch.float64)
        width = torch.rand(*shape, generator=g, dtype=torch.float64) * torch.tensor([0.0, 1.0, 3.0]).reshape(3, 1)
        return lo, lo + width

    constant = torch.tensor([0.25, -0.5], dtype=torch.float64)
    for kind in ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"):
        assert_backward_sound(Compare(kind, [None, None], [(2,), (2,)], (2,)), [box(3, 2), box(3, 2)])
        assert_backward_sound(Compare(kind, [None, constant], [(2,)], (2,)), [box(3, 2)])
    condition = (torch.zeros(3, 2, dtype=torch.float64), torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]],
                                                                      dtype=torch.float64))
    condition[0][1] = 1.0
    assert_backward_sound(Where([None, None, None], [(2,), (2,), (2,)], (2,)), [condition, box(3, 2), box(3, 2)])
    assert_backward_sound(Where([None, None, constant], [(2,), (2,)], (2,)), [condition, box(3, 2)])
    assert_backward_sound(Where([None, constant, None], [(2,), (2,)], (2,)), [condition, box(3, 2)])


def test_rounding_relaxations_hold_pointwise():
    g = torch.Generator().manual_seed(1)
    lower = torch.cat([torch.randn(200, generator=g, dtype=torch.float64) * 10 ** torch.randint(-3, 6, (200,),
                                                                                              generator=g),
                       torch.tensor([0.0, -1e-6, 65000.0, 1e-8], dtype=torch.float64)])
    upper = lower + torch.rand(lower.shape, generator=g, dtype=torch.float64) * lower.abs().clamp(min=1e-3)

    def to_half(x):
        return x.to(torch.float16).to(torch.float64)

    half = (upper.abs() < 60000) & (lower.abs() < 60000)   # (overflow: test_rounding_error_bound_...)
    assert_relaxation(RoundToType(torch.float16), to_half, lower[half], upper[half], rtol=0, atol=0)
    assert_relaxation(RoundToType(torch.float32), lambda x: x.to(torch.float32).to(torch.float64), lower, upper,
                      rtol=0, atol=0)
    assert_relaxation(Truncate(), torch.trunc, lower, upper, rtol=0, atol=0)
    assert_relaxation(NonZero(), lambda x: (x != 0).double(), lower, upper, extra_points=[0.0], rtol=0, atol=0)
    eps = torch.full_like(lower, 1e-3)
    envelope = Roundoff(eps)
    low, high = envelope.interval((lower.unsqueeze(0), upper.unsqueeze(0)))
    assert torch.equal(low[0], lower - 1e-3) and torch.equal(high[0], upper + 1e-3)


def test_bounded_error_operators_hold_for_every_error_within_the_bound():
    """``Roundoff`` and ``RoundedCast``: ``A . y >= A . x + bias`` for every ``y`` within the error of ``x``."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64) * 100
    error = rounding_error(x.abs().amax(0), torch.float16)
    A = torch.randn(4, 3, 6, generator=g, dtype=torch.float64)
    for op in (Roundoff(error), RoundedCast(torch.float16, error)):
        A_in, bias = op.backward(A, [None])
        for _ in range(50):
            y = op.forward(x) if isinstance(op, RoundedCast) else \
                x + (2 * torch.rand(x.shape, generator=g, dtype=x.dtype) - 1) * error
            value = (A * y.unsqueeze(1)).sum(-1)
            bound = (A_in[0] * x.unsqueeze(1)).sum(-1) + bias
            assert (bound <= value + 1e-9).all()
    infinite = Roundoff(torch.tensor([float("inf"), 0.0], dtype=torch.float64))
    _, bias = infinite.backward(torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]], dtype=torch.float64), [None])
    assert bias.tolist() == [[0.0], [float("-inf")]]     # a zero coefficient costs nothing, never NaN


def test_rounding_error_bound_covers_float32_and_float16():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000) * 10.0 ** rng.integers(-40, 38, 20000)
    for dtype, kind in ((torch.float32, np.float32), (torch.float16, np.float16)):
        with np.errstate(over="ignore"):
            rounded = x.astype(kind).astype(np.float64)
        error = rounding_error(torch.from_numpy(np.abs(x)), dtype).numpy()
        finite = np.isfinite(rounded)
        assert (np.abs(rounded - x)[finite] <= error[finite]).all()
        assert np.isinf(error[~finite]).all()       # overflow to infinity: no finite bound claimed
