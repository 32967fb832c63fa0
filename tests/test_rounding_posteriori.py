"""The a posteriori rounding-error bound of float64 CROWN passes (:mod:`verifier.bounds.rounding`), checked
against the same passes in exact rational arithmetic on networks with weights over twelve orders of
magnitude (where float64 sums do lose bits), and against exact evaluations of the network."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import verifier
from tests.milp import to_torch
from verifier.bounds.crown import CrownOptions, backward_lower, compute_intermediate_bounds
from verifier.bounds.rounding import rigorous
from verifier.complete.float_sound import rounding_model


def _layers(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    sizes = [4, 6, 6, 5, 2]
    layers = []
    for n, m in zip(sizes[:-1], sizes[1:]):
        scale = 10.0 ** rng.uniform(-6, 6, (m, n))
        w = (rng.standard_normal((m, n)) * scale).astype(np.float32).astype(np.float64)
        b = (rng.standard_normal(m) * 10.0 ** rng.uniform(-3, 3, m)).astype(np.float32).astype(np.float64)
        layers.append((w, b))
    return layers


def _exact_crown(layers, pre_bounds, depth: int, row: list[Fraction], box) -> Fraction:
    """CROWN's lower bound of ``row . z_depth`` (``z_depth`` the pre-activation of layer ``depth``, 0-based
    over the affine layers) in exact arithmetic, with ReLU relaxations on ``pre_bounds`` (rationals) built as
    the engine builds them: identity/zero on stable neurons, chord above and the adaptive slope below."""
    coefficients = list(row)
    constant = Fraction(0)
    for k in range(depth, -1, -1):
        w, b = layers[k]
        constant += sum(c * Fraction(bi) for c, bi in zip(coefficients, b))
        coefficients = [sum(c * Fraction(w[i, j]) for i, c in enumerate(coefficients)) for j in range(w.shape[1])]
        if k == 0:
            break
        lower, upper = pre_bounds[k - 1]
        relaxed = []
        for j, c in enumerate(coefficients):
            lo, hi = lower[j], upper[j]
            if lo >= 0:
                relaxed.append(c)
            elif hi <= 0:
                relaxed.append(Fraction(0))
            elif c >= 0:
                relaxed.append(c * (1 if hi > -lo else 0))
            else:
                slope = hi / (hi - lo)
                relaxed.append(c * slope)
                constant += c * (-slope * lo)
        coefficients = relaxed
    lower, upper = box
    return constant + sum(c * (lo if c >= 0 else hi) for c, lo, hi in zip(coefficients, lower, upper))


def _as_fractions(t: torch.Tensor) -> list[Fraction]:
    return [Fraction(v) for v in t.reshape(-1).tolist()]


@pytest.mark.parametrize("seed", range(4))
def test_rigorous_passes_bound_the_exact_passes(seed):
    rng = np.random.default_rng(seed)
    layers = _layers(rng)
    network = verifier.from_torch(to_torch(layers), torch.zeros(1, 4, dtype=torch.float64))
    centre = rng.uniform(-100, 100, 4)
    lower = torch.as_tensor(centre - 1.0).reshape(1, 4)
    upper = torch.as_tensor(centre + 1.0).reshape(1, 4)
    spec = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    model = rounding_model(network.graph, lower[0], upper[0], spec[0], torch.zeros(1, dtype=torch.float64))
    assert model is not None and model.posteriori is not None
    with torch.no_grad():
        plain_bounds = compute_intermediate_bounds(network.graph, lower, upper, CrownOptions())
        plain = backward_lower(network.graph, network.graph.output_name, spec, plain_bounds)
        with rigorous(model.posteriori):
            bounds = compute_intermediate_bounds(network.graph, lower, upper, CrownOptions())
            sound = backward_lower(network.graph, network.graph.output_name, spec, bounds)
    assert float(sound) < float(plain)
    box = (_as_fractions(lower), _as_fractions(upper))
    pre_names = [n.inputs[0] for n in network.graph.nodes if n.op.op_type == "Relu"]
    pre = [(_as_fractions(bounds[name][0]), _as_fractions(bounds[name][1])) for name in pre_names]
    # every rigorous pre-activation bound is below (above) the exact CROWN bound of the same neuron on the
    # same earlier bounds: the widening covers the pass's rounding
    for depth, (lo, hi) in enumerate(pre):
        for j in range(len(lo)):
            unit = [Fraction(int(i == j)) for i in range(len(lo))]
            exact_lower = _exact_crown(layers, pre, depth, unit, box)
            exact_upper = -_exact_crown(layers, pre, depth, [-u for u in unit], box)
            assert lo[j] <= exact_lower and hi[j] >= exact_upper, (depth, j)
    row = [Fraction(1), Fraction(-1)]
    exact = _exact_crown(layers, pre, len(layers) - 1, row, box)
    assert Fraction(float(sound)) <= exact
    with torch.no_grad():
        unguarded = backward_lower(network.graph, network.graph.output_name, spec, bounds)
    if seed == 2:   # here plain float64 rounding lands 4e6 above the exact value: the bound is needed
        assert Fraction(float(unguarded)) > exact
    # and the exact network never leaves the rigorous bounds (corners and random points of the box)
    points = [np.where(rng.random(4) < 0.5, lower[0].numpy(), upper[0].numpy()) for _ in range(16)]
    points += [rng.uniform(lower[0].numpy(), upper[0].numpy()) for _ in range(16)]
    for x in points:
        h = [Fraction(v) for v in x]
        for k, (w, b) in enumerate(layers):
            z = [sum((Fraction(wij) * hj for wij, hj in zip(wrow, h)), Fraction(bi)) for wrow, bi in zip(w, b)]
            if k < len(layers) - 1:
                lo, hi = pre[k]
                assert all(lo[i] <= z[i] <= hi[i] for i in range(len(z)))
                h = [max(v, Fraction(0)) for v in z]
        assert z[0] - z[1] >= Fraction(float(sound))


def test_without_a_rigorous_block_nothing_changes():
    rng = np.random.default_rng(9)
    layers = _layers(rng)
    network = verifier.from_torch(to_torch(layers), torch.zeros(1, 4, dtype=torch.float64))
    lower, upper = -torch.ones(1, 4, dtype=torch.float64), torch.ones(1, 4, dtype=torch.float64)
    spec = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    with torch.no_grad():
        bounds = compute_intermediate_bounds(network.graph, lower, upper, CrownOptions())
        first = backward_lower(network.graph, network.graph.output_name, spec, bounds)
        with rigorous(None):
            again = backward_lower(network.graph, network.graph.output_name, spec, bounds)
    assert torch.equal(first, again)


def test_posteriori_model_covers_relu_networks_only():
    network = verifier.load_onnx("models/digits_mlp.onnx").to(torch.float64)
    box = torch.zeros(network.input_shape, dtype=torch.float64)
    C, d = torch.eye(10, dtype=torch.float64)[:2], torch.zeros(2, dtype=torch.float64)
    assert rounding_model(network.graph, box, box + 0.1, C, d).posteriori is not None
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 1)).double()
    smooth = verifier.from_torch(module, torch.zeros(1, 3, dtype=torch.float64))
    model = rounding_model(smooth.graph, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                           torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    assert model is not None and model.posteriori is None   # the a priori model covers it; the a posteriori not
