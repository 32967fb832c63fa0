"""Tighter pre-activation bounds: full alpha-CROWN with the intermediate widths in its loss, and the
re-computation of a ReLU-split domain's bounds after its first split layer. Both must contain every
sampled value of the tensors they bound (on the domain, for a split domain) and must actually tighten."""

from __future__ import annotations

import pytest
import torch

import verifier
from tests.test_alpha_sshaped import deep_net
from verifier.bab.relu_split import ReluBranchAndBound, ReluSplitOptions, _clamp_to_splits
from verifier.bounds.alpha import Plateau, optimize_all_slopes
from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds, pre_activation_names
from verifier.complete.problem import Problem

TOLERANCE = 1e-9


def node_values(graph, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The value of every tensor of ``graph`` at the points ``x`` (``[N, *input_shape]``)."""
    values = {graph.input_name: x}
    with torch.no_grad():
        for node in graph.nodes:
            values[node.name] = node.op.forward(*(values[name] for name in node.inputs))
    return values


def box_samples(lower: torch.Tensor, upper: torch.Tensor, count: int = 20_000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    t = torch.rand(count, *lower.shape[1:], generator=generator, dtype=lower.dtype)
    t[: count // 2] = t[: count // 2].round()  # corners
    return lower + (upper - lower) * t


def total_width(bounds, names) -> float:
    return sum(float((bounds[n][1] - bounds[n][0]).sum()) for n in names)


def deep_problem(activation):
    """A 6-input deep network, a box of radius 0.3 and a spec of 5 random rows over its 4 outputs (float64)."""
    network = verifier.from_torch(deep_net(activation, 0, scale=3.0), torch.zeros(1, 6, dtype=torch.float64))
    centre = torch.randn(1, 1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spec = torch.randn(1, 5, 1, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return network.graph, centre - 0.3, centre + 0.3, spec, torch.zeros(5, dtype=torch.float64)


def assert_contains_samples(graph, lower, upper, spec, full_alpha) -> None:
    """Full alpha-CROWN's pre-activation bounds and final bound contain every sampled value of the box."""
    values = node_values(graph, box_samples(lower, upper))
    for name, (low, high) in full_alpha[1].items():
        assert (low[0] <= values[name].min(0).values + TOLERANCE).all(), name
        assert (high[0] >= values[name].max(0).values - TOLERANCE).all(), name
    y = values[graph.output_name].reshape(-1, 4)
    assert (full_alpha[0][0] <= (y @ spec[0, :, 0].T).min(0).values + TOLERANCE).all()


@pytest.mark.parametrize("activation", [torch.nn.ReLU, torch.nn.Sigmoid])
def test_full_alpha_with_widths_in_the_loss_is_sound_and_tightens_intermediate_bounds(activation):
    graph, lower, upper, spec, offset = deep_problem(activation)
    with_widths = optimize_all_slopes(graph, lower, upper, spec, offset, iterations=30, lr=0.05, width_weight=1.0)
    final_only = optimize_all_slopes(graph, lower, upper, spec, offset, iterations=30, lr=0.05, width_weight=0.0)
    assert with_widths is not None and final_only is not None
    assert_contains_samples(graph, lower, upper, spec, with_widths)
    hidden = pre_activation_names(graph)[1:]  # the first is exact from the box
    assert total_width(with_widths[1], hidden) < total_width(final_only[1], hidden)


def test_a_split_domain_gets_tighter_bounds_that_contain_its_points():
    network = verifier.from_torch(deep_net(torch.nn.ReLU, 1, scale=1.5), torch.zeros(1, 6, dtype=torch.float64))
    centre = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    problem = Problem(lower=centre - 0.5, upper=centre + 0.5,
                      C=torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4)),
                      d=torch.zeros(3, dtype=torch.float64), row_case=torch.zeros(3, dtype=torch.long),
                      n_cases=1, case_indices=(0,))
    search = ReluBranchAndBound(network, problem, ReluSplitOptions(refine_intermediate=True), stats={})
    root = search.root()
    names = list(search.relu_inputs.values())
    first_lower, first_upper = (t.reshape(-1) for t in root.bounds[names[0]])
    unstable = ((first_lower < 0) & (first_upper > 0)).nonzero().flatten()
    assert len(unstable) >= 2
    sizes = [root.bounds[name][0][0].numel() for name in names]
    offsets = torch.tensor([0] + sizes).cumsum(0)
    children = search.children(root.select(torch.zeros(len(unstable), dtype=torch.long)), unstable, offsets)
    refined = search.refine(children)
    before = _clamp_to_splits(children.bounds, children.splits)
    values = node_values(network.graph, box_samples(search.lower, search.upper))
    tightened = 0.0
    for domain in range(len(children)):
        neuron = int(unstable[domain % len(unstable)])
        sign = 1 if domain < len(unstable) else -1
        inside = sign * values[names[0]].reshape(len(values[names[0]]), -1)[:, neuron] >= 0
        assert int(inside.sum()) > 0
        for name in names:
            low, high = refined.bounds[name][0][domain], refined.bounds[name][1][domain]
            assert (low >= before[name][0][domain] - TOLERANCE).all()
            assert (high <= before[name][1][domain] + TOLERANCE).all()
            points = values[name][inside]
            assert (low <= points.min(0).values + TOLERANCE).all(), (domain, name)
            assert (high >= points.max(0).values - TOLERANCE).all(), (domain, name)
            tightened += float(((before[name][1][domain] - before[name][0][domain]) - (high - low)).sum())
    assert tightened > 1e-6
    # layers up to the first split one keep their (split-clamped) bounds
    assert torch.allclose(refined.bounds[names[0]][0], before[names[0]][0], rtol=0, atol=1e-12)


