"""The ``alpha`` column: alpha-CROWN (Xu et al. 2021), CROWN with the ReLU lower slopes of the final bound
optimised by projected gradient ascent, per input and specification row. Every slope in ``[0, 1]`` gives a
sound bound, so the best bound seen is kept (and it is never below CROWN's, which is its starting point)."""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.bounds.alpha import AlphaOptions, optimize_slopes
from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds, crown_bounds
from verifier.certification.balls import BallConcretization, PerturbationSet
from verifier.certification.crown import spec_and_hook
from verifier.network import Network


def certify(network: Network, entry: str, perturbation: PerturbationSet, x: Tensor, labels: Tensor, eps: Tensor,
            iterations: int = 30, lr: float = 0.25) -> Tensor:
    """Whether alpha-CROWN proves every margin positive on each input's set (``[B]`` booleans)."""
    graph = network.graph
    lower, upper, spec, hook = spec_and_hook(network, entry, perturbation, x, labels, eps)
    with torch.no_grad():
        bounds = compute_intermediate_bounds(graph, lower, upper, CrownOptions(), hook)
        crown_lower, _ = crown_bounds(graph, lower, upper, spec, CrownOptions(), bounds=bounds, hook=hook)
    certified = (crown_lower > 0).all(1)
    rest = (~certified).nonzero().flatten()
    if rest.numel() == 0:
        return certified
    sub_bounds = {name: (lo[rest], hi[rest]) for name, (lo, hi) in bounds.items()}
    sub_spec = spec[rest].reshape(rest.numel(), spec.shape[1], *graph.output_shape)
    offset = torch.zeros(spec.shape[1], dtype=x.dtype, device=x.device)
    sub_hook = None if hook is None else BallConcretization(entry, x[rest], eps[rest])
    best, _ = optimize_slopes(graph, sub_spec, offset, sub_bounds, AlphaOptions(iterations=iterations, lr=lr),
                              hook=sub_hook)
    certified[rest] = (torch.maximum(best.detach(), crown_lower[rest]) > 0).all(1)
    return certified
