"""The certified loss: its bounds are sound (below every sampled and attacked margin, and below the exact
minimum a MILP finds), it is differentiable (``gradcheck`` in float64), a step lowers it, and its
schedules, spec matrices and warm-up helpers compute what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from milp import exact_min_violation, random_network, to_torch
from torch import nn

from verifier.attack.pgd import pgd_minimize
from verifier.errors import ShapeError, VerifierError
from verifier.training import (
    EpsilonSchedule,
    Ramp,
    certified_loss,
    ibp_init,
    input_box,
    loss_terms,
    margin_spec,
    robust_cross_entropy,
    shared_network,
    warmup_regularizer,
    worst_case_logits,
)
from verifier.training.bounds import margin_lower_bounds

METHODS = ["ibp", "crown-ibp", "crown", "alpha-crown"]


def small_models(seed: int) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """An MLP, a CNN with BatchNorm, a residual CNN: random weights, non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 5))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 5))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.inner = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 5 * 5, 5)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            return self.fc((h + torch.relu(self.inner(h))).flatten(1))

    models = [(mlp, (6,)), (cnn, (1, 5, 5)), (Residual(), (1, 5, 5))]
    for model, shape in models:
        model.train()
        with torch.no_grad():
            model(torch.rand(32, *shape))
        model.eval()
    return models


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("method", METHODS)
def test_margin_bounds_are_below_every_sampled_and_attacked_margin(method, seed):
    for model, shape in small_models(seed):
        x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(seed))
        y = torch.arange(6) % 5
        eps = 0.1
        terms = loss_terms(model, x, y, eps, method=method, beta=0.5, domain=(0.0, 1.0))
        bound = terms.margin_lower.detach()
        lower, upper = input_box(x, eps, (0.0, 1.0))
        spec = margin_spec(y, 5)
        generator = torch.Generator().manual_seed(seed + 10)
        with torch.no_grad():
            points = lower + (upper - lower) * torch.rand(300, *x.shape, generator=generator)
            corners = torch.where(torch.rand(100, *x.shape, generator=generator) < 0.5, lower, upper)
            samples = torch.cat([points, corners])  # [S, 6, *shape]
            outputs = model(samples.reshape(-1, *shape)).reshape(len(samples), 6, -1)
            margins = torch.einsum("bkn,sbn->sbk", spec, outputs)
            assert (margins >= bound - 1e-5).all(), (method, type(model).__name__)
        for row in range(4):  # PGD on each margin row
            def margin(z, row=row, spec=spec, model=model):
                return torch.einsum("bn,bn->b", spec[:, row].repeat(z.shape[0] // 6, 1), model(z))

            _, found = pgd_minimize(margin, lower, upper, steps=20, restarts=2, generator=generator)
            assert (found >= bound[:, row] - 1e-5).all(), (method, type(model).__name__, row)


@pytest.mark.parametrize("method", METHODS)
def test_margin_bounds_are_below_the_exact_minimum(method):
    """Tiny ReLU networks: every margin bound is at most the exact minimum over the box (MILP, HiGHS)."""
    rng = np.random.default_rng(3)
    checked = 0
    while checked < 6:
        layers = random_network(rng)
        n_in, n_out = layers[0][0].shape[1], layers[-1][0].shape[0]
        if n_out < 2:
            continue
        model = to_torch(layers)
        center = rng.uniform(-1, 1, n_in)
        label = int(rng.integers(0, n_out))
        x = torch.from_numpy(center).reshape(1, n_in)
        terms = loss_terms(model, x, torch.tensor([label]), 0.3, method=method, beta=0.5)
        spec = margin_spec(torch.tensor([label]), n_out, dtype=torch.float64)[0].numpy()
        for row, c in enumerate(spec):
            exact = exact_min_violation(layers, center - 0.3, center + 0.3, c[None, :], np.zeros(1))
            assert float(terms.margin_lower[0, row].detach()) <= exact + 1e-7
        checked += 1


def test_crown_ibp_beta_mixes_the_two_bounds():
    model, shape = small_models(0)[0]
    x, y = torch.rand(4, *shape), torch.tensor([0, 1, 2, 3])
    lower, upper = input_box(x, 0.05)
    network = shared_network(model, x)
    spec = margin_spec(y, 5)
    ibp = margin_lower_bounds(network.graph, lower.reshape(4, 1, 6), upper.reshape(4, 1, 6), spec, "ibp").lower
    mixed = margin_lower_bounds(network.graph, lower.reshape(4, 1, 6), upper.reshape(4, 1, 6), spec, "crown-ibp",
                                beta=0.25)
    torch.testing.assert_close(mixed.ibp, ibp)
    torch.testing.assert_close(mixed.lower, 0.25 * mixed.crown + 0.75 * ibp)


def test_crown_on_the_hardest_rows_only_is_sound_and_mixes():
    """``crown_rows=2``: the two lowest IBP rows of each sample get the CROWN-IBP mix, the others their IBP bound."""
    model, shape = small_models(1)[2]
    x, y = torch.rand(6, *shape, generator=torch.Generator().manual_seed(4)), torch.arange(6) % 5
    full = loss_terms(model, x, y, 0.1, method="crown-ibp", beta=0.5, domain=(0.0, 1.0))
    part = loss_terms(model, x, y, 0.1, method="crown-ibp", beta=0.5, domain=(0.0, 1.0), crown_rows=2)
    network = shared_network(model, x)
    lower, upper = input_box(x.reshape(6, *network.input_shape), 0.1, (0.0, 1.0))
    ibp = margin_lower_bounds(network.graph, lower, upper, margin_spec(y, 5), "ibp").lower.detach()
    chosen = ibp.argsort(1)[:, :2]
    expected = ibp.scatter(1, chosen, full.margin_lower.detach().gather(1, chosen))
    torch.testing.assert_close(part.margin_lower.detach(), expected)
    part.loss.backward()
    with torch.no_grad():
        samples = lower + (upper - lower) * torch.rand(200, *lower.shape)
        outputs = model(samples.reshape(-1, *shape)).reshape(200, 6, -1)
        assert (torch.einsum("bkn,sbn->sbk", margin_spec(y, 5), outputs) >= part.margin_lower - 1e-5).all()


def test_loss_gradcheck_in_float64():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 1, 4, 4, dtype=torch.float64))
    model.eval()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 2, 1])
    parameters = tuple(model.parameters())
    for method in ("ibp", "crown-ibp", "crown"):
        def loss(*_, method=method):
            return certified_loss(model, x, y, 0.05, method=method, kappa=0.3, beta=0.5, domain=(0.0, 1.0))

        assert torch.autograd.gradcheck(loss, parameters, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True), method


