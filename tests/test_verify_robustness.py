"""Robustness properties given directly (L-infinity and L2), and the randomized-smoothing fallback of
verification: it triggers when bounds are out of reach, reports a probabilistic certificate about the
smoothed classifier, and never answers `unsat`."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.conftest import MODELS, TEST_DEVICE
from tests.netutil import make_model
from tests.test_cli import run_cli
from verifier.complete import verify_robustness

SMOOTH_MODEL = MODELS / "digits_smooth_mlp_sigma0.25.onnx"
TINY_BUDGET = 1024  # bytes: every network is "too large"


def _digit(index: int = 0) -> tuple[np.ndarray, int]:
    data = np.load(MODELS / "digits_test.npz")
    return data["x"][index], int(data["labels"][index])


def test_linf_robustness_unsat_and_sat():
    x, label = _digit(0)
    assert verify_robustness(SMOOTH_MODEL, x, label, 0.01, timeout=60, device=TEST_DEVICE).status == "unsat"
    result = verify_robustness(SMOOTH_MODEL, x, label, 0.5, timeout=60, device=TEST_DEVICE)
    assert result.status == "sat"
    assert np.all(np.abs(result.counterexample.x - x) <= 0.5 + 1e-6)


def test_l2_proof_uses_the_enclosing_box():
    x, label = _digit(1)
    result = verify_robustness(SMOOTH_MODEL, x, label, 0.01, norm="l2", timeout=60, device=TEST_DEVICE)
    assert result.status == "unsat"


def test_fallback_gives_a_certificate_never_unsat():
    x, label = _digit(0)
    result = verify_robustness(SMOOTH_MODEL, x, label, 0.25, norm="l2", smoothing_sigma=0.25,
                               memory_budget=TINY_BUDGET, smoothing_samples=2000, device=TEST_DEVICE)
    assert result.status == "unknown"
    certificate = result.certificate
    assert certificate is not None and certificate.status in ("certified", "radius_too_small")
    assert certificate.confidence == pytest.approx(0.999) and certificate.sigma == 0.25
    assert "smoothed classifier" in result.message and "nothing is proved about the base network" in result.message


def test_fallback_explains_why_no_certificate():
    x, label = _digit(0)
    linf = verify_robustness(SMOOTH_MODEL, x, label, 0.1, norm="linf", smoothing_sigma=0.25, memory_budget=TINY_BUDGET,
                             device=TEST_DEVICE)
    assert linf.status == "unknown" and linf.certificate is None and "L2" in linf.message
    no_sigma = verify_robustness(SMOOTH_MODEL, x, label, 0.1, norm="l2", memory_budget=TINY_BUDGET, device=TEST_DEVICE)
    assert no_sigma.status == "unknown" and "sigma" in no_sigma.message


def test_unsupported_operator_falls_back_to_onnxruntime(tmp_path):
    """A model the bound engine cannot load (Hardmax) is still certified through onnxruntime."""
    w = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Hardmax", ["h"], ["y"])]
    path = tmp_path / "hardmax.onnx"
    path.write_bytes(make_model(nodes, [1, 4], [1, 3], {"w": w.T.copy()}))
    center = np.ones(4, np.float32)
    label = int(np.argmax(center @ w.T))
    result = verify_robustness(path, center, label, 0.05, norm="l2", smoothing_sigma=0.1, smoothing_samples=2000,
                               device=TEST_DEVICE)
    assert result.status == "unknown" and result.certificate is not None
    assert "Hardmax" in result.message


def test_cli_robustness_mode(tmp_path):
    x, label = _digit(0)
    np.save(tmp_path / "x.npy", x)
    ok = run_cli("verify", str(SMOOTH_MODEL), "--center", str(tmp_path / "x.npy"), "--label", str(label),
                 "--eps", "0.01")
    assert ok.returncode == 0 and ok.stdout.splitlines()[0] == "unsat"
    missing = run_cli("verify", str(SMOOTH_MODEL), "--center", str(tmp_path / "x.npy"))
    assert missing.returncode == 2 and "--label" in missing.stderr
