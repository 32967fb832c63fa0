"""The ``smoothing`` column: randomized smoothing (Cohen et al. 2019), exactly as ``verifier smooth`` certifies
one input: CERTIFY with ``n0`` selection and ``n`` estimation samples at noise ``sigma``, failure probability
``alpha``. Each input gets its own noise stream, seeded with ``seed + index``, so a resumed or partial run
gives every input the answer a full run gives it (``verifier smooth --seed S`` on that input alone agrees).

Reported apart: the guarantee is probabilistic (it holds with probability ``1 - alpha``) and about the
*smoothed* classifier, not the network. It is an L2 radius; for L-infinity balls of radius ``eps`` it
certifies ``eps`` when ``radius >= eps * sqrt(d)`` (the L-infinity ball lies inside that L2 ball).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from verifier.certification.model import PreparedModel
from verifier.smoothing import SmoothedClassifier


@dataclass(frozen=True)
class SmoothingSettings:
    """CERTIFY's parameters (see ``verifier smooth --help``)."""

    sigma: float
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    batch: int = 1000
    seed: int = 0
    backend: str = "auto"


def smoothed_classifier(model: PreparedModel, settings: SmoothingSettings) -> SmoothedClassifier:
    """The smoothed classifier of the model: the ONNX file itself (as ``verifier smooth`` runs it) when there
    is one and no normalisation is folded in, else the network on raw inputs. Sampling runs on the CPU
    (:class:`~verifier.smoothing.SmoothedClassifier` draws its noise there)."""
    if model.source is not None and model.mean is None:
        base = model.source
    else:
        base = model.original if model.mean is None else model.network
        if base.device.type != "cpu":
            base = copy.deepcopy(base).to("cpu")
    return SmoothedClassifier(base, settings.sigma, seed=settings.seed, backend=settings.backend)


def certify_inputs(smoothed: SmoothedClassifier, settings: SmoothingSettings, indices: np.ndarray,
                   x: np.ndarray) -> list[tuple[int, float, float]]:
    """``(prediction, radius, time_s)`` per input (prediction -1: abstained, radius 0 then)."""
    results = []
    for index, row in zip(indices, x):
        smoothed.reseed(settings.seed + int(index))
        out = smoothed.certify(row, n0=settings.n0, n=settings.n, alpha=settings.alpha, batch_size=settings.batch)
        results.append((int(out.label), float(out.radius), float(out.time_s)))
    return results
