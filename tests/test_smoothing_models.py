"""Smoothing over every kind of model we can run: the IR, onnxruntime, torch modules, agreeing on the votes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import verifier
from verifier.errors import ModelLoadError, ShapeError, VerifierError
from verifier.smoothing import (
    NetworkClassifier,
    OnnxRuntimeClassifier,
    SmoothedClassifier,
    TorchClassifier,
    as_base_classifier,
)
from verifier.smoothing.train import noisy_accuracy, train_with_noise

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "digits_smooth_cnn_sigma0.25"])
def test_ir_and_onnxruntime_give_the_same_votes(name):
    path = MODELS / f"{name}.onnx"
    x = np.load(MODELS / "digits_test.npz")["x"][:3]
    votes = {}
    for backend in ("ir", "onnxruntime"):
        smoothed = SmoothedClassifier(path, sigma=0.25, seed=11, backend=backend)
        votes[backend] = np.stack([smoothed.sample_counts(row, 5000, 1000) for row in smoothed.as_batch(x)])
    # same noise, forward passes equal to ~1e-6: an argmax may flip only on a near-tie
    assert np.abs(votes["ir"] - votes["onnxruntime"]).sum() <= 4
    assert isinstance(as_base_classifier(path, backend="ir"), NetworkClassifier)
    assert isinstance(as_base_classifier(path, backend="onnxruntime"), OnnxRuntimeClassifier)
    assert isinstance(as_base_classifier(path), OnnxRuntimeClassifier)  # auto: batched onnxruntime


def test_onnxruntime_with_a_hard_coded_batch_runs_one_input_at_a_time(tmp_path):
    # Reshape to the constant shape [1, 4] ties the model to batch size 1
    weight = np.eye(4, 3, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "W"], ["output"])],
        "fixed_batch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array([1, 4], dtype=np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    base = OnnxRuntimeClassifier(path)
    assert "one input at a time" in base.description and base.input_shape == (1, 2, 2)
    x = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]]).reshape(3, 1, 2, 2)
    assert base.classify(x).tolist() == [1, 2, 0]
    ir = SmoothedClassifier(path, 0.1, seed=0, backend="ir").certify(x[0], n0=10, n=300)
    ort = SmoothedClassifier(path, 0.1, seed=0, backend="onnxruntime").certify(x[0], n0=10, n=300)
    assert (ir.label, ir.count) == (ort.label, ort.count) == (1, ort.count)
    # auto prefers the IR's batched execution to onnxruntime one input at a time
    assert isinstance(as_base_classifier(path), NetworkClassifier)


def test_onnxruntime_is_not_batched_when_the_model_mixes_the_batch(tmp_path):
    # y = (x + mean over axis 0 of x) W: at batch size 1 this is 2 x W, a wider batch would mix its rows
    weight = np.eye(4, 3, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[0], keepdims=1),
         helper.make_node("Add", ["input", "mean"], ["doubled"]),
         helper.make_node("MatMul", ["doubled", "W"], ["output"])],
        "batch_mixing",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "mixing.onnx"
    onnx.save(model, str(path))
    base = OnnxRuntimeClassifier(path)
    assert not base.batched
    x = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]]).reshape(3, 1, 4)
    assert torch.allclose(base.scores(x), 2 * x.reshape(3, 4)[:, :3])


def test_torch_module_and_its_ir_conversion_agree():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    network = verifier.from_torch(module, torch.zeros(1, 6))
    x = torch.randn(6)
    from_module = SmoothedClassifier(module, 0.3, seed=5, input_shape=(6,))
    from_network = SmoothedClassifier(network, 0.3, seed=5)
    assert isinstance(from_module.base, TorchClassifier) and from_module.num_classes == 4
    assert np.abs(from_module.sample_counts(x, 4000, 512) - from_network.sample_counts(x, 4000, 512)).sum() <= 2


def test_votes_do_not_depend_on_the_layout_of_the_input():
    smoothed = SmoothedClassifier(MODELS / "digits_smooth_cnn_sigma0.25.onnx", 0.25, seed=3)
    x = np.load(MODELS / "digits_test.npz")["x"][:2]
    flat = [r.count for r in smoothed.certify_batch(x, n0=20, n=500)]
    smoothed.reseed(3)
    shaped = [r.count for r in smoothed.certify_batch(x.reshape(2, 1, 1, 8, 8), n0=20, n=500)]
    assert flat == shaped


def test_model_errors_are_verifier_errors(tmp_path):
    with pytest.raises(ShapeError, match="input_shape"):
        SmoothedClassifier(nn.Linear(3, 2), 0.5)
    with pytest.raises(ShapeError, match="at least 2 outputs"):
        SmoothedClassifier(nn.Linear(3, 1), 0.5, input_shape=(3,))
    with pytest.raises(ModelLoadError, match="not found"):
        SmoothedClassifier(tmp_path / "missing.onnx", 0.5, backend="onnxruntime")
    (tmp_path / "bad.onnx").write_text("garbage")
    with pytest.raises(ModelLoadError):
        SmoothedClassifier(tmp_path / "bad.onnx", 0.5, backend="onnxruntime")
    with pytest.raises(ModelLoadError, match="backend"):
        SmoothedClassifier(MODELS / "digits_mlp.onnx", 0.5, backend="tensorflow")
    with pytest.raises(VerifierError, match="base classifier"):
        SmoothedClassifier(42, 0.5)


def test_noise_training_makes_the_base_classifier_robust_to_noise():
    # two tight clusters at -1 and +1 in 8 dimensions: trained under noise of sigma 1, the model should
    # classify noisy inputs nearly as well as the Bayes rule (a hyperplane through 0) does
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=generator)
    x = torch.randn(400, 8, generator=generator) * 0.1 + (2 * y[:, None] - 1).float()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    train_with_noise(model, x, y, sigma=1.0, epochs=20, seed=0)
    accuracy = noisy_accuracy(model, x, y, sigma=1.0, samples=5)
    # Bayes accuracy under N(0, 1 + 0.01) noise per coordinate: Phi(sqrt(8) / sqrt(1.01)) ~ 0.997
    assert accuracy > 0.97
    with pytest.raises(VerifierError):
        train_with_noise(model, x, y[:10], sigma=1.0)
