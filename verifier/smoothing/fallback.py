"""Randomized smoothing as the verifier's fallback when deterministic bounds cannot be had.

How ``verify`` should use it (issue 6)::

    from verifier.smoothing.fallback import certify_fallback, should_fall_back, smoothing_inapplicable_reason

    # before any bound computation; model: an ONNX path (detects unsupported operators) or a Network
    fall_back, reason = should_fall_back(model, memory_budget=budget_bytes, batch=1, spec_rows=outputs - 1)
    if fall_back:
        why_not = smoothing_inapplicable_reason(robustness=is_robustness, norm="l2", sigma=options.smoothing_sigma)
        if why_not is not None:
            return unknown(f"{reason}; {why_not}")             # says clearly why no certificate exists
        certificate = certify_fallback(model, center, label, epsilon_l2, sigma=options.smoothing_sigma,
                                       n0=100, n=100_000, alpha=0.001, seed=0, fallback_reason=reason)
        return unknown(reason, smoothing=certificate)          # never unsat: certificate.vnncomp_result == "unknown"
    # else run CROWN with the engine's per-chunk budget:
    #   network.bounds(..., memory_budget=estimate_bound_memory(network).chunk_budget(budget_bytes))

``budget_bytes`` is the peak the whole bound computation may use. ``should_fall_back`` takes a path too,
so a model whose operators the IR front end rejects is detected, and ``certify_fallback`` then runs it
with onnxruntime.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from verifier.device import DeviceLike
from verifier.errors import ShapeError, UnsupportedOperatorError, VerifierError
from verifier.network import Network
from verifier.smoothing.bound_memory import estimate_bound_memory
from verifier.smoothing.certificate import SmoothingCertificate
from verifier.smoothing.checks import SmoothingArgumentError
from verifier.smoothing.smoothed import ABSTAIN, SmoothedClassifier

#: most backward passes per layer the chunked CROWN may need before smoothing is preferred (a heuristic
#: stand-in for a time estimate: each pass is a full backward sweep of the network)
DEFAULT_MAX_CHUNKS = 64


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def should_fall_back(
    model: Network | str | os.PathLike,
    memory_budget: int,
    batch: int = 1,
    spec_rows: int | None = None,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
    intermediate: str = "crown",
) -> tuple[bool, str]:
    """Whether to certify ``model`` by randomized smoothing instead of bound propagation, and why.

    Falls back when the IR front end rejects one of the model's operators (``model`` given as a path),
    when CROWN cannot stay within ``memory_budget`` bytes even one neuron per backward pass, or when
    staying within it would take more than ``max_chunks`` passes for some layer. The memory is the
    worst case of :func:`~verifier.smoothing.bound_memory.estimate_bound_memory` for ``batch`` boxes and
    ``spec_rows`` output rows; ``memory_budget`` is the peak the whole bound computation may reach (pass
    ``estimate.chunk_budget(memory_budget)`` as the engine's own per-chunk ``memory_budget``).
    """
    if memory_budget <= 0:
        raise SmoothingArgumentError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    if isinstance(model, (str, os.PathLike)):
        from verifier.api import load_onnx

        try:
            model = load_onnx(model)
        except UnsupportedOperatorError as error:
            return True, (f"the bound engine cannot handle the model ({error}); onnxruntime can still run it, "
                          "so it can be certified by randomized smoothing")
    if not isinstance(model, Network):
        raise VerifierError(f"should_fall_back needs a Network or an ONNX path, got a {type(model).__name__}")
    estimate = estimate_bound_memory(model, batch, spec_rows, intermediate)
    peak, budget = estimate.peak_bytes, _mib(memory_budget)
    if peak <= memory_budget:
        return False, f"CROWN fits: worst-case peak {_mib(peak)} within the {budget} budget"
    if not estimate.fits(memory_budget):
        largest = max(estimate.layers, key=lambda layer: layer.one_row_bytes)
        return True, (f"CROWN needs at least {_mib(estimate.min_peak_bytes)} even one neuron per backward pass "
                      f"(layer {largest.name!r}, {largest.width} values wide; interval bounds "
                      f"{_mib(estimate.interval_bytes)}), over the {budget} budget")
    chunks = estimate.chunks(memory_budget)
    name = max(chunks, key=chunks.get)
    layer = next(layer for layer in estimate.layers if layer.name == name)
    if chunks[name] > max_chunks:
        return True, (f"CROWN would need {chunks[name]} backward passes for layer {name!r} ({layer.rows} neurons) "
                      f"to stay within the {budget} budget (worst-case unchunked peak {_mib(peak)}); "
                      f"the limit is {max_chunks}")
    return False, (f"CROWN fits by chunking: at most {chunks[name]} backward passes per layer within the {budget} "
                   f"budget (worst-case unchunked peak {_mib(peak)})")


def smoothing_inapplicable_reason(robustness: bool, norm: str, sigma: float | None) -> str | None:
    """Why a property cannot be certified by smoothing, or ``None`` when it can.

    Smoothing certifies *classification robustness* (the argmax stays ``label``) on an *L2* ball, at a
    noise level ``sigma`` the base model was trained for, which only the user can say.
    """
    if not robustness:
        return ("randomized smoothing certifies only classification robustness (the top class stays the label); "
                "this property constrains the outputs otherwise")
    if norm.lower().replace("-", "") not in ("l2", "2"):
        return (f"randomized smoothing certifies L2 balls, the property's input set is {norm} "
                "(a box is inside the L2 ball of its half-diagonal, see box_to_l2_ball, usually far too large)")
    if sigma is None:
        return ("no smoothing noise level given: the base model must have been trained with Gaussian noise at the "
                "sigma used to certify, so sigma must be passed explicitly")
    return None


def box_to_l2_ball(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, float]:
    """The centre of a box and the L2 radius (half its diagonal) of the smallest ball around it containing it.

    A smoothing certificate of that radius covers the box; the radius grows as ``sqrt(d)`` times the
    box's half-width, so this only helps for small boxes.
    """
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if lower.shape != upper.shape:
        raise ShapeError(f"box corners have different shapes {lower.shape} and {upper.shape}")
    if (lower > upper).any():
        raise ShapeError("the box is empty: some lower bound exceeds its upper bound")
    return (lower + upper) / 2, float(np.linalg.norm((upper - lower) / 2))


def certify_fallback(
    model,
    center: np.ndarray | torch.Tensor,
    label: int,
    epsilon_l2: float,
    sigma: float,
    *,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    seed: int = 0,
    fallback_reason: str = "",
    input_shape: tuple[int, ...] | None = None,
    backend: str = "auto",
    device: DeviceLike = "auto",
) -> SmoothingCertificate:
    """Certify L2 robustness of the smoothed ``model`` around ``center`` by CERTIFY (Cohen et al. 2019).

    ``model``: a :class:`~verifier.network.Network`, an ONNX path (run by our IR, or by onnxruntime when
    the IR rejects an operator), a torch module with ``input_shape``, or a base classifier. The answer
    is ``certified`` when CERTIFY returns ``label`` with a radius above ``epsilon_l2``; it holds with
    probability ``1 - alpha`` and concerns the smoothed classifier only. The noise is drawn and the model
    run on ``device`` (see :class:`~verifier.smoothing.smoothed.SmoothedClassifier`).
    """
    if not (isinstance(epsilon_l2, (int, float)) and math.isfinite(epsilon_l2) and epsilon_l2 >= 0):
        raise SmoothingArgumentError(f"epsilon_l2 must be a finite number >= 0, got {epsilon_l2!r}")
    smoothed = SmoothedClassifier(model, sigma, seed=seed, input_shape=input_shape, backend=backend, device=device)
    if not (isinstance(label, (int, np.integer)) and 0 <= label < smoothed.num_classes):
        raise VerifierError(f"label must be a class index in [0, {smoothed.num_classes}), got {label!r}")
    result = smoothed.certify(center, n0=n0, n=n, alpha=alpha, batch_size=batch_size)
    if result.label == ABSTAIN:
        status = "abstained"
    elif result.label != label:
        status = "other_class"
    elif result.radius > epsilon_l2:  # Thm. 1 holds on the open ball ||delta|| < radius
        status = "certified"
    else:
        status = "radius_too_small"
    return SmoothingCertificate(
        status=status, label=int(label), predicted=result.label, radius=result.radius, epsilon_l2=float(epsilon_l2),
        sigma=smoothed.sigma, alpha=result.alpha, n0=result.n0, n=result.n, count=result.count,
        p_lower=result.p_lower, counts=[int(c) for c in result.counts], fallback_reason=fallback_reason,
        time_s=result.time_s, seed=seed,
    )
