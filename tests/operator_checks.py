"""Shared checks of the operator tests: tiny ONNX models, onnxruntime parity, sampling and PGD soundness.

Everything is checked against something independent of the relaxation under test: onnxruntime for the
forward pass, and for bounds the function itself evaluated at many random points, at the corners of
small boxes and at the extremes PGD finds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

import verifier
from verifier.attack.pgd import output_extremes


def make_model(
    nodes: Sequence[onnx.NodeProto],
    input_shape: Sequence[int],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    output: str = "Y",
) -> bytes:
    """A one-input one-output float32 ONNX model (``X`` -> ``output``) from ``nodes``."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    return model.SerializeToString()


def single_op_model(op: str, input_shape: Sequence[int], constants: Sequence[np.ndarray] = (), opset: int = 17,
                    **attrs) -> bytes:
    """``Y = op(X, *constants)``."""
    names = [f"C{i}" for i in range(len(constants))]
    node = helper.make_node(op, ["X", *names], ["Y"], **attrs)
    return make_model([node], input_shape, dict(zip(names, constants)), opset)


def sandwich_model(op_nodes: Callable[[str, str], list[onnx.NodeProto]], width: int = 6, inputs: int = 4,
                   outputs: int = 3, seed: int = 0, opset: int = 17, extra: dict | None = None) -> bytes:
    """``X [1, inputs] -> Gemm -> op -> Gemm -> Y``: the operator between two random dense layers, so that
    CROWN's backward pass meets mixed-sign coefficients and correlated inputs. ``op_nodes(a, b)`` builds
    the nodes from tensor ``a`` (``[1, width]``) to tensor ``b`` (``[1, m]``, ``m`` read from ``extra``)."""
    rng = np.random.default_rng(seed)
    extra = dict(extra or {})
    mid = extra.pop("out_width", width)
    init = {
        "W1": rng.normal(size=(width, inputs)).astype(np.float32),
        "b1": rng.normal(size=width).astype(np.float32),
        "W2": rng.normal(size=(outputs, mid)).astype(np.float32),
        "b2": rng.normal(size=outputs).astype(np.float32),
        **extra,
    }
    nodes = [helper.make_node("Gemm", ["X", "W1", "b1"], ["H"], transB=1), *op_nodes("H", "G"),
             helper.make_node("Gemm", ["G", "W2", "b2"], ["Y"], transB=1)]
    return make_model(nodes, [1, inputs], init, opset)


def check_parity(model: bytes, low: float = -3.0, high: float = 3.0, samples: int = 8, seed: int = 0,
                 rtol: float = 1e-5, atol: float = 1e-5) -> verifier.Network:
    """Load ``model`` and compare its forward pass with onnxruntime on random inputs; returns the network."""
    net = verifier.load_onnx(model)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        x = rng.uniform(low, high, net.input_shape).astype(np.float32)
        expected = session.run(None, {"X": x})[0]
        actual = net.forward(x).numpy()[0]
        np.testing.assert_allclose(actual, expected.reshape(actual.shape), rtol=rtol, atol=atol)
    return net


