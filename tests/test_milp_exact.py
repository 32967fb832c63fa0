"""Exactness anchor: on tiny random ReLU networks, the exact output range from a MILP (scipy's HiGHS) lies
inside the IBP and CROWN bounds, and CROWN equals it when every ReLU is stable.

The MILP is built here from the raw weights (big-M encoding with interval pre-activation bounds computed in
NumPy), independently of the engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import Bounds, LinearConstraint, milp

import verifier


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


def exact_range(layers, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact min and max of every output over the box, by one MILP per output and direction."""
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
    total = offset + n_out
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


@pytest.mark.parametrize("seed", range(4))
def test_exact_range_lies_inside_ibp_and_crown(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        layers = random_network(rng)
        n_in = layers[0][0].shape[1]
        center = rng.standard_normal(n_in)
        radius = rng.uniform(0.05, 1.0, n_in)
        lower, upper = center - radius, center + radius
        network = verifier.from_torch(to_torch(layers), torch.zeros(1, n_in, dtype=torch.float64))
        low, high = exact_range(layers, lower, upper)
        for method in ("ibp", "crown"):
            bounds = network.bounds(lower, upper, method=method)
            assert (bounds.lower[0].numpy() <= low + 1e-7).all(), method
            assert (bounds.upper[0].numpy() >= high - 1e-7).all(), method
        crown = network.bounds(lower, upper, method="crown")
        ibp = network.bounds(lower, upper, method="ibp")
        assert (crown.upper - crown.lower <= ibp.upper - ibp.lower + 1e-9).all()


def test_crown_is_exact_when_every_relu_is_stable():
    rng = np.random.default_rng(42)
    checked = 0
    while checked < 100:
        layers = random_network(rng)
        n_in = layers[0][0].shape[1]
        center = rng.standard_normal(n_in)
        radius = rng.uniform(1e-3, 0.05, n_in)
        lower, upper = center - radius, center + radius
        network = verifier.from_torch(to_torch(layers), torch.zeros(1, n_in, dtype=torch.float64))
        inner = network.intermediate_bounds(lower, upper)
        relu_inputs = [n.inputs[0] for n in network.graph.nodes if n.op.op_type == "Relu"]
        if any(((inner[i][0] < 0) & (inner[i][1] > 0)).any() for i in relu_inputs):
            continue
        low, high = exact_range(layers, lower, upper)
        crown = network.bounds(lower, upper, method="crown")
        np.testing.assert_allclose(crown.lower[0].numpy(), low, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(crown.upper[0].numpy(), high, rtol=1e-7, atol=1e-7)
        checked += 1


def test_milp_encoding_matches_sampling():
    """The MILP itself is checked: its range contains sampled outputs and is attained up to sampling."""
    rng = np.random.default_rng(7)
    layers = [(rng.standard_normal((6, 2)), rng.standard_normal(6)), (rng.standard_normal((1, 6)), np.zeros(1))]
    lower, upper = -np.ones(2), np.ones(2)
    low, high = exact_range(layers, lower, upper)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 401), np.linspace(-1, 1, 401)), -1).reshape(-1, 2)
    values = np.maximum(grid @ layers[0][0].T + layers[0][1], 0) @ layers[1][0].T
    assert values.min() >= low[0] - 1e-9 and values.max() <= high[0] + 1e-9
    assert values.min() - low[0] < 0.05 and high[0] - values.max() < 0.05
