"""Falsification: look for a counterexample by random sampling and PGD before (and during) the proof search.

The objective minimised is the property's *violation*, ``min over cases of max over rows`` of the margins
``C f(x) - d``; a point with violation <= 0 is a candidate counterexample (validated elsewhere).
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.attack.pgd import pgd_minimize
from verifier.complete.deadline import Deadline
from verifier.complete.problem import Problem
from verifier.network import Network


def sample_box(lower: Tensor, upper: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` points of the box ``[*shape]``: its centre, random vertices and uniform points."""
    u = torch.rand(count, *lower.shape, generator=generator, dtype=lower.dtype)
    u[: count // 4] = u[: count // 4].round()
    u[0] = 0.5
    return lower + (upper - lower) * u


def find_candidates(
    network: Network,
    problem: Problem,
    deadline: Deadline,
    samples: int = 512,
    steps: int = 60,
    restarts: int = 8,
    seed: int = 0,
    starts: Tensor | None = None,
) -> list[Tensor]:
    """Points of the box whose violation is <= 0 according to the engine's forward pass, best first.

    ``starts`` (``[S, *shape]``) are extra starting points for PGD (e.g. centres of open domains).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        points = sample_box(problem.lower, problem.upper, samples, generator)
        values, _ = problem.violation(network.forward_flat(points))
    order = values.argsort()
    found = [points[i] for i in order if values[i] <= 0][:4]
    if found or deadline.expired():
        return found
    first = points[order[0]].unsqueeze(0)
    if starts is not None and len(starts):
        first = starts[:1]

    def objective(x: Tensor) -> Tensor:
        return problem.violation(network.forward_flat(x))[0]

    best_x, best_value = pgd_minimize(
        objective, problem.lower.unsqueeze(0), problem.upper.unsqueeze(0), steps=steps, restarts=restarts,
        generator=generator, start=first,
    )
    return [best_x[0]] if best_value[0] <= 0 else []
