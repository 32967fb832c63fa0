"""The kernels inside the engine: the VERIFIER_KERNELS setting, identical bounds from the native and the
pure-PyTorch paths, and soundness of the native path against dense sampling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import MODELS, shared_family

import verifier
from verifier import kernels
from verifier.kernels import library

native = pytest.mark.skipif(not kernels.native_available(), reason="native kernels not built")


@pytest.fixture
def restore_backend():
    """Put the kernel-selection state back after a test that changes it."""
    saved = {k: getattr(library, k) for k in ("_requested", "_native_on", "_loaded", "_why_unavailable",
                                               "_said_unavailable")}
    yield
    for k, v in saved.items():
        setattr(library, k, v)


def test_setting_chooses_the_backend(restore_backend, monkeypatch):
    monkeypatch.setenv(library.ENV, "torch")
    library._native_on = None
    assert kernels.backend() == "torch"
    assert not library.use_native(torch.ones(2))
    with pytest.raises(ValueError, match="choose one of"):
        kernels.set_backend("fast")
    monkeypatch.setenv(library.ENV, "turbo")
    with pytest.raises(ValueError, match="VERIFIER_KERNELS"):
        kernels.set_backend(None)


def test_missing_library_is_said_once_and_native_then_fails(restore_backend, monkeypatch):
    monkeypatch.delenv(library.ENV, raising=False)
    monkeypatch.setattr(library, "_loaded", False)
    monkeypatch.setattr(library, "_why_unavailable", "not built (simulated)")
    library._requested, library._native_on, library._said_unavailable = None, None, False
    with pytest.warns(RuntimeWarning, match="not built"):
        assert kernels.backend() == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels.set_backend(None)  # resolved again: no second warning
        net = verifier.load_onnx(MODELS / "acasxu_like.onnx")
        net.bounds(torch.zeros(5), torch.ones(5) * 0.1)
    with pytest.raises(RuntimeError, match="unavailable"):
        kernels.set_backend("native")


def both_backends(net, lower, upper, **kwargs):
    results = {}
    try:
        for name in ("torch", "native"):
            kernels.set_backend(name)
            results[name] = net.bounds(lower, upper, **kwargs)
    finally:
        kernels.set_backend(None)
    return results["torch"], results["native"]


@native
@pytest.mark.parametrize("model, eps", [("acasxu_like", 0.05), ("digits_mlp", 0.02), ("digits_cnn", 0.02)])
@pytest.mark.parametrize("intermediate", ["crown", "ibp"])
def test_native_and_torch_paths_give_the_same_bounds(model, eps, intermediate):
    net = verifier.load_onnx(MODELS / f"{model}.onnx")
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(6, net.input_size, generator=g)
    C = torch.randn(3, net.output_size, generator=g)
    reference, fused = both_backends(net, centre - eps, centre + eps, C=C, intermediate=intermediate)
    scale = 1e-5 * (1 + reference.lower.abs().max())
    torch.testing.assert_close(fused.lower, reference.lower, rtol=0, atol=scale.item())
    torch.testing.assert_close(fused.upper, reference.upper, rtol=0, atol=scale.item())


@native
@pytest.mark.parametrize("model, eps", [("acasxu_like", 0.1), ("digits_cnn", 0.05)])
def test_native_bounds_are_sound_on_samples(model, eps):
    """Every sampled output (corners and interior points of the boxes) lies within the native CROWN bounds."""
    net = verifier.load_onnx(MODELS / f"{model}.onnx", dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    centre = torch.rand(4, net.input_size, generator=g, dtype=torch.float64)
    lower, upper = centre - eps, centre + eps
    kernels.set_backend("native")
    try:
        bounds = net.bounds(lower, upper)
    finally:
        kernels.set_backend(None)
    for i in range(4):
        t = torch.rand(3000, net.input_size, generator=g, dtype=torch.float64)
        t[:500] = t[:500].round()  # corners of the box
        y = net.forward_flat(lower[i] + t * (upper[i] - lower[i]))
        assert bool((y >= bounds.lower[i] - 1e-9).all()) and bool((y <= bounds.upper[i] + 1e-9).all())


@native
def test_bab_like_batch_on_shared_acasxu():
    """Many sub-domains of one ACAS Xu box at once (a branch-and-bound step): native == reference."""
    onnx = shared_family("acasxu") / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
    net = verifier.load_onnx(onnx)
    g = torch.Generator().manual_seed(2)
    lower = torch.rand(64, 5, generator=g) - 0.5
    upper = lower + 0.05 * torch.rand(64, 5, generator=g)
    C = torch.from_numpy(np.eye(5)[[0] * 4] - np.eye(5)[1:]).float()
    reference, fused = both_backends(net, lower, upper, C=C)
    torch.testing.assert_close(fused.lower, reference.lower, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.upper, reference.upper, rtol=1e-5, atol=1e-5)