def test_one_step_lowers_the_robust_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.rand(32, 8), torch.randint(0, 4, (32,))
    for method in ("ibp", "crown-ibp", "crown"):
        before = certified_loss(model, x, y, 0.1, method=method)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        optimizer.zero_grad()
        before.backward()
        optimizer.step()
        after = certified_loss(model, x, y, 0.1, method=method)
        assert after.item() < before.item() - 1e-4, method


def test_loss_at_zero_eps_is_the_natural_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.rand(5, 8), torch.tensor([0, 1, 2, 3, 0])
    natural = F.cross_entropy(model(x), y)
    torch.testing.assert_close(certified_loss(model, x, y, 0.0), natural)
    # a zero-width box: the elided IBP margins are the exact margins, so the robust term is the natural loss
    tiny = certified_loss(model, x, y, 1e-12, method="ibp")
    torch.testing.assert_close(tiny, natural, rtol=1e-5, atol=1e-5)


def test_kappa_weights_natural_and_robust_terms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.rand(5, 8), torch.tensor([0, 1, 2, 3, 0])
    terms = loss_terms(model, x, y, 0.1, kappa=0.3)
    torch.testing.assert_close(terms.loss, 0.3 * terms.natural + 0.7 * terms.robust)
    assert terms.robust >= terms.natural  # the worst case is no better than the clean point


def test_spec_and_worst_case_logits():
    spec = margin_spec(torch.tensor([2, 0]), 4)
    assert spec.shape == (2, 3, 4)
    torch.testing.assert_close(spec[0], torch.tensor([[-1., 0, 1, 0], [0, -1, 1, 0], [0, 0, 1, -1]]))
    torch.testing.assert_close(spec[1], torch.tensor([[1., -1, 0, 0], [1, 0, -1, 0], [1, 0, 0, -1]]))
    margins = torch.tensor([[1.0, -2.0, 0.5]])
    torch.testing.assert_close(worst_case_logits(margins), torch.tensor([[0.0, -1.0, 2.0, -0.5]]))
    # with exact margins the robust cross-entropy is the cross-entropy of the logits
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.1]])
    exact = torch.einsum("bkn,bn->bk", margin_spec(torch.tensor([2]), 4), logits)
    torch.testing.assert_close(robust_cross_entropy(exact), F.cross_entropy(logits, torch.tensor([2])))


