"""Certified accuracy of a model over a dataset, by every certification method (``verifier certify``).

One module per method, composed by :func:`certify` (:mod:`verifier.certification.runner`):

=============  ==========================================================================================
``clean``      the prediction (:mod:`~verifier.certification.clean`)
``pgd``        a strong batched attack, the upper bound on certified accuracy (:mod:`~.pgd`)
``ibp``        interval bound propagation (:mod:`~.ibp`)
``crown``      CROWN, with the L2 ball's dual norm at the input for L2 (:mod:`~.crown`)
``alpha``      alpha-CROWN (:mod:`~.alpha`)
``lipschitz``  margin over a certified Lipschitz constant (:mod:`~.lipschitz`, :mod:`verifier.lipschitz`)
``complete``   the full verifier with a per-input budget (:mod:`~.complete`)
``smoothing``  randomized smoothing, probabilistic, reported apart (:mod:`~.smoothing`)
=============  ==========================================================================================

Typical use::

    import numpy as np, verifier
    data = np.load("models/digits_test.npz")
    result = verifier.certify("models/digits_mlp.onnx", data["x"], data["labels"], eps=[0.01, 0.03],
                              methods="pgd,ibp,crown")
    print(result.table())                  # certified accuracy per epsilon and method
    result.accuracy("crown", 0.01), result.rows[0]
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from verifier.certification.defaults import DEFAULT_METHODS

#: public name -> module that defines it (imported on first use: ``verifier certify --help`` needs no torch)
_EXPORTS = {
    "ALL_METHODS": "verifier.certification.result",
    "CertifyResult": "verifier.certification.result",
    "CertifyOptions": "verifier.certification.runner",
    "certify": "verifier.certification.runner",
}

__all__ = ["ALL_METHODS", "DEFAULT_METHODS", "CertifyOptions", "CertifyResult", "certify"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'verifier.certification' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from verifier.certification.result import ALL_METHODS, CertifyResult
    from verifier.certification.runner import CertifyOptions, certify
