"""The smoothing fallback: CROWN memory estimate, the decision to fall back, and the certificate it reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import verifier
from verifier.bounds import crown
from verifier.errors import UnsupportedOperatorError, VerifierError
from verifier.smoothing import (
    SmoothingCertificate,
    box_to_l2_ball,
    certify_fallback,
    estimate_bound_memory,
    should_fall_back,
    smoothing_inapplicable_reason,
)

MODELS = Path(__file__).resolve().parent.parent / "models"
DEMO = MODELS / "digits_smooth_mlp_sigma0.25.onnx"


def small_networks() -> dict[str, verifier.Network]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 30), nn.ReLU(), nn.Linear(30, 5))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    return {
        "mlp": verifier.from_torch(mlp, torch.zeros(1, 20)),
        "cnn": verifier.from_torch(cnn, torch.zeros(1, 1, 8, 8)),
        "cnn_batchnorm": verifier.load_onnx(MODELS / "digits_cnn.onnx"),
    }


def measured_coefficients(network: verifier.Network, batch: int, memory_budget: int | None = None):
    """Largest coefficient tensor (bytes) and number of backward passes per bounded tensor, seen by a spy
    on CROWN's backward pass, with every ReLU unstable (a huge box)."""
    largest: dict[str, int] = {}
    passes: dict[str, int] = {}
    original = crown.backward_lower

    def spy(graph, start, A, bounds, hook=None):
        passes[start] = passes.get(start, 0) + 1

        def record(node, start_name, coefficients, _bounds):
            size = coefficients.numel() * coefficients.element_size()
            largest[start_name] = max(largest.get(start_name, 0), size)
            return None

        return original(graph, start, A, bounds, record)

    crown.backward_lower = spy
    try:
        x = torch.rand(batch, *network.input_shape, generator=torch.Generator().manual_seed(0))
        network.bounds(x - 100, x + 100, method="crown", memory_budget=memory_budget)
    finally:
        crown.backward_lower = original
    return largest, passes


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_batchnorm"])
@pytest.mark.parametrize("batch", [1, 3])
def test_memory_estimate_matches_the_coefficients_crown_allocates(name, batch):
    network = small_networks()[name]
    largest, passes = measured_coefficients(network, batch)
    estimate = estimate_bound_memory(network, batch)
    assert {layer.name: layer.coefficient_bytes for layer in estimate.layers} == largest
    assert set(passes.values()) == {1}


def test_chunk_count_matches_the_engine_under_a_budget():
    network = small_networks()["cnn"]
    estimate = estimate_bound_memory(network, batch=2)
    budget = estimate.interval_bytes + 3 * 40_000
    _, passes = measured_coefficients(network, 2, memory_budget=estimate.chunk_budget(budget))
    assert passes == estimate.chunks(budget)
    assert max(passes.values()) > 1


def wide_network(width: int = 2048) -> verifier.Network:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    return verifier.from_torch(model, torch.zeros(1, 64))


def test_fall_back_decision_on_a_model_too_large_for_the_budget():
    network = wide_network()
    estimate = estimate_bound_memory(network)
    # unchunked, bounding the second layer holds 2 * 2048 rows x 2048 values of float32: 32 MiB, 96 MiB at peak
    assert estimate.peak_bytes > 96 * 2**20
    fall_back, reason = should_fall_back(network, memory_budget=2**30)
    assert not fall_back and "fits" in reason
    # 4 MiB: CROWN fits only in about 25 chunks per layer, fine by default, too many with max_chunks=8
    fall_back, reason = should_fall_back(network, memory_budget=4 * 2**20)
    assert not fall_back and "chunking" in reason
    fall_back, reason = should_fall_back(network, memory_budget=4 * 2**20, max_chunks=8)
    assert fall_back and "backward passes" in reason
    # 32 KiB: not even one neuron per pass fits
    fall_back, reason = should_fall_back(network, memory_budget=32 * 2**10)
    assert fall_back and "even one neuron" in reason
    with pytest.raises(VerifierError, match="memory_budget"):
        should_fall_back(network, memory_budget=0)