def random_boxes(shape: Sequence[int], count: int, center_scale: float, radius_scale: float, seed: int,
                 center: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random boxes ``[count, *shape]``: centres ``center +- center_scale``, radii up to ``radius_scale``."""
    g = torch.Generator().manual_seed(seed)
    c = center + center_scale * (2 * torch.rand(count, *shape, generator=g) - 1)
    r = radius_scale * torch.rand(count, *shape, generator=g)
    return c - r, c + r


def assert_sound(net: verifier.Network, lower: torch.Tensor, upper: torch.Tensor, methods=("ibp", "crown"),
                 samples: int = 400, pgd: bool = True, rtol: float = 1e-4, atol: float = 1e-4,
                 finite: bool = True) -> dict[str, verifier.Bounds]:
    """Bounds of every method contain the outputs at random points, at corners and at PGD extremes.

    ``finite``: also require finite bounds (the function is bounded on every box). Returns the bounds.
    """
    lower, upper = lower.to(net.dtype), upper.to(net.dtype)
    g = torch.Generator().manual_seed(1)
    batch = lower.shape[0]
    points = lower.unsqueeze(1) + torch.rand(batch, samples, *lower.shape[1:], generator=g, dtype=lower.dtype) * (
        upper - lower
    ).unsqueeze(1)
    corners = torch.where(torch.rand(batch, 16, *lower.shape[1:], generator=g) < 0.5,
                          lower.unsqueeze(1), upper.unsqueeze(1))
    points = torch.cat([points, corners, lower.unsqueeze(1), upper.unsqueeze(1)], 1)
    with torch.no_grad():
        values = net.forward_flat(points.reshape(-1, *lower.shape[1:])).reshape(batch, points.shape[1], -1)
    low, high = values.amin(1), values.amax(1)
    if pgd:
        pgd_low, pgd_high = output_extremes(net.forward_flat, lower, upper, steps=25, restarts=2)
        low, high = torch.minimum(low, pgd_low), torch.maximum(high, pgd_high)
    results = {}
    for method in methods:
        bounds = net.bounds(lower, upper, method=method)
        assert not torch.isnan(bounds.lower).any() and not torch.isnan(bounds.upper).any(), f"{method}: NaN bound"
        if finite:
            assert torch.isfinite(bounds.lower).all() and torch.isfinite(bounds.upper).all(), f"{method}: infinite"
        slack_low = atol + rtol * low.abs().nan_to_num(0, 0, 0)
        slack_high = atol + rtol * high.abs().nan_to_num(0, 0, 0)
        below = bounds.lower > low + slack_low
        above = bounds.upper < high - slack_high
        assert not below.any(), f"{method}: lower bound above a reached value: {bounds.lower[below]} > {low[below]}"
        assert not above.any(), f"{method}: upper bound below a reached value: {bounds.upper[above]} < {high[above]}"
        results[method] = bounds
    return results


def assert_relaxation(op, f: Callable[[torch.Tensor], torch.Tensor], lower: torch.Tensor, upper: torch.Tensor,
                      grid: int = 513, extra_points: Sequence[float] = (), rtol: float = 1e-6,
                      atol: float = 1e-6) -> None:
    """``op.relax`` on ``[lower, upper]`` (1-D tensors of boxes) holds at ``grid`` points of each box, at its
    ends and at ``extra_points`` inside it; lines and ``f`` are evaluated in float64."""
    relaxation = op.relax(lower, upper)
    t = torch.linspace(0, 1, grid, dtype=torch.float64)
    lo, hi = lower.double().unsqueeze(-1), upper.double().unsqueeze(-1)
    x = lo + (hi - lo) * t
    if extra_points:
        extra = torch.tensor(extra_points, dtype=torch.float64).expand(lower.shape[0], -1)
        x = torch.cat([x, torch.maximum(torch.minimum(extra, hi), lo)], -1)
    fx = f(x)

    def line(slope, intercept):
        slope = slope.double().unsqueeze(-1)
        intercept = 0 if intercept is None else intercept.double().unsqueeze(-1)
        return slope * x + intercept

    below = line(relaxation.lower_slope, relaxation.lower_intercept)
    above = line(relaxation.upper_slope, relaxation.upper_intercept)
    slack = atol + rtol * fx.abs()
    ok_low = (below <= fx + slack) | torch.isnan(fx)
    ok_high = (above >= fx - slack) | torch.isnan(fx)
    for name, ok in (("lower", ok_low), ("upper", ok_high)):
        if not ok.all():
            row = (~ok).any(-1).nonzero()[0, 0]
            col = (~ok[row]).nonzero()[0, 0]
            raise AssertionError(
                f"{name} line violated on [{lower[row].item()}, {upper[row].item()}] at x={x[row, col].item()}: "
                f"f={fx[row, col].item()}, line={(below if name == 'lower' else above)[row, col].item()}"
            )
    for part in (relaxation.lower_slope, relaxation.upper_slope):
        assert not torch.isnan(part).any()


def assert_backward_sound(op, boxes: Sequence[tuple[torch.Tensor, torch.Tensor]], rows: int = 5, samples: int = 300,
                          seed: int = 0, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """``op.backward`` gives a valid lower bound ``A . y >= sum_i A_i . x_i + bias`` at random points of the
    input boxes (each ``[B, *shape]``), for random coefficients ``A`` of both signs."""
    g = torch.Generator().manual_seed(seed)
    batch = boxes[0][0].shape[0]
    with torch.no_grad():
        y_shape = op.forward(*(lo for lo, _ in boxes)).shape[1:]
    A = torch.randn(batch, rows, *y_shape, generator=g, dtype=boxes[0][0].dtype)
    A_in, bias = op.backward(A, list(boxes))
    bias = torch.zeros(batch, rows, dtype=A.dtype) if bias is None else bias
    for _ in range(samples):
        points = [lo + torch.rand(lo.shape, generator=g, dtype=lo.dtype) * (hi - lo) for lo, hi in boxes]
        if _ % 3 == 0:  # corners
            points = [torch.where(torch.rand(lo.shape, generator=g) < 0.5, lo, hi) for lo, hi in boxes]
        y = op.forward(*points)
        value = (A * y.unsqueeze(1)).flatten(2).sum(-1)
        bound = bias.clone()
        for coeffs, x in zip(A_in, points):
            if coeffs is not None:
                bound = bound + (coeffs * x.unsqueeze(1)).flatten(2).sum(-1)
        bad = bound > value + atol + rtol * value.abs()
        assert not bad.any(), f"bound {bound[bad]} > value {value[bad]}"


def conv_sandwich_model(op_nodes: Callable[[str, str], list[onnx.NodeProto]], input_shape=(1, 2, 6, 6),
                        channels: int = 3, outputs: int = 3, seed: int = 0, opset: int = 17,
                        extra: dict | None = None) -> bytes:
    """``X -> Conv 3x3 (pad 1) -> op -> Flatten -> Gemm -> Y``; the Gemm width comes from ONNX shape inference."""
    rng = np.random.default_rng(seed)
    init = {"W1": rng.normal(size=(channels, input_shape[1], 3, 3)).astype(np.float32) / 3,
            "b1": rng.normal(size=channels).astype(np.float32), **(extra or {})}
    nodes = [helper.make_node("Conv", ["X", "W1", "b1"], ["H"], pads=[1] * (2 * (len(input_shape) - 2))),
             *op_nodes("H", "G"), helper.make_node("Flatten", ["G"], ["F"])]
    partial = onnx.load_from_string(make_model(nodes, input_shape, init, opset, output="F"))
    inferred = onnx.shape_inference.infer_shapes(partial)
    width = inferred.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    init["W2"] = (rng.normal(size=(outputs, width)) / np.sqrt(width)).astype(np.float32)
    init["b2"] = rng.normal(size=outputs).astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["F", "W2", "b2"], ["Y"], transB=1))
    return make_model(nodes, input_shape, init, opset)
