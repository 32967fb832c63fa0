"""Floating-point semantics of VNN-LIB 2.0 queries: the rounding-error envelope and the composed network.

The reference is onnxruntime executing the original models in float32: the bounds of the composed network
(with the envelope) must contain every output onnxruntime computes, including where float32 rounding makes
the result differ from real arithmetic.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("vnnlib")

from verifier.frontend.compose import bind_networks, compose, load_composed  # noqa: E402
from verifier.frontend.query_verify import verify_query  # noqa: E402
from verifier.frontend.roundoff import has_error_model  # noqa: E402
from verifier.ops.registry import ONNX_CONVERTERS  # noqa: E402
from verifier.spec.lowering import lower_query  # noqa: E402
from verifier.spec.vnnlib2 import parse_query  # noqa: E402


def save(tmp_path, name, nodes, shape, init=None, out_shape=None, out_type=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", out_type, out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (init or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def query(element_type: str, size: int, outputs: int, body: str) -> str:
    return (f"(vnnlib-version <2.0>)\n(declare-network N\n (declare-input X {element_type} [{size}])\n"
            f" (declare-output Y {element_type} [{outputs}]))\n{body}\n")


def test_every_operator_has_a_floating_point_error_model():
    missing = sorted(op for op in ONNX_CONVERTERS if not has_error_model(op))
    assert not missing, f"operators without a rounding-error model: {missing}"


def _mlp(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    init = {"W1": rng.normal(size=(16, 6)).astype(np.float32), "b1": rng.normal(size=16).astype(np.float32),
            "W2": rng.normal(size=(16, 16)).astype(np.float32) * 3, "b2": rng.normal(size=16).astype(np.float32),
            "W3": rng.normal(size=(3, 16)).astype(np.float32), "b3": rng.normal(size=3).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], transB=1),
             helper.make_node("Sigmoid", ["h2"], ["a2"]), helper.make_node("Gemm", ["a2", "W3", "b3"], ["y"], transB=1)]
    return save(tmp_path, f"mlp{seed}", nodes, [1, 6], init, [1, 3])


def _composed(text, path):
    parsed = parse_query(text)
    lowered = lower_query(parsed)
    bound = bind_networks(parsed, {"N": path})
    case, = lowered.specification.cases
    return load_composed(compose(lowered, bound), case.lower, case.upper), case, lowered


def test_bounds_with_the_envelope_contain_onnxruntime_float32_outputs(tmp_path):
    path = _mlp(tmp_path)
    box = " ".join(f"(assert (>= X[0,{i}] -2.0)) (assert (<= X[0,{i}] 2.0))" for i in range(6))
    text = query("float32", 6, 3, box + " (assert (>= Y[0,0] Y[0,1])) (assert (>= Y[0,2] 0.0))") \
        .replace("[6]", "[1,6]").replace("[3]", "[1,3]")
    net, case, lowered = _composed(text, path)
    net.to(torch.float64)
    kinds = [node.op.op_type for node in net.graph.nodes]
    assert kinds.count("Roundoff") >= 4                      # after the Gemms and the Sigmoid (not the ReLU)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    labels = [f.label for f in lowered.features]
    for _ in range(30):
        center = rng.uniform(-2, 2, 6)
        radius = rng.uniform(0, 0.2, 6)
        lower, upper = np.clip(center - radius, -2, 2), np.clip(center + radius, -2, 2)
        bounds = net.bounds(torch.tensor(lower), torch.tensor(upper), method="crown")
        points = rng.uniform(lower, upper, (64, 6)).astype(np.float32)
        for x in points:
            y = session.run(None, {"x": x.reshape(1, 6)})[0].astype(np.float64).reshape(-1)
            values = {f"Y[0,{j}]": y[j] for j in range(3)}
            got = np.array([values[label] for label in labels])
            assert (bounds.lower[0].numpy() <= got).all() and (got <= bounds.upper[0].numpy()).all()


def test_rounding_that_real_arithmetic_misses_is_never_proved_away(tmp_path):
    # y = (x + 1e8) - 1e8: in real arithmetic y = x >= 0.1; in float32 x + 1e8 rounds to 1e8 and y = 0
    path = save(tmp_path, "cancel", [helper.make_node("Add", ["x", "big"], ["s"]),
                                     helper.make_node("Sub", ["s", "big"], ["y"])], [1], {"big": np.float32([1e8])},
                [1])
    body = "(assert (>= X[0] 0.1)) (assert (<= X[0] 0.2)) (assert (<= Y[0] 0.0))"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.float32([0.15])})[0][0] == 0.0     # the float32 query is satisfiable
    (tmp_path / "f.vnnlib").write_text(query("float32", 1, 1, body))
    floating = verify_query(tmp_path / "f.vnnlib", {"N": path}, timeout=10)
    assert floating.status == "sat" and floating.assignment["Y"][0] == 0.0   # found by running onnxruntime
    (tmp_path / "r.vnnlib").write_text(query("real", 1, 1, body))
    assert verify_query(tmp_path / "r.vnnlib", {"N": path}, timeout=20).status == "unsat"   # real arithmetic


def test_integer_division_truncates(tmp_path):
    nodes = [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
             helper.make_node("Div", ["i", "three"], ["q"]),
             helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT)]
    path = save(tmp_path, "intdiv", nodes, [1], {"three": np.array([3], dtype=np.int64)}, [1])
    # x in [5, 5.9]: int 5, 5 / 3 truncates to 1 (the real quotient is 1.67)
    for bound, expected in (("(>= Y[0] 1.5)", "unsat"), ("(<= Y[0] 1.0)", "sat")):
        (tmp_path / "q.vnnlib").write_text(query("float32", 1, 1, f"(assert (>= X[0] 5.0)) (assert (<= X[0] 5.9)) "
                                                                  f"(assert {bound})"))
        assert verify_query(tmp_path / "q.vnnlib", {"N": path}, timeout=10).status == expected


@pytest.mark.parametrize("seed", range(8))
def test_answers_agree_with_brute_force_over_float32_inputs(tmp_path, seed):
    """Random ReLU networks, queries with a polytope of inputs and strict output comparisons, in float32 and in
    real semantics: ``unsat`` only if no point of a dense grid of float32 inputs satisfies the query (executed by
    onnxruntime, the assertion evaluated in float32), never ``unsat`` where the grid finds one."""
    rng = np.random.default_rng(seed)
    init = {"W1": rng.normal(size=(6, 2)).astype(np.float32), "b1": rng.normal(size=6).astype(np.float32),
            "W2": rng.normal(size=(2, 6)).astype(np.float32), "b2": rng.normal(size=2).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "W2", "b2"], ["y"], transB=1)]
    path = save(tmp_path, "net", nodes, [1, 2], init, [1, 2])
    batched = save(tmp_path, "batched", nodes, ["n", 2], init, ["n", 2])
    session = ort.InferenceSession(str(batched), providers=["CPUExecutionProvider"])
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 301), np.linspace(-1, 1, 301)), -1).reshape(-1, 2)
    grid = grid.astype(np.float32)
    y = session.run(None, {"x": grid})[0]
    c = np.float32(rng.uniform(0.0, 1.5))
    inside = grid[:, 0] + grid[:, 1] <= c                      # float32 addition, float32 constant
    candidates = y[inside & (y[:, 0] > y[:, 1]), 0]
    threshold = np.float32(np.quantile(candidates, 0.9) + (rng.uniform(-0.3, 0.3) if seed % 2 else 0.2)) \
        if len(candidates) else np.float32(0.0)
    body = ("(assert (and (>= X[0,0] -1.0) (<= X[0,0] 1.0) (>= X[0,1] -1.0) (<= X[0,1] 1.0)))\n"
            f"(assert (<= (+ X[0,0] X[0,1]) {float(c)!r}))\n(assert (> Y[0,0] Y[0,1]))\n"
            f"(assert (>= Y[0,0] {float(threshold)!r}))")
    grid_sat = bool((inside & (y[:, 0] > y[:, 1]) & (y[:, 0] >= threshold)).any())
    for element_type in ("float32", "real"):
        text = query(element_type, 2, 2, body).replace("[2]", "[1,2]")
        (tmp_path / "q.vnnlib").write_text(text)
        result = verify_query(tmp_path / "q.vnnlib", {"N": path}, timeout=15)
        if grid_sat:
            assert result.status != "unsat", (element_type, result.message)
        if result.status == "sat":
            x = result.assignment["X"].astype(np.float32).reshape(1, 2)
            y_witness = session.run(None, {"x": x})[0][0]
            assert y_witness[0] > y_witness[1] and y_witness[0] >= threshold
            assert np.float32(x[0, 0] + x[0, 1]) <= c and (np.abs(x) <= 1).all()
