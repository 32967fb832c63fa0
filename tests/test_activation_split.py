"""Branch and bound over S-shaped activations (``verifier.bab.activation_split``) against a *certified* minimum:
networks ``g(s)`` of two inputs are evaluated in float64 on a dense grid, and the grid's minimum lowered by the
network's Lipschitz constant times the grid's covering radius bounds the true minimum from below. Many-input
networks ``g(G x)`` sum their inputs in two groups first, so their minimum over a box is ``g``'s over a
rectangle, and input splitting cannot find it."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

import verifier
from verifier.api import load_onnx
from verifier.bab.activation_split import activation_split_search
from verifier.bounds.alpha import optimize_all_slopes
from verifier.complete.deadline import Deadline
from verifier.complete.problem import Problem
from verifier.spec import parse_vnnlib

RADIUS = 0.9          # g's inputs range over [-RADIUS, RADIUS]^2
GROUP = 9             # inputs summed into each of g's two inputs in the many-input networks


def _g(seed: int, activation: str, width: int = 12, scale: float = 2.5) -> torch.nn.Sequential:
    """Two inputs, two hidden layers of ``activation``, one output; weights large enough for loose relaxations."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(width, 2, scale), (width, width, scale / math.sqrt(width)), (1, width, 1 / math.sqrt(width))]
    layers = []
    for index, (rows, cols, size) in enumerate(shapes):
        linear = torch.nn.Linear(cols, rows)
        linear.weight.data = torch.randn(rows, cols, generator=generator) * size
        linear.bias.data = torch.randn(rows, generator=generator) if index < 2 else torch.zeros(rows)
        layers.append(linear)
        if index < 2:
            layers.append(torch.nn.Sigmoid() if activation == "Sigmoid" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def _grid_minimum(g: torch.nn.Sequential, points: int = 1201) -> tuple[float, float]:
    """The least output on a ``points`` x ``points`` grid of ``[-RADIUS, RADIUS]^2`` (float64, with the stored
    float32 weights), and that minus the Lipschitz constant times the grid's covering radius: a lower bound of
    the minimum over the whole square."""
    axis = torch.linspace(-RADIUS, RADIUS, points, dtype=torch.float64)
    with torch.no_grad():
        g64 = g.double()
        lowest = float(g64(torch.cartesian_prod(axis, axis)).min())
        slope = 0.25 if isinstance(g[1], torch.nn.Sigmoid) else 1.0
        lipschitz = 1.0
        for layer in g64:
            if isinstance(layer, torch.nn.Linear):
                lipschitz *= float(torch.linalg.matrix_norm(layer.weight, 2))
        lipschitz *= slope ** 2
    g.float()
    spacing = 2 * RADIUS / (points - 1)
    return lowest, lowest - lipschitz * spacing / math.sqrt(2)


def _write(folder: Path, network: torch.nn.Module, inputs: int, half_width: float, threshold: float
           ) -> tuple[Path, Path]:
    """The network as ONNX and the property "y <= threshold" over ``[-half_width, half_width]^inputs``."""
    model, prop = folder / "net.onnx", folder / "net.vnnlib"
    with warnings.catch_warnings():   # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(network, torch.zeros(1, inputs), str(model), dynamo=False, input_names=["x"],
                          output_names=["y"])
    prop.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(inputs)) + "(declare-const Y_0 Real)\n"
                    + "".join(f"(assert (>= X_{i} {-half_width!r}))\n(assert (<= X_{i} {half_width!r}))\n"
                              for i in range(inputs))
                    + f"(assert (<= Y_0 {threshold!r}))\n")
    return model, prop


def _problem(model: Path, prop: Path) -> tuple[verifier.Network, Problem]:
    network = load_onnx(model)
    spec = parse_vnnlib(prop, n_inputs=network.input_size, n_outputs=1)
    return network, Problem.from_group(spec.box_groups()[0], network)


def _full_alpha(network, problem: Problem):
    lower, upper = problem.lower.unsqueeze(0), problem.upper.unsqueeze(0)
    spec = problem.C.reshape(1, problem.rows, *network.output_shape)
    return optimize_all_slopes(network.graph, lower, upper, spec, problem.d, iterations=100, lr=0.1)


def _halfway(tmp_path: Path, g: torch.nn.Sequential, certified: float) -> float:
    """A threshold halfway between the least output full alpha-CROWN bounds and the certified minimum: true,
    and not proved at the root."""
    network, problem = _problem(*_write(tmp_path, g, 2, RADIUS, certified))
    root, _, _ = _full_alpha(network, problem)
    return certified + float(root.min()) / 2


def test_proves_a_property_full_alpha_crown_leaves_open(tmp_path):
    g = _g(2, "Sigmoid")
    _, certified = _grid_minimum(g)
    threshold = _halfway(tmp_path, g, certified)
    network, problem = _problem(*_write(tmp_path, g, 2, RADIUS, threshold))
    root, bounds, _ = _full_alpha(network, problem)
    assert float(root.min()) < 0          # the root alone does not prove it
    stats = {"phases": {}}
    status = activation_split_search(network, problem, bounds, Deadline(60), stats)
    assert status == "unsat"
    assert stats["domains"] > 0 and stats["open_domains"] == 0


@pytest.mark.parametrize("seed, activation", [(0, "Sigmoid"), (3, "Sigmoid"), (0, "Tanh"), (2, "Tanh")])
def test_never_proves_a_property_the_grid_violates(tmp_path, seed, activation):
    """``y <= threshold`` with the threshold above a grid point's output: a counterexample exists, so the search
    must not answer unsat, and the lower bound it reports must lie below the true least margin."""
    g = _g(seed, activation)
    lowest, _ = _grid_minimum(g, points=401)
    threshold = lowest + 0.02
    network, problem = _problem(*_write(tmp_path, g, 2, RADIUS, threshold))
    _, bounds, _ = _full_alpha(network, problem)
    stats = {"phases": {}}
    status = activation_split_search(network, problem, bounds, Deadline(3), stats)
    assert status == "timeout"
    assert stats["domains"] > 0 and stats["lower_bound"] <= lowest - threshold


def test_verify_splits_s_shaped_neurons_on_many_inputs(tmp_path):
    """18 inputs summed in two groups of 9 before ``g``: input splitting (used on at most 16 inputs) does not
    apply, full alpha-CROWN at the root falls short, and splitting sigmoid neurons proves the property."""
    g = _g(2, "Sigmoid")
    _, certified = _grid_minimum(g)
    grouping = torch.nn.Linear(2 * GROUP, 2, bias=False)
    grouping.weight.data = torch.kron(torch.eye(2), torch.ones(1, GROUP))
    threshold = _halfway(tmp_path, g, certified)
    model, prop = _write(tmp_path, torch.nn.Sequential(grouping, *g), 2 * GROUP, RADIUS / GROUP, threshold)
    result = verifier.verify(str(model), str(prop), timeout=60)
    assert result.status == "unsat", result.message
    assert result.stats["method"] == "activation-split"
    assert result.stats["root_lower_bound"] < 0 and result.stats["domains"] > 1