def test_input_box_is_clipped_to_the_domain():
    lower, upper = input_box(torch.tensor([[0.02, 0.5, 0.99]]), 0.05, (0.0, 1.0))
    torch.testing.assert_close(lower, torch.tensor([[0.0, 0.45, 0.94]]))
    torch.testing.assert_close(upper, torch.tensor([[0.07, 0.55, 1.0]]))


def test_bad_arguments_are_reported():
    model = nn.Sequential(nn.Linear(4, 3))
    x, y = torch.rand(2, 4), torch.tensor([0, 1])
    with pytest.raises(VerifierError, match="norm"):
        certified_loss(model, x, y, 0.1, norm="l2")
    with pytest.raises(VerifierError, match="method"):
        certified_loss(model, x, y, 0.1, method="magic")
    with pytest.raises(VerifierError, match="kappa"):
        certified_loss(model, x, y, 0.1, kappa=2.0)
    with pytest.raises(ShapeError):
        certified_loss(model, x, torch.tensor([0, 1, 2]), 0.1)


def test_epsilon_schedules():
    linear = EpsilonSchedule(0.2, start=2, length=4, shape="linear")
    assert linear(0) == 0 and linear(2) == 0 and linear(6) == pytest.approx(0.2) and linear(10) == pytest.approx(0.2)
    assert linear(4) == pytest.approx(0.1)
    smooth = EpsilonSchedule(0.2, start=2, length=4, shape="smoothed", mid=0.25, power=4)
    values = [smooth(2 + 4 * s) for s in np.linspace(0, 1, 101)]
    assert values[0] == 0 and values[-1] == pytest.approx(0.2)
    assert all(b >= a for a, b in zip(values, values[1:]))  # non-decreasing
    assert smooth(3) < linear(3)  # gentler start
    def slope(t, h=1e-6):
        return (smooth(t + h) - smooth(t - h)) / (2 * h)

    assert slope(3 - 1e-4) == pytest.approx(slope(3 + 1e-4), rel=1e-3)  # C1 where the power meets the line
    assert slope(4) == pytest.approx(slope(5.5), rel=1e-6)  # linear afterwards
    assert slope(2.5) < slope(3)
    with pytest.raises(ValueError):
        EpsilonSchedule(0.1, shape="cosine")
    assert Ramp(1.0, 0.0)(0.25) == pytest.approx(0.75) and Ramp(1.0, 0.5)(2.0) == 0.5


def test_ibp_init_scales_weights_by_fan_in():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 36, 400), nn.ReLU(),
                          nn.Linear(400, 10))
    last = model[5].weight.clone()
    ibp_init(model)
    assert model[0].weight.std().item() == pytest.approx(np.sqrt(2 * np.pi) / 9, rel=0.1)
    assert model[3].weight.std().item() == pytest.approx(np.sqrt(2 * np.pi) / (64 * 36), rel=0.05)
    torch.testing.assert_close(model[5].weight, last)  # the last layer keeps its initialisation


def test_warmup_regularizer_penalises_loose_and_unbalanced_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 3))
    x, y = torch.rand(16, 10), torch.randint(0, 3, (16,))
    terms = loss_terms(model, x, y, 0.05)
    graph = shared_network(model, x).graph
    value = warmup_regularizer(graph, terms.bounds, fraction=0.0)
    assert value.item() > 0 and value.requires_grad
    assert warmup_regularizer(graph, terms.bounds, fraction=1.0).item() == 0  # off at the end of the ramp
    assert warmup_regularizer(graph, terms.bounds, fraction=0.5).item() == pytest.approx(value.item() / 2)
    # gradient steps on the regulariser alone make it smaller
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        terms = loss_terms(model, x, y, 0.05)
        loss = warmup_regularizer(graph, terms.bounds, fraction=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < value.item()
