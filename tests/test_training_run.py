"""A short certified training run on a few hundred digits certifies far more test digits than natural
training of the same model, and everything it certifies survives PGD (certified <= PGD <= clean)."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import MODELS
from torch import nn

import verifier
from verifier.training import EpsilonSchedule, TrainingHistory, batches, evaluate, train_certified

sys.path.insert(0, str(MODELS))
from make_models import load_digits  # noqa: E402

EPS = 0.1


def mlp() -> nn.Module:
    """Deep enough that CROWN certifies few digits of the naturally trained model at EPS (~5 %)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, y_test = load_digits()
    return x_train[:400], y_train[:400], x_test[:200], y_test[:200]


def run(method: str, digits) -> tuple[nn.Module, TrainingHistory]:
    """30 epochs of 400 digits (a second or two), epsilon ramped linearly to 1.5 EPS over epochs 1-16."""
    x_train, y_train, _, _ = digits
    model = mlp()
    schedule = EpsilonSchedule(1.5 * EPS, start=1, length=15, shape="linear")
    history = train_certified(model, batches(x_train, y_train, 50, seed=0), schedule, 30, method, lr=3e-3,
                              progress=False)
    return model, history


@pytest.fixture(scope="module")
def trained(digits):
    return {method: run(method, digits) for method in ("natural", "ibp", "crown-ibp")}


def test_certified_training_beats_natural_training(digits, trained):
    _, _, x_test, y_test = digits
    results = {}
    for method, (model, history) in trained.items():
        assert len(history.epochs) == 30 and history.seconds > 0
        network = verifier.from_torch(model, torch.zeros(1, 64))
        results[method] = evaluate(network, x_test, y_test, [EPS], pgd_steps=20, pgd_restarts=2)
        accuracy = results[method]
        assert accuracy.certified[EPS] <= accuracy.pgd[EPS] <= accuracy.clean
    natural = results["natural"].certified[EPS]
    for method in ("ibp", "crown-ibp"):
        assert results[method].clean >= 0.65, method
        assert results[method].certified[EPS] >= natural + 0.25, (method, results[method].certified[EPS], natural)


def test_history_records_the_schedule(trained):
    _, history = trained["ibp"]
    eps = [e.eps for e in history.epochs]
    assert eps[0] == 0 and eps[-1] == pytest.approx(1.5 * EPS)
    assert all(b >= a for a, b in zip(eps, eps[1:]))
    assert history.epochs[0].robust_loss is None and history.epochs[-1].verified_error is not None
    assert history.epochs[-1].kappa == pytest.approx(0.0)
    assert "verified err" in history.table()
