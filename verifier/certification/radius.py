"""Radius mode: for each input the largest epsilon a method certifies, by bisection to a stated tolerance.

Certification is monotone in epsilon for the *property* (a smaller set lies inside a larger one), so a
certificate at ``r`` holds at every ``eps <= r``; the bisection keeps ``lo`` (certified) and ``hi`` (not
certified, or known to hold a counterexample) and halves the gap until it is at most the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bisect(check: Callable[[np.ndarray, np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, tol: float,
           test_upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched bisection: ``check(eps, idx)`` says for the inputs ``idx`` whether each is certified at its
    ``eps``. Inputs with ``test_upper`` are first checked at ``hi`` (the cap: certified there, the radius is
    ``hi``); then ``[lo, hi]`` is halved while wider than ``tol``. Returns the final ``(lo, hi)``."""
    lo, hi = lo.astype(np.float64).copy(), hi.astype(np.float64).copy()
    idx = np.flatnonzero(test_upper & (hi > lo))
    if idx.size:
        ok = np.asarray(check(hi[idx], idx), dtype=bool)
        lo[idx[ok]] = hi[idx[ok]]
    while True:
        idx = np.flatnonzero(hi - lo > tol)
        if not idx.size:
            return lo, hi
        mid = (lo[idx] + hi[idx]) / 2
        ok = np.asarray(check(mid, idx), dtype=bool)
        lo[idx[ok]] = mid[ok]
        hi[idx[~ok]] = mid[~ok]


def steps_needed(lo: float, hi: float, tol: float) -> int:
    """How many halvings bring ``[lo, hi]`` to width ``tol`` or less."""
    width = hi - lo
    return 0 if width <= tol else int(np.ceil(np.log2(width / tol)))
