"""Soundness of IBP and CROWN on every shared network: no sampled point and no PGD extreme leaves the bounds.

Bounds are computed in float32 like the networks; a tolerance of 1e-5 relative to the output's scale
absorbs float32 summation-order differences between the bound computation and the forward pass. Networks,
boxes and samples are on ``VERIFIER_TEST_DEVICE`` (default the CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import verifier
from tests.conftest import TEST_DEVICE
from tests.netutil import project_networks, shared_networks
from verifier.attack.pgd import output_extremes

SAMPLES = 10_000


def _radius(network: verifier.Network) -> float:
    """A box size that leaves many ReLUs unstable without making the bounds vacuous."""
    return 0.004 if network.input_size >= 3072 else 0.01 if network.input_size >= 400 else 0.05


def _boxes(network: verifier.Network, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    center = torch.rand(count, *network.input_shape, generator=generator)
    eps = _radius(network)
    return (center - eps).to(TEST_DEVICE), (center + eps).to(TEST_DEVICE)


def _samples(lower: torch.Tensor, upper: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Uniform points and random vertices of the box (the vertices reach further in high dimension)."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(count, *lower.shape, generator=generator)
    u[count // 2 :] = u[count // 2 :].round()
    u = u.to(lower.device)
    return lower + (upper - lower) * u


def check_sound(network: verifier.Network, lower: torch.Tensor, upper: torch.Tensor, results: dict) -> None:
    per_box = SAMPLES // lower.shape[0]
    with torch.no_grad():
        observed = [network.forward_flat(_samples(lower[b], upper[b], per_box, b)) for b in range(lower.shape[0])]
    pgd_min, pgd_max = output_extremes(network.forward_flat, lower, upper, steps=30, restarts=2)
    for name, bounds in results.items():
        scale = 1e-5 * (1 + torch.maximum(bounds.lower.abs(), bounds.upper.abs()))
        for b, values in enumerate(observed):
            below = (values < bounds.lower[b] - scale[b]).any(0)
            above = (values > bounds.upper[b] + scale[b]).any(0)
            assert not below.any() and not above.any(), f"{name}: sampled output outside the bounds (box {b})"
        assert (pgd_min >= bounds.lower - scale).all(), f"{name}: PGD minimum below the lower bound"
        assert (pgd_max <= bounds.upper + scale).all(), f"{name}: PGD maximum above the upper bound"
        assert torch.isfinite(bounds.lower).all() and torch.isfinite(bounds.upper).all()


def _all_methods(network, lower, upper) -> dict:
    results = {
        "ibp": network.bounds(lower, upper, method="ibp"),
        "crown": network.bounds(lower, upper, method="crown"),
    }
    if network.input_size < 3072:
        results["crown/ibp-intermediate"] = network.bounds(lower, upper, method="crown", intermediate="ibp")
    # CROWN must not be looser than IBP (it is intersected with it), up to float32 rounding
    ibp, crown = results["ibp"], results["crown"]
    slack = 1e-5 * (1 + torch.maximum(ibp.lower.abs(), ibp.upper.abs()))
    assert (crown.lower >= ibp.lower - slack).all() and (crown.upper <= ibp.upper + slack).all()
    return results


@pytest.mark.parametrize("path", shared_networks(fast=True) + project_networks(), ids=lambda p: p.name)
def test_bounds_contain_samples_and_pgd_extremes(path):
    if not path.is_file():
        pytest.skip("network not available")
    network = verifier.load_onnx(path).to(TEST_DEVICE)
    lower, upper = _boxes(network, 2, seed=hash(path.name) % 1000)
    check_sound(network, lower, upper, _all_methods(network, lower, upper))


@pytest.mark.slow
@pytest.mark.parametrize("path", shared_networks(fast=False), ids=lambda p: p.name)
def test_bounds_contain_samples_all_networks(path):
    network = verifier.load_onnx(path).to(TEST_DEVICE)
    lower, upper = _boxes(network, 3, seed=7)
    check_sound(network, lower, upper, _all_methods(network, lower, upper))


def test_crown_is_tighter_than_ibp_on_deep_networks(rng):
    found = shared_networks()
    if not found:
        pytest.skip("the shared benchmark networks are not available")
    path = found[0]
    network = verifier.load_onnx(path).to(TEST_DEVICE)
    lower, upper = _boxes(network, 4, seed=3)
    ibp = network.bounds(lower, upper, method="ibp")
    crown = network.bounds(lower, upper, method="crown")
    assert ((crown.upper - crown.lower).mean() < 0.5 * (ibp.upper - ibp.lower).mean())


def test_spec_matrix_bounds_are_sound_and_batched():
    """Bounds on C @ y for per-box spec matrices agree with sampling, and batching changes nothing."""
    network = verifier.load_onnx(project_networks()[1]).to(TEST_DEVICE)  # digits_cnn
    lower, upper = _boxes(network, 3, seed=11)
    C = torch.randn(3, 4, network.output_size, generator=torch.Generator().manual_seed(0)).to(TEST_DEVICE)
    together = network.bounds(lower, upper, C=C)
    for b in range(3):
        alone = network.bounds(lower[b : b + 1], upper[b : b + 1], C=C[b])
        np.testing.assert_allclose(alone.lower[0].cpu(), together.lower[b].cpu(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(alone.upper[0].cpu(), together.upper[b].cpu(), rtol=1e-5, atol=1e-5)
        y = network.forward_flat(_samples(lower[b], upper[b], 2000, b))
        values = y @ C[b].T
        assert (values >= together.lower[b] - 1e-4).all() and (values <= together.upper[b] + 1e-4).all()


def test_small_memory_budget_gives_the_same_bounds():
    """Chunking the backward passes (tiny memory budget) must not change the result."""
    network = verifier.load_onnx(project_networks()[1]).to(TEST_DEVICE)
    lower, upper = _boxes(network, 2, seed=5)
    full = network.bounds(lower, upper)
    chunked = network.bounds(lower, upper, memory_budget=4096)
    np.testing.assert_allclose(full.lower.cpu(), chunked.lower.cpu(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(full.upper.cpu(), chunked.upper.cpu(), rtol=1e-5, atol=1e-5)
