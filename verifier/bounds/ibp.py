"""Interval bound propagation (IBP): boxes forward through the graph, one operator rule at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.ir import Graph
from verifier.ops.base import Interval


def interval_bounds(graph: Graph, lower: Tensor, upper: Tensor) -> dict[str, Interval]:
    """Elementwise lower and upper bounds of every tensor of ``graph`` over the input boxes.

    ``lower``/``upper`` are ``[B, *input_shape]``; every returned bound is ``[B, *shape]``.
    """
    bounds: dict[str, Interval] = {graph.input_name: (lower, upper)}
    for node in graph.nodes:
        bounds[node.name] = node.op.interval(*(bounds[name] for name in node.inputs))
    return bounds


def interval_of_spec(spec: Tensor, lower: Tensor, upper: Tensor) -> Interval:
    """Bounds of ``spec @ y`` for ``y`` in the box ``[lower, upper]``.

    ``spec`` is ``[b, K, n]``, the box ``[B, n]``; returns two ``[B, K]`` tensors.
    """
    pos, neg = spec.clamp(min=0), spec.clamp(max=0)
    if not (torch.isfinite(lower).all() and torch.isfinite(upper).all()):
        # infinite bounds (a pole, an overflow): a zero coefficient must not turn them into NaN
        def times(weights: Tensor, values: Tensor) -> Tensor:
            product = weights * values.unsqueeze(1)
            return torch.where(weights == 0, 0.0, product).sum(-1)

        return times(pos, lower) + times(neg, upper), times(pos, upper) + times(neg, lower)
    lo, hi = lower.unsqueeze(-1), upper.unsqueeze(-1)
    spec_lower = (pos @ lo + neg @ hi).squeeze(-1)
    spec_upper = (pos @ hi + neg @ lo).squeeze(-1)
    return spec_lower, spec_upper
