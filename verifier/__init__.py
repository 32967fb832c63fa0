"""A neural-network verification engine: ONNX/torch networks -> sound output bounds (IBP, CROWN), complete
verification (sat / unsat / unknown / timeout) and randomized smoothing.

Typical use::

    import verifier
    net = verifier.load_onnx("models/acasxu_like.onnx")
    lower, upper = net.bounds(box_lower, box_upper, method="crown")

The names below are imported on first use (module ``__getattr__``), so ``import verifier`` and the command
line's ``--help`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "Bounds": "verifier.network",
    "Network": "verifier.network",
    "from_torch": "verifier.api",
    "load_onnx": "verifier.api",
    "set_threads": "verifier.threads",
    "verify": "verifier.complete",
    "verify_robustness": "verifier.complete",
    "Result": "verifier.complete",
    "VerifyOptions": "verifier.complete",
    "certify": "verifier.certification",
    "CertifyOptions": "verifier.certification",
    "CertifyResult": "verifier.certification",
    "InvalidWeightError": "verifier.errors",
    "ModelLoadError": "verifier.errors",
    "OptionError": "verifier.errors",
    "ResourceLimitError": "verifier.errors",
    "ShapeError": "verifier.errors",
    "SpecError": "verifier.errors",
    "UnsupportedOperatorError": "verifier.errors",
    "VerifierError": "verifier.errors",
}

__all__ = [
    "Bounds",
    "CertifyOptions",
    "CertifyResult",
    "InvalidWeightError",
    "ModelLoadError",
    "Network",
    "OptionError",
    "ResourceLimitError",
    "Result",
    "ShapeError",
    "SpecError",
    "UnsupportedOperatorError",
    "VerifierError",
    "VerifyOptions",
    "certify",
    "from_torch",
    "load_onnx",
    "set_threads",
    "verify",
    "verify_robustness",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a subpackage such as ``verifier.ops``) when it is first asked for."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'verifier' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and editors: the names as if imported eagerly
    from verifier.api import from_torch, load_onnx
    from verifier.certification import CertifyOptions, CertifyResult, certify
    from verifier.complete import Result, VerifyOptions, verify, verify_robustness
    from verifier.errors import (
        InvalidWeightError,
        ModelLoadError,
        OptionError,
        ResourceLimitError,
        ShapeError,
        SpecError,
        UnsupportedOperatorError,
        VerifierError,
    )
    from verifier.network import Bounds, Network
    from verifier.threads import set_threads
