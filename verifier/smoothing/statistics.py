"""The hypothesis tests and confidence bounds of randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019).

Everything here is a function of vote counts only, so it can be checked against closed forms without
running a model.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta, binomtest, norm

from verifier.smoothing.checks import SmoothingArgumentError, check_alpha, check_counts


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower confidence bound on a binomial proportion.

    This is the bound ``pA_lower`` of CERTIFY (Cohen et al. 2019, Alg. 1, ``LowerConfBound``): the
    ``alpha`` quantile of ``Beta(nA, n - nA + 1)``; it is 0 when ``nA = 0`` (the Beta distribution is
    undefined there, and no positive lower bound can be claimed) and ``alpha ** (1 / n)`` when ``nA = n``.
    """
    check_counts(successes, trials)
    check_alpha(alpha)
    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def certified_radius(p_lower: float, sigma: float) -> float:
    """The L2 radius ``sigma * Phi^-1(pA_lower)`` within which the smoothed classifier keeps its class.

    Cohen et al. 2019, Thm. 1 with ``pB_upper = 1 - pA_lower``. Meaningful for ``pA_lower >= 1/2``
    (0 at 1/2, negative below, ``inf`` at 1).
    """
    return float(sigma * norm.ppf(p_lower))


def top_two_p_value(counts: np.ndarray) -> tuple[int, float]:
    """The most voted class and the two-sided binomial-test p-value of its lead over the runner-up.

    PREDICT (Cohen et al. 2019, Alg. 1): with ``nA`` and ``nB`` the two largest vote counts, the p-value
    of ``nA`` under ``Binomial(nA + nB, 1/2)``. The smoothed classifier abstains when it exceeds alpha.
    Ties between classes are broken towards the smaller class index.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or (counts < 0).any():
        raise SmoothingArgumentError(f"vote counts must be a non-empty 1-D array >= 0, got shape {counts.shape}")
    order = np.argsort(-counts, kind="stable")
    top = int(order[0])
    count_a = int(counts[top])
    count_b = int(counts[order[1]]) if counts.size > 1 else 0
    if count_a + count_b == 0:
        return top, 1.0
    return top, float(binomtest(count_a, count_a + count_b, 0.5).pvalue)

