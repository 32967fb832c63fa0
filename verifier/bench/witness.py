"""The benchmark runner's own check of a ``sat`` answer, as the VNN-COMP scoring script does it.

The witness ``(x, y)`` read from the result file counts only if

1. running ``x`` (cast to the model's input type) through onnxruntime on the *original* ONNX file gives an
   output within a relative L-inf error of 1e-3 of the listed ``y``
   (``||y_ort - y||_inf / ||y||_inf <= 1e-3``);
2. ``x`` lies in one of the property's input boxes up to an absolute 1e-4, and onnxruntime's output satisfies
   every output constraint of that case up to an absolute 1e-4.

Nothing of the verifier's own execution is used, so a witness forged or mis-computed by the engine is caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from verifier.spec.witness import VNNCOMP_OUTPUT_RTOL, VNNCOMP_TOLERANCE, check_counterexample, parse_counterexample


@dataclass(frozen=True)
class WitnessVerdict:
    """Whether a ``sat`` answer's witness holds; ``reason`` says why, in one line."""

    valid: bool
    reason: str

    def __bool__(self) -> bool:
        return self.valid

    def describe(self) -> str:
        """``valid`` or ``invalid: <reason>`` (the ``witness`` column of results.csv)."""
        return "valid" if self.valid else f"invalid: {self.reason}"


def onnxruntime_output(onnx_path: str | Path, x: np.ndarray) -> np.ndarray:
    """The first output of the model on ``x`` (flattened, C order), by onnxruntime on one CPU thread.

    ``x`` is reshaped to the model's first input (a symbolic dimension taken as 1) and cast to its type.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in model_input.shape]
    if int(np.prod(shape)) != x.size:
        raise ValueError(f"the witness has {x.size} inputs; the model's input {model_input.name!r} has shape "
                         f"{model_input.shape}")
    dtype = np.float64 if "double" in model_input.type else np.float32
    output = session.run(None, {model_input.name: x.reshape(shape).astype(dtype)})[0]
    return np.asarray(output, dtype=np.float64).reshape(-1)


def check_witness(onnx_path: str | Path, vnnlib_path: str | Path, x: np.ndarray, y: np.ndarray,
                  tolerance: float = VNNCOMP_TOLERANCE, output_rtol: float = VNNCOMP_OUTPUT_RTOL) -> WitnessVerdict:
    """Check the witness ``(x, y)`` of a ``sat`` answer against the network and property (module docstring)."""
    from verifier.spec import parse_vnnlib

    xs = np.asarray(x, dtype=np.float64).reshape(-1)
    ys = np.asarray(y, dtype=np.float64).reshape(-1)
    if xs.size == 0:
        return WitnessVerdict(False, "the witness lists no inputs")
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return WitnessVerdict(False, "the witness contains NaN or infinite values")
    try:
        y_ort = onnxruntime_output(onnx_path, xs)
    except Exception as error:  # noqa: BLE001 - any failure to run the witness makes it unusable
        return WitnessVerdict(False, f"onnxruntime could not run the witness: {_one_line(error)}")
    if ys.size != y_ort.size:
        return WitnessVerdict(False, f"the witness lists {ys.size} outputs; the model has {y_ort.size}")
    difference = float(np.max(np.abs(y_ort - ys)))
    scale = float(np.max(np.abs(ys)))
    relative = difference / scale if scale > 0 else difference
    if relative > output_rtol:
        return WitnessVerdict(False, f"listed outputs differ from onnxruntime's by {difference:.3g} "
                                     f"(relative {relative:.3g} > {output_rtol:g})")
    try:
        spec = parse_vnnlib(vnnlib_path, n_inputs=xs.size, n_outputs=y_ort.size)
    except Exception as error:  # noqa: BLE001
        return WitnessVerdict(False, f"the property could not be read: {_one_line(error)}")
    check = check_counterexample(spec, xs, y_ort, tolerance=tolerance)
    if not check:
        return WitnessVerdict(False, check.reason)
    return WitnessVerdict(True, f"onnxruntime agrees (relative error {relative:.2g}); {check.reason}")


def check_result_text(onnx_path: str | Path, vnnlib_path: str | Path, text: str) -> WitnessVerdict:
    """Check the witness in a VNN-COMP result file's text (``sat`` then ``((X_0 v) ... (Y_0 v))``)."""
    try:
        x, y = parse_counterexample(text)
    except Exception as error:  # noqa: BLE001
        return WitnessVerdict(False, f"unreadable counterexample: {_one_line(error)}")
    return check_witness(onnx_path, vnnlib_path, x, y)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(error).__name__
