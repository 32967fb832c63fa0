"""Validation of the user-supplied parameters of randomized smoothing, with messages naming the argument."""

from __future__ import annotations

import math
import operator

from verifier.errors import VerifierError


class SmoothingArgumentError(VerifierError, ValueError):
    """A smoothing parameter (sigma, alpha, a sample count, a batch size) is out of its range."""


def check_sigma(sigma: float) -> float:
    """``sigma`` as a float; it must be a finite positive noise level."""
    if not _is_real(sigma) or not (math.isfinite(sigma) and sigma > 0):
        raise SmoothingArgumentError(f"sigma (the noise standard deviation) must be a finite number > 0, got {sigma!r}")
    return float(sigma)


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float; it must lie strictly between 0 and 1."""
    if not _is_real(alpha) or not 0 < alpha < 1:
        raise SmoothingArgumentError(f"alpha (the failure probability) must lie strictly in (0, 1), got {alpha!r}")
    return float(alpha)


def check_positive_int(value: int, name: str) -> int:
    """``value`` as an int; it must be a whole number >= 1 (a Python or NumPy integer)."""
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise SmoothingArgumentError(f"{name} must be a whole number >= 1, got {value!r}")
    return number


def check_counts(successes: int, trials: int) -> None:
    """``0 <= successes <= trials`` and ``trials >= 1``."""
    if trials < 1 or not 0 <= successes <= trials:
        raise SmoothingArgumentError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")


def _is_real(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (bool, str, bytes))
