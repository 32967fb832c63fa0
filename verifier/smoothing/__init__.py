"""Randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019): probabilistic L2 robustness
certificates for the *smoothed* classifier ``g(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0, sigma^2 I)``.

Any model we can run can be smoothed (an IR network, an ONNX file via onnxruntime, a torch module), so
this is also the verifier's fallback for networks too large for deterministic bounds or with operators
the bound engine cannot handle. Its certificates hold with probability ``1 - alpha`` over the sampling
and speak about ``g``, not about the base network ``f``: they are never a VNN-COMP ``unsat``.

Typical use::

    from verifier.smoothing import SmoothedClassifier
    smoothed = SmoothedClassifier("models/digits_smooth_mlp_sigma0.25.onnx", sigma=0.25, seed=0)
    result = smoothed.certify(x, n0=100, n=100_000, alpha=0.001)
    result.label, result.radius
"""

from verifier.smoothing.base_classifier import (
    BaseClassifier,
    NetworkClassifier,
    OnnxRuntimeClassifier,
    TorchClassifier,
    as_base_classifier,
)
from verifier.smoothing.bound_memory import BoundMemoryEstimate, estimate_bound_memory
from verifier.smoothing.certificate import SmoothingCertificate
from verifier.smoothing.checks import SmoothingArgumentError
from verifier.smoothing.fallback import (
    box_to_l2_ball,
    certify_fallback,
    should_fall_back,
    smoothing_inapplicable_reason,
)
from verifier.smoothing.smoothed import ABSTAIN, Certification, Prediction, SmoothedClassifier
from verifier.smoothing.statistics import certified_radius, clopper_pearson_lower, top_two_p_value

__all__ = [
    "ABSTAIN",
    "BaseClassifier",
    "BoundMemoryEstimate",
    "Certification",
    "NetworkClassifier",
    "OnnxRuntimeClassifier",
    "Prediction",
    "SmoothedClassifier",
    "SmoothingCertificate",
    "SmoothingArgumentError",
    "TorchClassifier",
    "as_base_classifier",
    "box_to_l2_ball",
    "certified_radius",
    "certify_fallback",
    "clopper_pearson_lower",
    "estimate_bound_memory",
    "should_fall_back",
    "smoothing_inapplicable_reason",
    "top_two_p_value",
]
