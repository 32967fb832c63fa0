"""Randomized smoothing statistics against closed forms (Cohen, Rosenfeld and Kolter 2019)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from verifier.errors import VerifierError
from verifier.smoothing import ABSTAIN, SmoothedClassifier, certified_radius, clopper_pearson_lower, top_two_p_value


def constant_classifier(label: int, classes: int = 3, dim: int = 4) -> torch.nn.Module:
    """A torch classifier that outputs ``label`` for every input."""
    model = torch.nn.Linear(dim, classes)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.bias[label] = 1.0
    return model


@pytest.mark.parametrize("n", [1, 10, 1000, 100_000])
def test_clopper_pearson_all_successes_is_alpha_to_the_one_over_n(n):
    # P(Binomial(n, p) >= n) = p^n = alpha  =>  p = alpha^(1/n)
    assert clopper_pearson_lower(n, n, 0.001) == pytest.approx(0.001 ** (1 / n), rel=1e-10)


def test_clopper_pearson_no_success_is_zero():
    assert clopper_pearson_lower(0, 100_000, 0.001) == 0.0
    assert clopper_pearson_lower(0, 1, 0.5) == 0.0


def test_clopper_pearson_cohen_example():
    # nA = 99 000 of n = 100 000 at alpha = 0.001: pA >= 0.98899 and radius 2.290 sigma (the exact
    # bound is 0.9889893..., which the quoted 0.98899 rounds to five places)
    p_lower = clopper_pearson_lower(99_000, 100_000, 0.001)
    assert round(p_lower, 5) == 0.98899
    assert certified_radius(p_lower, 1.0) == pytest.approx(2.290, abs=5e-4)
    assert certified_radius(p_lower, 0.25) == pytest.approx(0.25 * 2.290, abs=2e-4)


@pytest.mark.parametrize("successes,trials,alpha", [(1, 10, 0.05), (7, 10, 0.01), (500, 1000, 0.001), (987, 1000, 0.1)])
def test_clopper_pearson_solves_the_binomial_tail_equation(successes, trials, alpha):
    # the exact one-sided bound is the p with P(Binomial(n, p) >= nA) = alpha
    p_lower = clopper_pearson_lower(successes, trials, alpha)
    assert binom.sf(successes - 1, trials, p_lower) == pytest.approx(alpha, rel=1e-6)


def test_radius_is_zero_at_one_half():
    assert certified_radius(0.5, 0.7) == 0.0
    assert certified_radius(norm.cdf(1.5), 0.5) == pytest.approx(0.75)


def test_top_two_p_value_is_the_two_sided_binomial_test():
    # nA = 10, nB = 0: two-sided p-value 2 * 2^-10
    assert top_two_p_value(np.array([0, 10, 0])) == (1, pytest.approx(2 * 0.5**10))
    top, p_value = top_two_p_value(np.array([30, 5, 20]))
    assert top == 0
    assert p_value == pytest.approx(2 * binom.cdf(20, 50, 0.5))


def test_predict_abstains_for_n_10_at_alpha_0_001():
    # even a unanimous vote of 10 has two-sided p-value 2^-9 = 0.00195 > 0.001 (Cohen et al. 2019, Sec. 3.2)
    smoothed = SmoothedClassifier(constant_classifier(2), sigma=0.5, input_shape=(4,))
    prediction = smoothed.predict(np.zeros(4), n=10, alpha=0.001)
    assert prediction.abstained and prediction.label == ABSTAIN
    assert prediction.counts.tolist() == [0, 0, 10]
    assert prediction.p_value == pytest.approx(2 * 0.5**10)
    # eleven unanimous votes give 2^-10 < 0.001: the class is returned
    assert smoothed.predict(np.zeros(4), n=11, alpha=0.001).label == 2


def test_certify_constant_classifier_gives_the_all_successes_radius():
    smoothed = SmoothedClassifier(constant_classifier(1), sigma=0.5, input_shape=(4,))
    result = smoothed.certify(np.zeros(4), n0=10, n=1000, alpha=0.001)
    assert result.label == 1 and result.count == 1000
    assert result.radius == pytest.approx(0.5 * norm.ppf(0.001 ** (1 / 1000)))


def test_parameter_errors_are_verifier_errors():
    model = constant_classifier(0)
    for sigma in (0, -1.0, float("nan"), float("inf"), "0.5"):
        with pytest.raises(VerifierError, match="sigma"):
            SmoothedClassifier(model, sigma=sigma, input_shape=(4,))
    smoothed = SmoothedClassifier(model, sigma=0.5, input_shape=(4,))
    with pytest.raises(VerifierError, match="alpha"):
        smoothed.certify(np.zeros(4), alpha=1.5)
    with pytest.raises(VerifierError, match="n0"):
        smoothed.certify(np.zeros(4), n0=0)
    with pytest.raises(VerifierError, match="batch_size"):
        smoothed.predict(np.zeros(4), batch_size=2.5)
    with pytest.raises(VerifierError, match="does not fit"):
        smoothed.certify(np.zeros(5))
    with pytest.raises(VerifierError, match="NaN"):
        smoothed.certify(np.full(4, np.nan))
    with pytest.raises(VerifierError, match="array of numbers"):
        smoothed.certify(["a", "b", "c", "d"])
    with pytest.raises(VerifierError, match="one input"):
        smoothed.certify(np.zeros((2, 4)))