def test_kept_tensors_are_not_refined():
    network = verifier.from_torch(deep_net(torch.nn.ReLU, 2, scale=1.5), torch.zeros(1, 6, dtype=torch.float64))
    graph = network.graph
    lower = torch.full((1, 1, 6), -0.5, dtype=torch.float64)
    upper = -lower
    crown = compute_intermediate_bounds(graph, lower, upper, CrownOptions())
    ibp = compute_intermediate_bounds(graph, lower, upper, CrownOptions(intermediate="ibp"))
    second = pre_activation_names(graph)[1]
    kept = compute_intermediate_bounds(graph, lower, upper, CrownOptions(), keep=[second])
    assert torch.equal(kept[second][0], ibp[second][0]) and torch.equal(kept[second][1], ibp[second][1])
    assert total_width(crown, [second]) < total_width(kept, [second])


def test_plateau_stops_only_once_the_shortfall_has_stopped_improving():
    plateau = Plateau(min_iterations=20, window=10, relative=0.01)
    flat = [3.3 - 0.01 * min(i, 12) for i in range(40)]              # improves for 12 iterations, then not at all
    assert not any(plateau.reached(flat[:n]) for n in range(1, 20))  # never before min_iterations
    assert plateau.reached(flat[:23])
    steady = [1.0 * 0.99 ** i for i in range(60)]                    # 1 % per iteration: ~10 % per window
    assert not any(plateau.reached(steady[:n]) for n in range(1, 61))
    assert plateau.reached([0.0] * 30)                               # nothing left to gain: stops


def test_full_alpha_with_a_plateau_stop_is_sound_and_stops_earlier():
    graph, lower, upper, spec, offset = deep_problem(torch.nn.ReLU)
    calls = []
    original = Plateau.reached

    def counted(self, shortfalls):
        calls.append(len(shortfalls))
        return original(self, shortfalls)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Plateau, "reached", counted)
        stopped = optimize_all_slopes(graph, lower, upper, spec, offset, iterations=200, lr=0.05,
                                      plateau=Plateau(min_iterations=5, window=3, relative=0.05))
    assert stopped is not None and 5 <= max(calls) < 200
    assert_contains_samples(graph, lower, upper, spec, stopped)
