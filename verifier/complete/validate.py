"""Re-check a candidate counterexample independently before ``sat`` is reported.

The candidate is rounded to the model's input type *inward* (so it stays inside the box), run through
onnxruntime on the original ONNX file (or through the engine's forward pass for a network made from a
torch module), and the output is checked against the specification with zero tolerance. The only slack
is where a box is thinner than the input type's spacing (an input fixed to a value float32 cannot
represent): there the witness is the nearest representable value.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from verifier.complete.result import Counterexample
from verifier.network import Network
from verifier.spec.specification import Specification
from verifier.spec.witness import check_counterexample


@lru_cache(maxsize=4)
def _session(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def round_inward(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` clipped to the box and cast to ``dtype`` with the box ends rounded towards its inside."""
    lo = lower.astype(dtype)
    lo = np.where(lo < lower, np.nextafter(lo, np.array(np.inf, dtype)), lo)
    hi = upper.astype(dtype)
    hi = np.where(hi > upper, np.nextafter(hi, np.array(-np.inf, dtype)), hi)
    hi = np.maximum(hi, lo)
    return np.clip(x.astype(dtype), lo, hi)


def reference_output(network: Network, x: np.ndarray) -> np.ndarray:
    """The model's output on ``x`` by an executor independent of the engine: onnxruntime on the source file;
    for a network converted from a torch module, the module itself; else the engine's own forward pass."""
    if network.source is not None:
        session = _session(str(network.source))
        feed = x.reshape(network.input_shape).astype(np.dtype(_onnx_input_type(session)))
        return np.asarray(session.run(None, {session.get_inputs()[0].name: feed})[0]).reshape(-1)
    module = getattr(network, "module", None)
    if module is not None:
        import torch

        parameter = next(iter(module.parameters()), None)
        where = parameter.device if parameter is not None else "cpu"
        with torch.no_grad():
            y = module(torch.from_numpy(np.ascontiguousarray(x.reshape(network.input_shape))).to(where))
        return y.detach().cpu().double().numpy().reshape(-1)
    return network.forward(x).detach().cpu().numpy().reshape(-1)


def _onnx_input_type(session) -> str:
    kind = session.get_inputs()[0].type
    return "float64" if "double" in kind else "float32"


def _input_dtype(network: Network) -> np.dtype:
    """The type the independent executor takes its input in (a witness is rounded into it)."""
    if network.source is not None:
        return np.dtype(_onnx_input_type(_session(str(network.source))))
    module = getattr(network, "module", None)
    if module is not None:
        parameter = next(iter(module.parameters()), None)
        return np.dtype(str(parameter.dtype).replace("torch.", "")) if parameter is not None else np.float32
    return np.dtype(np.float64)


def validate(network: Network, spec: Specification, x: np.ndarray, case_lower: np.ndarray,
             case_upper: np.ndarray) -> Counterexample | None:
    """A validated counterexample from the candidate ``x`` inside the box ``[case_lower, case_upper]``, or None."""
    dtype = _input_dtype(network)
    x_checked = round_inward(np.asarray(x, dtype=np.float64).reshape(-1), case_lower, case_upper, dtype)
    y = reference_output(network, x_checked)
    # The box check is exact, except where the box is thinner than the input type's spacing (a fixed input
    # not representable in float32): there the nearest representable value, one rounding away, is used.
    in_box = np.clip(x_checked.astype(np.float64), case_lower, case_upper)
    spacing = np.spacing(np.abs(in_box).astype(dtype)).astype(np.float64)
    if np.any(np.abs(in_box - x_checked) > spacing):
        return None
    check = check_counterexample(spec, in_box, y, tolerance=0.0)
    if not check:
        return None
    return Counterexample(x=x_checked, y=y.astype(np.float64), case=int(check.case))
