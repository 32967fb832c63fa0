"""CERTIFY and PREDICT on a linear base classifier, where the smoothed classifier is known exactly.

For ``f(x) = [w . x + b > 0]`` (class 0, else class 1) and noise ``N(0, sigma^2 I)``:
``pA = P(f(x + eps) = 0) = Phi(m / (sigma ||w||))`` with margin ``m = w . x + b``, and the true robust
radius of the smoothed classifier is the distance to the hyperplane, ``m / ||w|| = sigma Phi^-1(pA)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from verifier.smoothing import ABSTAIN, SmoothedClassifier

W = torch.tensor([0.6, -0.8, 1.2, 0.4])
B = 0.1
SIGMA = 0.5


def linear_classifier() -> torch.nn.Module:
    """Scores ``[w . x + b, 0]``: class 0 iff ``w . x + b > 0``."""
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([W, torch.zeros(4)]))
        model.bias.copy_(torch.tensor([B, 0.0]))
    return model


def point_with_probability(p_a: float) -> tuple[np.ndarray, float]:
    """An input whose class-0 probability under the noise is ``p_a``, and its true radius."""
    norm_w = float(W.norm())
    margin = SIGMA * norm_w * norm.ppf(p_a)
    x = (margin - B) * W / norm_w**2
    return x.numpy(), margin / norm_w


def test_vote_frequency_matches_closed_form():
    x, _ = point_with_probability(0.8)
    smoothed = SmoothedClassifier(linear_classifier(), SIGMA, seed=1, input_shape=(4,))
    n = 200_000
    counts = smoothed.sample_counts(torch.as_tensor(x), n, batch_size=10_000)
    assert counts.sum() == n
    # within 5 standard deviations of Binomial(n, 0.8)
    assert abs(counts[0] - 0.8 * n) < 5 * np.sqrt(n * 0.8 * 0.2)


def test_certify_overclaims_no_more_often_than_alpha():
    # CERTIFY's guarantee: P(certified radius > true radius, or a wrong class) <= alpha
    x, true_radius = point_with_probability(0.9)
    smoothed = SmoothedClassifier(linear_classifier(), SIGMA, seed=2, input_shape=(4,))
    alpha, repeats = 0.05, 2000
    results = [smoothed.certify(x, n0=50, n=500, alpha=alpha, batch_size=550) for _ in range(repeats)]
    overclaims = sum(r.label != ABSTAIN and (r.label != 0 or r.radius > true_radius) for r in results)
    # a Binomial(repeats, alpha) count exceeds this with probability 1e-6
    assert overclaims <= binom.ppf(1 - 1e-6, repeats, alpha)
    # the test has power: the plug-in estimate nA / n (no confidence bound) overclaims about half the time
    plug_in = sum(SIGMA * norm.ppf(min(r.count / r.n, 1 - 1e-12)) > true_radius for r in results)
    assert plug_in > binom.ppf(1 - 1e-6, repeats, alpha)
    # and the counts are Binomial(n, 0.9) overall
    total = sum(r.count for r in results)
    assert abs(total - 0.9 * 500 * repeats) < 5 * np.sqrt(500 * repeats * 0.9 * 0.1)


def test_certified_radius_approaches_the_true_radius_as_n_grows():
    x, true_radius = point_with_probability(0.9)
    smoothed = SmoothedClassifier(linear_classifier(), SIGMA, seed=3, input_shape=(4,))
    gaps = []
    for n in (1_000, 10_000, 100_000, 1_000_000):
        result = smoothed.certify(x, n0=100, n=n, alpha=0.001, batch_size=100_000)
        assert result.label == 0
        gaps.append(true_radius - result.radius)
    assert gaps[-1] < gaps[0] / 5
    # at n = 10^6 the Clopper-Pearson slack is about 3 sigma_p / phi(Phi^-1(pA)), ~0.005 sigma
    assert abs(gaps[-1]) < 0.015 * SIGMA


def test_predict_rarely_returns_a_class_on_an_exact_tie():
    # on the hyperplane both classes have probability 1/2: g is undefined, and PREDICT must abstain
    # except with probability at most alpha
    x, _ = point_with_probability(0.5)
    smoothed = SmoothedClassifier(linear_classifier(), SIGMA, seed=4, input_shape=(4,))
    alpha, repeats = 0.05, 1000
    answered = sum(not smoothed.predict(x, n=200, alpha=alpha, batch_size=200).abstained for _ in range(repeats))
    assert answered <= binom.ppf(1 - 1e-6, repeats, alpha)


def test_predict_returns_the_smoothed_class_far_from_the_boundary():
    x, _ = point_with_probability(0.99)
    smoothed = SmoothedClassifier(linear_classifier(), SIGMA, seed=5, input_shape=(4,))
    assert smoothed.predict(x, n=1000, alpha=0.001).label == 0
    x_other, _ = point_with_probability(0.01)
    assert smoothed.predict(x_other, n=1000, alpha=0.001).label == 1
    assert smoothed.certify(x_other, n0=100, n=10_000).label == 1


def test_same_seed_same_answers_and_batch_equals_one_by_one():
    xs = np.stack([point_with_probability(p)[0] for p in (0.7, 0.95, 0.3)])
    smoothed = SmoothedClassifier(linear_classifier(), SIGMA, seed=6, input_shape=(4,))
    batch = smoothed.certify_batch(xs, n0=100, n=5000)
    smoothed.reseed(6)
    one_by_one = [smoothed.certify(x, n0=100, n=5000) for x in xs]
    again = SmoothedClassifier(linear_classifier(), SIGMA, seed=6, input_shape=(4,)).certify_batch(xs, 100, 5000)
    for a, b, c in zip(batch, one_by_one, again):
        assert (a.label, a.radius, a.count) == (b.label, b.radius, b.count) == (c.label, c.radius, c.count)
    different = SmoothedClassifier(linear_classifier(), SIGMA, seed=7, input_shape=(4,)).certify_batch(xs, 100, 5000)
    assert [r.count for r in different] != [r.count for r in batch]
    assert [r.label for r in batch] == [0, 0, 1]


@pytest.mark.slow
def test_certify_coverage_at_alpha_0_001():
    # the documented setting (alpha = 0.001), with enough repeats to see a violation rate near alpha
    x, true_radius = point_with_probability(0.99)
    smoothed = SmoothedClassifier(linear_classifier(), SIGMA, seed=8, input_shape=(4,))
    repeats = 20_000
    overclaims = 0
    for _ in range(repeats):
        r = smoothed.certify(x, n0=100, n=1000, alpha=0.001, batch_size=1100)
        overclaims += r.label != ABSTAIN and (r.label != 0 or r.radius > true_radius)
    assert overclaims <= binom.ppf(1 - 1e-6, repeats, 0.001)
