"""The runner's own check of sat witnesses: a counterexample found by sampling in onnxruntime passes; forged
ones (made-up outputs, an input outside the box, a point that does not violate the property) are rejected."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import MODELS
from verifier.bench.witness import check_result_text, check_witness, onnxruntime_output
from verifier.spec.witness import format_result

ONNX = MODELS / "acasxu_like.onnx"
PROP_1, PROP_2 = MODELS / "acasxu_like_prop_1.vnnlib", MODELS / "acasxu_like_prop_2.vnnlib"
LOWER = np.array([1000, 0.5, -3, 300, 300], dtype=np.float64)  # prop_2's box (read off the file)
UPPER = np.array([20000, 2.5, 3, 900, 900], dtype=np.float64)


@pytest.fixture(scope="module")
def counterexample() -> tuple[np.ndarray, np.ndarray]:
    """A violation of prop_2 (Y_3 <= Y_4) found by sampling the box through onnxruntime, not by our engine."""
    session = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    points = (LOWER + rng.random((4000, 5)) * (UPPER - LOWER)).astype(np.float32)
    for x in points:
        y = session.run(None, {name: x.reshape(1, 5)})[0].reshape(-1)
        if y[3] <= y[4] - 1e-3:
            return x.astype(np.float64), y.astype(np.float64)
    pytest.fail("no counterexample of prop_2 found by sampling")


def test_valid_witness_passes(counterexample):
    x, y = counterexample
    verdict = check_witness(ONNX, PROP_2, x, y)
    assert verdict.valid, verdict.reason
    assert check_result_text(ONNX, PROP_2, format_result("sat", x, y)).valid


def test_forged_outputs_are_rejected(counterexample):
    x, _ = counterexample
    y_forged = np.array([0.0, 0.0, 0.0, -10.0, 10.0])  # satisfies Y_3 <= Y_4, but the network says otherwise
    verdict = check_witness(ONNX, PROP_2, x, y_forged)
    assert not verdict.valid and "differ from onnxruntime" in verdict.reason


def test_outputs_slightly_off_within_relative_tolerance_pass(counterexample):
    x, y = counterexample
    assert check_witness(ONNX, PROP_2, x, y * (1 + 5e-4)).valid
    assert not check_witness(ONNX, PROP_2, x, y * (1 + 5e-3)).valid


def test_input_outside_the_box_is_rejected(counterexample):
    x, _ = counterexample
    x_out = x.copy()
    x_out[1] = UPPER[1] + 0.01
    y = onnxruntime_output(ONNX, x_out)  # honest outputs: only the box is wrong
    verdict = check_witness(ONNX, PROP_2, x_out, y)
    assert not verdict.valid and "outside every input box" in verdict.reason


def test_point_that_satisfies_the_property_is_rejected():
    x = (np.array([55000, -0.3, -0.3, 1000, 600]) + np.array([60760, 0.3, 0.3, 1200, 800])) / 2
    y = onnxruntime_output(ONNX, x)  # prop_1 is unsat, so no point of its box violates it
    verdict = check_witness(ONNX, PROP_1, x, y)
    assert not verdict.valid and "output rows" in verdict.reason


def test_malformed_witnesses_are_rejected(counterexample):
    x, y = counterexample
    assert "unreadable" in check_result_text(ONNX, PROP_2, "sat\n((X_0 1.0) (Y_0").reason
    assert "inputs" in check_witness(ONNX, PROP_2, x[:4], y).reason
    assert "outputs" in check_witness(ONNX, PROP_2, x, y[:4]).reason
    assert "NaN" in check_witness(ONNX, PROP_2, x, np.full(5, np.nan)).reason