def test_fallback_path_reports_a_smoothing_certificate_never_unsat():
    network = verifier.load_onnx(DEMO)
    fall_back, reason = should_fall_back(network, memory_budget=64 * 2**10, max_chunks=2)
    assert fall_back
    data = np.load(MODELS / "digits_test.npz")
    x, label = data["x"][0], int(data["labels"][0])
    certificate = certify_fallback(network, x, label, epsilon_l2=0.1, sigma=0.25, n0=100, n=10_000,
                                   fallback_reason=reason)
    assert isinstance(certificate, SmoothingCertificate)
    assert certificate.certified and certificate.status == "certified"
    assert certificate.radius > 0.1 and certificate.predicted == label
    assert certificate.vnncomp_result == "unknown"
    assert certificate.confidence == pytest.approx(0.999)
    assert certificate.fallback_reason == reason
    assert "smoothed classifier" in certificate.statement() and "probability" in certificate.statement()
    record = json.loads(json.dumps(certificate.to_dict()))
    assert record["vnncomp_result"] == "unknown" and record["certified"] and sum(record["counts"]) == 10_000
    # the same certificate at a radius it cannot reach, and for a label the smoothed classifier does not return
    assert certify_fallback(network, x, label, 5.0, 0.25, n=10_000).status == "radius_too_small"
    assert certify_fallback(network, x, (label + 1) % 10, 0.1, 0.25, n=10_000).status == "other_class"


def hardmax_model(path: Path) -> None:
    """A linear classifier followed by Hardmax, an operator the bound engine does not support."""
    weight = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0], [0.0, 1.0, 1.0], [-1.0, 0.0, 0.5]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["scores"]),
         helper.make_node("Hardmax", ["scores"], ["output"], axis=1)],
        "hardmax_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime builds
    onnx.save(model, str(path))


def test_unsupported_operator_falls_back_to_onnxruntime(tmp_path):
    path = tmp_path / "hardmax.onnx"
    hardmax_model(path)
    try:
        verifier.load_onnx(path)
        pytest.skip("the bound engine supports Hardmax now")
    except UnsupportedOperatorError:
        pass
    fall_back, reason = should_fall_back(path, memory_budget=2**30)
    assert fall_back and "Hardmax" in reason and "onnxruntime" in reason
    x = np.array([2.0, 0.0, 0.0, 0.0], dtype=np.float32)  # scores (2, 1, 0): class 0
    certificate = certify_fallback(path, x, 0, epsilon_l2=0.05, sigma=0.1, n=2000, fallback_reason=reason)
    assert certificate.predicted == 0 and certificate.certified
    with pytest.raises(UnsupportedOperatorError):
        certify_fallback(path, x, 0, epsilon_l2=0.05, sigma=0.1, n=100, backend="ir")


def test_inapplicable_properties_say_why():
    assert smoothing_inapplicable_reason(robustness=True, norm="L2", sigma=0.25) is None
    assert "classification robustness" in smoothing_inapplicable_reason(robustness=False, norm="L2", sigma=0.25)
    assert "L2" in smoothing_inapplicable_reason(robustness=True, norm="Linf", sigma=0.25)
    assert "sigma" in smoothing_inapplicable_reason(robustness=True, norm="l2", sigma=None)


def test_box_to_l2_ball_contains_the_box():
    lower, upper = np.array([0.0, 1.0, -1.0]), np.array([0.2, 1.0, 1.0])
    center, radius = box_to_l2_ball(lower, upper)
    assert center.tolist() == [0.1, 1.0, 0.0]
    corners = np.array(np.meshgrid(*zip(lower, upper))).reshape(3, -1).T
    assert np.linalg.norm(corners - center, axis=1).max() == pytest.approx(radius)


def test_certify_fallback_rejects_bad_arguments():
    network = verifier.load_onnx(DEMO)
    x = np.zeros(64, dtype=np.float32)
    with pytest.raises(VerifierError, match="epsilon_l2"):
        certify_fallback(network, x, 0, epsilon_l2=-1.0, sigma=0.25)
    with pytest.raises(VerifierError, match="label"):
        certify_fallback(network, x, 10, epsilon_l2=0.1, sigma=0.25)
    with pytest.raises(VerifierError, match="sigma"):
        certify_fallback(network, x, 0, epsilon_l2=0.1, sigma=0.0)
