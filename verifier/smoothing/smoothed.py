"""The smoothed classifier ``g(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0, sigma^2 I)``, and its
Monte Carlo PREDICT and CERTIFY procedures (Cohen, Rosenfeld and Kolter, ICML 2019, Alg. 1 and 2).

``g`` is never evaluated exactly: PREDICT returns its class with a bounded probability of being wrong,
CERTIFY returns a class and an L2 radius that hold with probability at least ``1 - alpha`` over the
sampling. Both count *hard labels* of the base classifier ``f`` on Gaussian perturbations of the input,
drawn in batches from one seeded generator: the same seed and the same calls give the same answers (on one
device: a GPU's generator draws other numbers than the CPU's). Noise, forward pass and vote counting stay on
the base classifier's device; only the final counts come back to the host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.device import DeviceLike
from verifier.errors import ShapeError
from verifier.network import as_tensor
from verifier.smoothing.base_classifier import BaseClassifier, as_base_classifier
from verifier.smoothing.checks import check_alpha, check_positive_int, check_sigma
from verifier.smoothing.statistics import certified_radius, clopper_pearson_lower, top_two_p_value

#: the class returned when the smoothed classifier abstains
ABSTAIN = -1


@dataclass(frozen=True, eq=False)
class Prediction:
    """PREDICT's answer for one input: ``label`` is ``g(x)``, or :data:`ABSTAIN` when the top two vote
    counts do not differ significantly (two-sided binomial test, p-value > alpha)."""

    label: int
    p_value: float
    counts: np.ndarray = field(repr=False)
    n: int
    alpha: float
    time_s: float

    @property
    def abstained(self) -> bool:
        return self.label == ABSTAIN


@dataclass(frozen=True, eq=False)
class Certification:
    """CERTIFY's answer for one input.

    ``label`` is the class ``cA`` chosen with the ``n0`` selection samples, or :data:`ABSTAIN` when the
    lower confidence bound ``p_lower`` on ``pA = P(f(x + eps) = cA)`` from ``n`` fresh samples is below
    1/2. Otherwise, with probability at least ``1 - alpha``, ``g(x') = label`` for every ``x'`` with
    ``||x' - x||_2 < radius = sigma * Phi^-1(p_lower)`` (``radius`` is 0 on abstention).
    """

    label: int
    radius: float
    p_lower: float
    count: int
    candidate: int
    counts_selection: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    n0: int
    n: int
    alpha: float
    sigma: float
    time_s: float

    @property
    def abstained(self) -> bool:
        return self.label == ABSTAIN


class SmoothedClassifier:
    """Gaussian randomized smoothing of a base classifier (Cohen et al. 2019).

    ``base``: anything :func:`~verifier.smoothing.base_classifier.as_base_classifier` accepts (a
    :class:`~verifier.network.Network`, an ONNX path, a torch module with ``input_shape``, a
    :class:`BaseClassifier`). ``sigma``: the noise standard deviation, in the model's input units; the
    base classifier should have been trained with Gaussian noise of this level. ``seed`` seeds the
    noise generator (see :meth:`reseed`). ``device``: where the base classifier runs and the noise is drawn
    (``"auto"``: the first CUDA device when torch sees one, else the CPU; an ONNX file run by onnxruntime
    runs on the CPU).
    """

    def __init__(self, base, sigma: float, seed: int = 0, input_shape: tuple[int, ...] | None = None,
                 backend: str = "auto", device: DeviceLike = "auto"):
        self.base: BaseClassifier = as_base_classifier(base, input_shape, backend, device)
        self.device = self.base.device
        self.sigma = check_sigma(sigma)
        self.num_classes = self.base.num_classes
        if self.num_classes < 2:
            raise ShapeError(f"smoothing needs a classifier with at least 2 outputs, the model has {self.num_classes}")
        self.generator = torch.Generator(device=self.device)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the noise stream from ``seed``."""
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)

    # -- inputs ---------------------------------------------------------------------------------------
    def as_batch(self, x: Tensor | np.ndarray, what: str = "input") -> Tensor:
        """``x`` as ``[B, *input_shape]``: one input (its shape, or flat) or a batch of them."""
        try:
            x = as_tensor(x, self.base.dtype, self.device)
        except (TypeError, ValueError, RuntimeError):
            raise ShapeError(f"{what} must be an array of numbers, got {type(x).__name__}") from None
        shape, size = tuple(x.shape), self.base.input_size
        if shape in (self.base.input_shape, (size,)):
            x = x.reshape(1, *self.base.input_shape)
        elif len(shape) >= 1 and shape[1:] in (self.base.input_shape, (size,)):
            x = x.reshape(-1, *self.base.input_shape)
        else:
            raise ShapeError(
                f"{what} of shape {shape} does not fit the model input {self.base.input_shape} ({size} values); "
                f"give one input of that shape, or a batch [B, ...] of them"
            )
        if not torch.isfinite(x).all():
            raise ShapeError(f"{what} contains NaN or infinite values")
        return x

    def _one(self, x: Tensor | np.ndarray) -> Tensor:
        batch = self.as_batch(x)
        if batch.shape[0] != 1:
            raise ShapeError(f"expected one input, got a batch of {batch.shape[0]}; use the *_batch method")
        return batch[0]

    # -- sampling -------------------------------------------------------------------------------------
    def sample_counts(self, x: Tensor | np.ndarray, num: int, batch_size: int = 1000) -> np.ndarray:
        """Votes of the base classifier on ``num`` noisy copies ``x + eps`` of one input: ``[num_classes]``.

        The noise is drawn in place into one reused buffer, so apart from the Gaussian generator the
        cost is the base classifier's batched forward pass.
        """
        num = check_positive_int(num, "the number of samples")
        batch_size = check_positive_int(batch_size, "batch_size")
        x = self._one(x)
        counts = torch.zeros(self.num_classes, dtype=torch.long, device=self.device)
        buffer = torch.empty(min(batch_size, num), *x.shape, dtype=x.dtype, device=self.device)
        remaining = num
        while remaining > 0:
            noisy = buffer[: min(batch_size, remaining)]
            torch.randn(noisy.shape, generator=self.generator, dtype=noisy.dtype, device=noisy.device, out=noisy)
            noisy.mul_(self.sigma).add_(x)
            counts += torch.bincount(self.base.classify(noisy).to(self.device), minlength=self.num_classes)
            remaining -= noisy.shape[0]
        return counts.cpu().numpy()

    # -- PREDICT --------------------------------------------------------------------------------------
    def predict(self, x: Tensor | np.ndarray, n: int = 1000, alpha: float = 0.001, batch_size: int = 1000
                ) -> Prediction:
        """PREDICT (Cohen et al. 2019, Alg. 1) for one input.

        Counts the base classifier's votes on ``n`` noisy samples; returns the top class if a two-sided
        binomial test rejects "the top two classes are equally likely" at level ``alpha``, else abstains.
        The returned class differs from ``g(x)`` with probability at most ``alpha`` (Thm. 2).
        """
        alpha = check_alpha(alpha)
        x = self._one(x)
        start = time.perf_counter()
        counts = self.sample_counts(x, n, batch_size)
        top, p_value = top_two_p_value(counts)
        label = top if p_value <= alpha else ABSTAIN
        return Prediction(label, p_value, counts, int(n), alpha, time.perf_counter() - start)

    def predict_batch(self, x: Tensor | np.ndarray, n: int = 1000, alpha: float = 0.001,
                      batch_size: int = 1000) -> list[Prediction]:
        """:meth:`predict` for each input of a batch ``[B, *input_shape]`` (one noise stream, in order)."""
        return [self.predict(row, n, alpha, batch_size) for row in self.as_batch(x)]

    # -- CERTIFY --------------------------------------------------------------------------------------
    def certify(self, x: Tensor | np.ndarray, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
                batch_size: int = 1000) -> Certification:
        """CERTIFY (Cohen et al. 2019, Alg. 1) for one input.

        Selection: the most voted class ``cA`` among ``n0`` noisy samples. Estimation: its count ``nA``
        among ``n`` *fresh* samples, the one-sided Clopper-Pearson lower bound ``pA_lower`` at level
        ``alpha``; abstain if ``pA_lower < 1/2``, else certify the L2 radius ``sigma * Phi^-1(pA_lower)``
        (Thm. 1). With probability at least ``1 - alpha`` the certificate is correct for ``g``.
        """
        alpha = check_alpha(alpha)
        n0 = check_positive_int(n0, "n0")
        n = check_positive_int(n, "n")
        x = self._one(x)
        start = time.perf_counter()
        counts_selection = self.sample_counts(x, n0, batch_size)
        candidate = int(np.argmax(counts_selection))
        counts = self.sample_counts(x, n, batch_size)
        count = int(counts[candidate])
        p_lower = clopper_pearson_lower(count, n, alpha)
        if p_lower < 0.5:
            label, radius = ABSTAIN, 0.0
        else:
            label, radius = candidate, certified_radius(p_lower, self.sigma)
        return Certification(label, radius, p_lower, count, candidate, counts_selection, counts, n0, n, alpha,
                             self.sigma, time.perf_counter() - start)

    def certify_batch(self, x: Tensor | np.ndarray, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
                      batch_size: int = 1000) -> list[Certification]:
        """:meth:`certify` for each input of a batch ``[B, *input_shape]`` (one noise stream, in order)."""
        return [self.certify(row, n0, n, alpha, batch_size) for row in self.as_batch(x)]
