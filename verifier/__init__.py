"""A neural-network verification engine: ONNX/torch networks -> sound output bounds (IBP, CROWN).

Typical use::

    import verifier
    net = verifier.load_onnx("models/acasxu_like.onnx")
    lower, upper = net.bounds(box_lower, box_upper, method="crown")
"""

import verifier.ops  # noqa: F401  (registers the operator converters)
from verifier.api import from_torch, load_onnx
from verifier.certification import CertifyOptions, CertifyResult, certify
from verifier.complete import Result, VerifyOptions, verify, verify_robustness
from verifier.errors import (
    InvalidWeightError,
    ModelLoadError,
    ShapeError,
    UnsupportedOperatorError,
    VerifierError,
)
from verifier.network import Bounds, Network
from verifier.threads import set_threads

__version__ = "0.1.0"

__all__ = [
    "Bounds",
    "CertifyOptions",
    "CertifyResult",
    "InvalidWeightError",
    "ModelLoadError",
    "Network",
    "ShapeError",
    "UnsupportedOperatorError",
    "certify",
    "VerifierError",
    "from_torch",
    "load_onnx",
    "set_threads",
    "verify",
    "verify_robustness",
    "Result",
    "VerifyOptions",
]
