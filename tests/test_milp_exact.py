"""Exactness anchor: on tiny random ReLU networks, the exact output range from a MILP (scipy's HiGHS) lies
inside the IBP and CROWN bounds, and CROWN equals it when every ReLU is stable.

The MILP is built here from the raw weights (big-M encoding with interval pre-activation bounds computed in
NumPy), independently of the engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import verifier
from tests.conftest import TEST_DEVICE
from tests.milp import exact_range, random_network, to_torch


@pytest.mark.parametrize("seed", range(4))
def test_exact_range_lies_inside_ibp_and_crown(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        layers = random_network(rng)
        n_in = layers[0][0].shape[1]
        center = rng.standard_normal(n_in)
        radius = rng.uniform(0.05, 1.0, n_in)
        lower, upper = center - radius, center + radius
        network = verifier.from_torch(to_torch(layers), torch.zeros(1, n_in, dtype=torch.float64)).to(TEST_DEVICE)
        low, high = exact_range(layers, lower, upper)
        for method in ("ibp", "crown"):
            bounds = network.bounds(lower, upper, method=method)
            assert (bounds.lower[0].cpu().numpy() <= low + 1e-7).all(), method
            assert (bounds.upper[0].cpu().numpy() >= high - 1e-7).all(), method
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
        network = verifier.from_torch(to_torch(layers), torch.zeros(1, n_in, dtype=torch.float64)).to(TEST_DEVICE)
        inner = network.intermediate_bounds(lower, upper)
        relu_inputs = [n.inputs[0] for n in network.graph.nodes if n.op.op_type == "Relu"]
        if any(((inner[i][0] < 0) & (inner[i][1] > 0)).any() for i in relu_inputs):
            continue
        low, high = exact_range(layers, lower, upper)
        crown = network.bounds(lower, upper, method="crown")
        np.testing.assert_allclose(crown.lower[0].cpu().numpy(), low, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(crown.upper[0].cpu().numpy(), high, rtol=1e-7, atol=1e-7)
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
