"""Exact answers for tiny ReLU networks from a MILP (scipy's HiGHS), built from the raw weights.

Big-M encoding with interval pre-activation bounds computed here in NumPy, independently of the engine.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

Layers = list[tuple[np.ndarray, np.ndarray]]


def random_network(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """2-3 affine layers with ReLUs between them, at most 20 hidden neurons in all."""
    depth = int(rng.integers(2, 4))
    sizes = [int(rng.integers(1, 5))]
    for _ in range(depth - 1):
        sizes.append(int(rng.integers(1, 21 // (depth - 1))))
    sizes.append(int(rng.integers(1, 4)))
    return [(rng.standard_normal((m, n)), 0.5 * rng.standard_normal(m)) for n, m in zip(sizes[:-1], sizes[1:])]


def to_torch(layers) -> torch.nn.Module:
    modules: list[torch.nn.Module] = []
    for i, (w, b) in enumerate(layers):
        linear = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        modules.append(linear)
        if i < len(layers) - 1:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


def _encode(layers: Layers, lower: np.ndarray, upper: np.ndarray, extra: int = 0):
    """Variables ``x | (z, a, d) per hidden layer | y | extra``, their bounds, integrality and constraints."""
    n_in = lower.size
    # variable layout: x | (z, a, d) per hidden layer | y
    blocks, l_prev, u_prev = [], lower, upper
    offset = n_in
    for w, b in layers[:-1]:
        center, radius = (l_prev + u_prev) / 2, (u_prev - l_prev) / 2
        lz, uz = w @ center + b - np.abs(w) @ radius, w @ center + b + np.abs(w) @ radius
        m = w.shape[0]
        blocks.append((offset, m, lz, uz))
        offset += 3 * m
        l_prev, u_prev = np.maximum(lz, 0), np.maximum(uz, 0)
    n_out = layers[-1][0].shape[0]
    y_offset = offset
    total = offset + n_out + extra
    lb, ub = np.full(total, -np.inf), np.full(total, np.inf)
    integrality = np.zeros(total)
    lb[:n_in], ub[:n_in] = lower, upper
    rows, row_lo, row_hi = [], [], []

    def row(entries: dict[int, float], lo: float, hi: float) -> None:
        r = np.zeros(total)
        for k, v in entries.items():
            r[k] += v
        rows.append(r)
        row_lo.append(lo)
        row_hi.append(hi)

    prev_offset, prev_size = 0, n_in
    for (w, b), (start, m, lz, uz) in zip(layers[:-1], blocks):
        z, a, d = start, start + m, start + 2 * m
        for j in range(m):
            entries = {z + j: 1.0}
            for k in range(prev_size):
                entries[prev_offset + k] = entries.get(prev_offset + k, 0.0) - w[j, k]
            row(entries, b[j], b[j])                                  # z = W a_prev + b
            lb[z + j], ub[z + j] = lz[j], uz[j]
            lb[a + j], ub[a + j] = max(lz[j], 0.0), max(uz[j], 0.0)
            lb[d + j], ub[d + j] = 0, 1
            integrality[d + j] = 1
            row({a + j: 1.0, z + j: -1.0}, 0, np.inf)                 # a >= z
            row({a + j: 1.0, z + j: -1.0, d + j: -lz[j]}, -np.inf, -lz[j])  # a <= z - l (1 - d)
            row({a + j: 1.0, d + j: -uz[j]}, -np.inf, 0)              # a <= u d
        prev_offset, prev_size = a, m
    w, b = layers[-1]
    for j in range(n_out):
        entries = {y_offset + j: 1.0}
        for k in range(prev_size):
            entries[prev_offset + k] = entries.get(prev_offset + k, 0.0) - w[j, k]
        row(entries, b[j], b[j])
    return total, y_offset, lb, ub, integrality, rows, row_lo, row_hi


def exact_range(layers: Layers, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact min and max of every output over the box, by one MILP per output and direction."""
    n_out = layers[-1][0].shape[0]
    total, y_offset, lb, ub, integrality, rows, row_lo, row_hi = _encode(layers, lower, upper)
    constraint = LinearConstraint(np.array(rows), row_lo, row_hi)
    minimum, maximum = np.zeros(n_out), np.zeros(n_out)
    for j in range(n_out):
        for sign, store in ((1.0, minimum), (-1.0, maximum)):
            c = np.zeros(total)
            c[y_offset + j] = sign
            result = milp(c, integrality=integrality, bounds=Bounds(lb, ub), constraints=constraint,
                          options={"mip_rel_gap": 0, "presolve": True})
            assert result.status == 0, result.message
            store[j] = sign * result.fun
    return minimum, maximum




def exact_min_violation(layers: Layers, lower: np.ndarray, upper: np.ndarray, C: np.ndarray, d: np.ndarray) -> float:
    """``min over the box of max_r (C_r y - d_r)``: the property "C y <= d for all rows" has a
    counterexample iff this is <= 0. One MILP with an extra variable ``t >= C_r y - d_r``."""
    total, y_offset, lb, ub, integrality, rows, row_lo, row_hi = _encode(layers, lower, upper, extra=1)
    t = total - 1
    for c_row, d_value in zip(C, d):
        r = np.zeros(total)
        r[t] = 1.0
        r[y_offset : y_offset + C.shape[1]] -= c_row
        rows.append(r)
        row_lo.append(-d_value)
        row_hi.append(np.inf)
    objective = np.zeros(total)
    objective[t] = 1.0
    result = milp(objective, integrality=integrality, bounds=Bounds(lb, ub),
                  constraints=LinearConstraint(np.array(rows), row_lo, row_hi), options={"mip_rel_gap": 0})
    assert result.status == 0, result.message
    return float(result.fun)


def to_onnx(layers: Layers) -> bytes:
    """The network as a serialized ONNX model (Gemm/Relu, float32, input [1, n])."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, current = [], [], "x"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        out = f"h{i}" if i < len(layers) - 1 else "y"
        nodes.append(helper.make_node("Gemm", [current, f"w{i}", f"b{i}"], [out], transB=1))
        current = out
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            current = f"r{i}"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, layers[0][0].shape[1]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, layers[-1][0].shape[0]])
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()
