"""The ``ibp`` column: interval bound propagation over the perturbation box (Gowal et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.bounds.ibp import interval_bounds, interval_of_spec
from verifier.certification.balls import PerturbationSet, margin_spec
from verifier.network import Network


def certify(network: Network, perturbation: PerturbationSet, x: Tensor, labels: Tensor, eps: Tensor) -> Tensor:
    """Whether IBP proves ``f_y - f_j > 0`` for every ``j`` on each input's box (``[B]`` booleans); for an L2
    ball the box is the enclosing one."""
    lower, upper = perturbation.box(x, eps)
    graph = network.graph
    spec = margin_spec(labels, network.output_size, x.dtype)
    with torch.no_grad():
        out_lower, out_upper = interval_bounds(graph, lower, upper)[graph.output_name]
        batch = x.shape[0]
        bound, _ = interval_of_spec(spec, out_lower.reshape(batch, -1), out_upper.reshape(batch, -1))
    return (bound > 0).all(1)
