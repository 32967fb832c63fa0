"""Classification robustness: "the network's top class stays ``label`` on the L-infinity or L2 ball of radius
``epsilon`` around ``center``", with the randomized-smoothing fallback.

Deterministic first: the property becomes one case per other class (``y_label - y_j <= 0`` is a
counterexample) over the box around the centre; for an L2 ball that box encloses the ball, so a proof on the
box is a proof on the ball, and a witness counts only if it lies inside the ball. When deterministic bounds
cannot be had (an operator the bound engine does not handle, or CROWN's memory estimate beyond the budget)
and the ball is L2 with a smoothing noise level given, the smoothed classifier is certified instead
(Cohen et al. 2019): the answer stays ``unknown``, with the probabilistic certificate attached. In every other
case the result says why no certificate was possible.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from verifier.cancel import TimeLimitReached, time_limit
from verifier.complete.api import VerifyOptions, verify
from verifier.complete.result import SAT, TIMEOUT, UNKNOWN, Result
from verifier.device import DeviceLike
from verifier.errors import OptionError, ShapeError, UnsupportedOperatorError
from verifier.network import Network
from verifier.spec.specification import Case, Specification

#: peak bytes a bound computation may use before falling back (4 GiB)
DEFAULT_MEMORY_BUDGET = 4 * 2**30


def robustness_specification(center: np.ndarray, label: int, epsilon: float, n_outputs: int,
                             lower_limit: float | None = None, upper_limit: float | None = None) -> Specification:
    """The VNN-LIB-style property of L-infinity robustness: the box ``center +- epsilon`` (clipped to the
    optional input domain) and one case ``y_label - y_j <= 0`` per other class ``j``."""
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    lower, upper = center - epsilon, center + epsilon
    if lower_limit is not None:
        lower = np.maximum(lower, lower_limit)
    if upper_limit is not None:
        upper = np.minimum(upper, upper_limit)
    return box_robustness_specification(lower, upper, label, n_outputs)


def box_robustness_specification(lower: np.ndarray, upper: np.ndarray, label: int, n_outputs: int
                                 ) -> Specification:
    """"The top class stays ``label``" on the box ``[lower, upper]`` (flat): one case ``y_label - y_j <= 0``
    (the unsafe set) per other class ``j``, every case over the same box."""
    cases = []
    for j in range(n_outputs):
        if j == label:
            continue
        C = np.zeros((1, n_outputs))
        C[0, label], C[0, j] = 1.0, -1.0
        cases.append(Case(lower, upper, C, np.zeros(1)))
    return Specification(lower.size, n_outputs, tuple(cases))


def verify_robustness(
    model: Network | str | os.PathLike | torch.nn.Module,
    center: np.ndarray,
    label: int,
    epsilon: float,
    norm: str = "linf",
    timeout: float | None = None,
    options: VerifyOptions | None = None,
    smoothing_sigma: float | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    smoothing_samples: int = 100_000,
    device: DeviceLike = "auto",
) -> Result:
    """Decide whether the top class stays ``label`` on the ``norm`` ball (``"linf"`` or ``"l2"``) of radius
    ``epsilon`` around ``center``; falls back to randomized smoothing as described in the module docstring.

    ``model``: a :class:`Network`, an ONNX path, or a ``torch.nn.Module`` (converted with
    :func:`verifier.from_torch`, ``center`` being its example input; a batch dimension of 1 is added when
    ``center`` has none; counterexamples are re-checked by running the module itself). ``unsat`` means the
    network is robust there: no input of the ball changes the top class.
    ``device``: where bounds, search, attacks and smoothing run (see :func:`verifier.complete.verify`)."""
    from verifier.smoothing.fallback import certify_fallback, should_fall_back, smoothing_inapplicable_reason

    if not isinstance(norm, str) or norm.lower().replace("-", "").replace("_", "") not in ("linf", "l2"):
        raise OptionError(f"norm must be 'linf' or 'l2', got {norm!r}")
    norm = norm.lower().replace("-", "").replace("_", "")
    if not isinstance(epsilon, (int, float, np.floating, np.integer)) or not (math.isfinite(epsilon) and epsilon >= 0):
        raise OptionError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise OptionError(f"label must be a class index (an integer), got {label!r}")
    try:
        center = np.asarray(center.detach().cpu() if isinstance(center, torch.Tensor) else center, dtype=np.float64)
    except (TypeError, ValueError):
        raise OptionError("center must be an array of numbers") from None
    if not np.all(np.isfinite(center)):
        raise OptionError("center contains NaN or infinite values")
    started = time.monotonic()
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout >= 0):
        raise OptionError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    end = None if timeout is None else started + timeout
    try:
        with time_limit(end):
            network, reason = _network(model, center, options)
    except TimeLimitReached:
        return Result(TIMEOUT, message="the time limit was reached while loading the model")
    if network is not None:
        if not (0 <= label < network.output_size):
            raise ShapeError(f"label {label} is not one of the network's {network.output_size} outputs")
        fall_back, why = should_fall_back(network, memory_budget, batch=1, spec_rows=network.output_size - 1)
        if fall_back:
            reason = why
    if reason is not None:
        why_not = smoothing_inapplicable_reason(robustness=True, norm="l2" if norm == "l2" else "L-infinity",
                                                sigma=smoothing_sigma)
        if why_not is not None:
            return Result(UNKNOWN, message=f"no deterministic bounds: {reason}; no smoothing certificate: {why_not}")
        certificate = certify_fallback(model if network is None else network, center, label, epsilon,
                                       sigma=smoothing_sigma, n=smoothing_samples, fallback_reason=reason,
                                       device=device)
        return Result(UNKNOWN, certificate=certificate,
                      message=f"deterministic bounds out of reach ({reason}); {certificate.statement()}")
    spec = robustness_specification(center, label, epsilon, network.output_size)
    left = None if end is None else max(0.0, end - time.monotonic())
    result = verify(network, spec, timeout=left, options=options, device=device)
    if result.status == SAT and norm == "l2":
        distance = float(np.linalg.norm(result.counterexample.x.astype(np.float64) - np.asarray(center).reshape(-1)))
        if distance > epsilon:
            return Result(UNKNOWN, stats=result.stats,
                          message=f"a counterexample exists in the enclosing box but at L2 distance {distance:.4g} > "
                                  f"{epsilon}: the L2 property is undecided")
    return result


def _network(model, center: np.ndarray, options: VerifyOptions | None) -> tuple[Network | None, str | None]:
    """The model as a network (loaded or converted), or None with the reason the bound engine cannot take it."""
    if isinstance(model, Network):
        return model, None
    if isinstance(model, torch.nn.Module):
        from verifier.api import from_torch

        parameter = next(iter(model.parameters()), None)
        dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        example = torch.as_tensor(center, dtype=dtype)
        return from_torch(model, example if example.dim() > 1 and example.shape[0] == 1 else example.unsqueeze(0)), None
    from verifier.api import load_onnx

    try:
        return load_onnx(model, memory_limit=options.memory_limit if options else None), None
    except UnsupportedOperatorError as error:
        return None, f"the bound engine cannot handle the model ({error})"
