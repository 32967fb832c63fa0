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
    """``count`` points of the box ``[*shape]``: its centre, random vertices, points on random faces (each
    coordinate at one of its bounds with probability 0.3) and uniform points. Extremes of piecewise-linear
    networks lie at vertices of linear regions, many of them on the box's faces, where uniform sampling in
    several dimensions almost never lands."""
    u = torch.rand(count, *lower.shape, generator=generator, dtype=lower.dtype, device=lower.device)
    quarter = count // 4
    u[:quarter] = u[:quarter].round()
    on_face = torch.rand(u[quarter : 2 * quarter].shape, generator=generator, dtype=lower.dtype,
                         device=lower.device) < 0.3
    u[quarter : 2 * quarter] = torch.where(on_face, u[quarter : 2 * quarter].round(), u[quarter : 2 * quarter])
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

    ``starts`` (``[S, *shape]``) are extra starting points for PGD (e.g. centres of open domains). The points
    are drawn and evaluated on the device of the problem's box, from a generator of that device.
    """
    generator = torch.Generator(device=problem.lower.device).manual_seed(seed)
    with torch.no_grad():
        points = sample_box(problem.lower, problem.upper, samples, generator)
        # the centre, then the vertices, face points and uniform points mixed; the first 1024 alone before the
        # rest, so an easy counterexample costs a fraction of the whole batch
        mix = torch.cat([torch.zeros(1, dtype=torch.long, device=generator.device),
                         1 + torch.randperm(samples - 1, generator=generator, device=generator.device)])
        points = points[mix.to(points.device)]
        head = min(samples, 1024)
        values, _ = problem.violation(network.forward_flat(points[:head]))
        if not bool((values <= 0).any()) and head < samples:
            values = torch.cat([values, problem.violation(network.forward_flat(points[head:]))[0]])
        points = points[: len(values)]
    order = values.argsort()
    hits = order[values[order] <= 0][:4]
    found = [points[i] for i in hits]
    if found or deadline.expired():
        return found
    # PGD from the best samples (and any given starts), one copy of the box per start
    first = points[order[:restarts]]
    if starts is not None and len(starts):
        first = torch.cat([starts, first])[:restarts]

    def objective(x: Tensor) -> Tensor:
        return problem.violation(network.forward_flat(x))[0]

    boxes = first.shape[0]
    best_x, best_value = pgd_minimize(
        objective, problem.lower.expand(boxes, *problem.lower.shape).contiguous(),
        problem.upper.expand(boxes, *problem.upper.shape).contiguous(), steps=steps, restarts=1,
        generator=generator, start=first,
    )
    order = best_value.argsort()
    return list(best_x[order[best_value[order] <= 0][:4]])
