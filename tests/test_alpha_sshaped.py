"""alpha-CROWN on S-shaped activations: every slope gives a sound bound (exact intercepts), the optimised
bounds are never looser than CROWN's and always contain the sampled outputs."""

from __future__ import annotations

import pytest
import torch

import verifier
from verifier.bounds.alpha import AlphaOptions, ReluSlopes, optimize_all_slopes, optimize_slopes
from verifier.bounds.crown import CrownOptions, backward_lower, compute_intermediate_bounds
from verifier.ops.activation import Sigmoid, Tanh


def deep_net(activation: type[torch.nn.Module], seed: int, scale: float) -> torch.nn.Module:
    """A 4-layer MLP with large weights, so pre-activation ranges are wide and partly saturated (like the
    deep sigmoid networks of the ERAN benchmark)."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    sizes = [6, 16, 16, 12, 4]
    for i in range(len(sizes) - 1):
        linear = torch.nn.Linear(sizes[i], sizes[i + 1]).double()
        with torch.no_grad():
            linear.weight.mul_(scale)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(activation())
    return torch.nn.Sequential(*layers).double()


def sampled_minimum(module: torch.nn.Module, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Smallest sampled value of each row of ``C y`` over the box (corners and interior points)."""
    torch.manual_seed(1)
    n = 20_000
    corners = torch.randint(0, 2, (n // 2, lower.shape[-1]), dtype=torch.float64)
    inside = torch.rand(n // 2, lower.shape[-1], dtype=torch.float64)
    t = torch.cat([corners, inside])
    x = lower + (upper - lower) * t
    with torch.no_grad():
        y = module(x)
    return (y @ C.T).min(0).values


@pytest.mark.parametrize("activation", [torch.nn.Sigmoid, torch.nn.Tanh])
@pytest.mark.parametrize("seed", range(4))
def test_optimised_slopes_are_sound_and_no_looser(activation, seed):
    module = deep_net(activation, seed, scale=3.0)
    network = verifier.from_torch(module, torch.zeros(1, 6, dtype=torch.float64))
    graph = network.graph
    centre = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    radius = 0.3
    lower, upper = centre - radius, centre + radius
    C = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + seed))
    truth = sampled_minimum(module, lower, upper, C)
    # the engine's tensors are [batch, *shape of the example input] = [1, 1, 6]
    lower, upper = lower.unsqueeze(0), upper.unsqueeze(0)
    spec = C.reshape(1, 5, 1, 4)
    offset = torch.zeros(5, dtype=torch.float64)
    bounds = compute_intermediate_bounds(graph, lower, upper, CrownOptions())
    crown = backward_lower(graph, graph.output_name, spec, bounds)
    final_only, slopes = optimize_slopes(graph, spec, offset, bounds, AlphaOptions(iterations=30, lr=0.05))
    full = optimize_all_slopes(graph, lower, upper, spec, offset, iterations=30, lr=0.05)
    assert full is not None
    tolerance = 1e-9
    for bound in (crown, final_only, full[0]):
        assert torch.isfinite(bound).all()
        assert (bound[0] <= truth + tolerance).all(), (bound, truth)
    assert (final_only >= crown - tolerance).all()
    assert (full[0] >= crown - tolerance).all()
    # on these wide, saturated ranges optimisation gains something
    assert float((final_only - crown).max()) > 1e-6
    # the optimised slopes stay in the derivative's range on the box
    for name, value in slopes.slopes.items():
        node = next(n for n in graph.nodes if n.name == name)
        low, high = node.op.slope_range(*bounds[node.inputs[0]])
        for side in (0, 1):
            assert (value[:, :, side] >= low.unsqueeze(1) - 1e-12).all()
            assert (value[:, :, side] <= high.unsqueeze(1) + 1e-12).all()


@pytest.mark.parametrize("op", [Sigmoid(), Tanh()])
def test_any_slope_gives_a_sound_line(op):
    """relax_with_slopes with arbitrary slopes (negative, zero, above the peak derivative, per row) bounds f
    on the whole interval, ends and tangent points included."""
    generator = torch.Generator().manual_seed(0)
    centre = torch.randn(1, 200, dtype=torch.float64, generator=generator) * 6
    width = torch.rand(1, 200, dtype=torch.float64, generator=generator) * 12
    lower, upper = centre - width / 2, centre + width / 2
    slopes = torch.randn(1, 3, 2, 200, dtype=torch.float64, generator=generator) * 0.6
    slopes[0, 0] = 0.0
    relaxation = op.relax_with_slopes(lower, upper, slopes[:, :, 0], slopes[:, :, 1])
    t = torch.linspace(0, 1, 2001, dtype=torch.float64).reshape(-1, 1, 1, 1)
    x = lower.unsqueeze(1) + (upper - lower).unsqueeze(1) * t                   # [T, 1, 1, 200]
    fx = op.forward(x)
    below = relaxation.lower_slope * x + relaxation.lower_intercept
    above = relaxation.upper_slope * x + relaxation.upper_intercept
    assert (below <= fx).all() and (above >= fx).all()
    # and the intercepts are tight: some sampled point comes within the grid's resolution
    gap = (fx - below).amin(0)
    assert float(gap.max()) < 1e-2


def test_relu_slopes_of_a_mixed_network_keep_their_range():
    """ReLU slopes stay in [0, 1] and S-shaped ones in their range when both kinds sit in one network."""
    torch.manual_seed(3)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.Sigmoid(),
                                 torch.nn.Linear(8, 3)).double()
    network = verifier.from_torch(module, torch.zeros(1, 4, dtype=torch.float64))
    graph = network.graph
    lower, upper = -torch.ones(1, 1, 4, dtype=torch.float64), torch.ones(1, 1, 4, dtype=torch.float64)
    bounds = compute_intermediate_bounds(graph, lower, upper, CrownOptions())
    spec = torch.eye(3, dtype=torch.float64).reshape(1, 3, 1, 3)
    best, slopes = optimize_slopes(graph, spec, torch.zeros(3, dtype=torch.float64), bounds,
                                   AlphaOptions(iterations=15, lr=0.5))
    assert isinstance(slopes, ReluSlopes)
    kinds = {type(n.op).__name__: n.name for n in graph.nodes}
    relu = slopes.slopes[kinds["Relu"]]
    assert (relu >= 0).all() and (relu <= 1).all()
    assert slopes.slopes[kinds["Sigmoid"]].shape[2] == 2
    truth = sampled_minimum(module, lower[0], upper[0], torch.eye(3, dtype=torch.float64))
    assert (best[0] <= truth + 1e-9).all()
