"""The ``crown`` column: CROWN's backward linear bounds (Zhang et al. 2018) over the perturbation set.

Two tiers, cheapest first: CROWN with interval pre-activation bounds (one backward pass of the ``K - 1``
specification rows per input), then, for the inputs it leaves open, CROWN with CROWN-refined pre-activation
bounds (a backward pass per unstable neuron). Both are sound, so an input proved by either is certified.
For L2 balls the input concretisation is the ball's dual norm (:class:`~verifier.certification.balls.
BallConcretization`) in every backward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.bounds.crown import CrownOptions, crown_bounds
from verifier.certification.balls import BallConcretization, PerturbationSet, margin_spec
from verifier.network import Network


def spec_and_hook(network: Network, entry: str, perturbation: PerturbationSet, x: Tensor, labels: Tensor,
                  eps: Tensor):
    """The input boxes, the robustness specification ``[B, K - 1, K]`` and the L2 hook (``None`` for
    L-infinity) of these inputs."""
    lower, upper = perturbation.box(x, eps)
    spec = margin_spec(labels, network.output_size, x.dtype)
    hook = BallConcretization(entry, x, eps) if perturbation.norm == "l2" else None
    return lower, upper, spec, hook


def lower_bounds(network: Network, entry: str, perturbation: PerturbationSet, x: Tensor, labels: Tensor,
                 eps: Tensor, intermediate: str = "crown") -> Tensor:
    """CROWN lower bounds ``[B, K - 1]`` of the margins ``f_y - f_j`` over each input's set."""
    lower, upper, spec, hook = spec_and_hook(network, entry, perturbation, x, labels, eps)
    with torch.no_grad():
        bound, _ = crown_bounds(network.graph, lower, upper, spec, CrownOptions(intermediate=intermediate), hook=hook)
    return bound


def certify(network: Network, entry: str, perturbation: PerturbationSet, x: Tensor, labels: Tensor,
            eps: Tensor) -> Tensor:
    """Whether CROWN proves every margin positive on each input's set (``[B]`` booleans), in the two tiers of
    the module docstring."""
    certified = (lower_bounds(network, entry, perturbation, x, labels, eps, "ibp") > 0).all(1)
    rest = (~certified).nonzero().flatten()
    if rest.numel():
        full = lower_bounds(network, entry, perturbation, x[rest], labels[rest], eps[rest], "crown")
        certified[rest] = (full > 0).all(1)
    return certified
