"""Projected gradient descent (PGD) over an input box, batched.

Used to look for counterexamples before a proof is attempted, and by the tests to check that no point
found by an optimiser leaves a claimed bound.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from verifier.cancel import checkpoint


def pgd_minimize(
    objective: Callable[[Tensor], Tensor],
    lower: Tensor,
    upper: Tensor,
    steps: int = 50,
    restarts: int = 4,
    step_fraction: float = 0.1,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimise ``objective`` over each box by signed-gradient descent with random restarts.

    ``lower``/``upper`` are ``[N, *shape]``: ``N`` independent problems (boxes, or copies of one box
    with different objectives). ``objective`` maps ``[R*N, *shape]`` points (restart-major: row
    ``r*N + n`` belongs to problem ``n``) to ``[R*N]`` values. The step size decays geometrically from
    ``step_fraction`` of the box width to ``1e-4`` of it, so the last steps can settle into narrow
    minima. ``start`` (``[N, *shape]``) seeds the first restart.
    Returns the best point ``[N, *shape]`` and its value ``[N]`` for each problem.
    """
    n = lower.shape[0]
    width = (upper - lower).unsqueeze(0)
    lo, hi = lower.unsqueeze(0), upper.unsqueeze(0)
    x = lo + width * torch.rand((restarts, *lower.shape), generator=generator, dtype=lower.dtype, device=lower.device)
    if start is not None:
        x[0] = torch.minimum(torch.maximum(start, lower), upper)
    best_value = lower.new_full((n,), float("inf"))
    problems = torch.arange(n, device=lower.device)
    best_x = lower.clone()

    def record(points: Tensor, values: Tensor) -> None:
        values = values.detach().reshape(restarts, n)
        value, which = values.min(0)
        better = value < best_value
        best_value[better] = value[better]
        best_x[better] = points.detach()[which, problems][better]

    for step in range(steps):
        checkpoint()
        x.requires_grad_(True)
        with torch.enable_grad():
            values = objective(x.reshape(restarts * n, *lower.shape[1:]))
            grad, = torch.autograd.grad(values.sum(), x)
        record(x, values)
        size = step_fraction * (1e-4 / step_fraction) ** (step / max(1, steps - 1))
        with torch.no_grad():
            x = x - size * width * grad.sign()
            x = torch.minimum(torch.maximum(x, lo), hi)
    with torch.no_grad():
        record(x, objective(x.reshape(restarts * n, *lower.shape[1:])))
    return best_x, best_value


def output_extremes(
    forward: Callable[[Tensor], Tensor], lower: Tensor, upper: Tensor, steps: int = 40, restarts: int = 3,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """PGD estimates of the minimum and maximum of every output over each box.

    ``forward`` maps ``[M, *shape]`` to ``[M, n_out]``; the boxes are ``[B, *shape]``. Returns the
    smallest and largest values found, each ``[B, n_out]`` (inner estimates of the true range).
    """
    batch = lower.shape[0]
    with torch.no_grad():
        n_out = forward(lower[:1]).reshape(1, -1).shape[1]
    K = 2 * n_out
    rows = torch.arange(batch * K, device=lower.device)
    signs = torch.cat([lower.new_ones(n_out), -lower.new_ones(n_out)])
    column = torch.arange(K, device=lower.device) % n_out

    def objective(x: Tensor) -> Tensor:
        y = forward(x).reshape(x.shape[0], -1)
        index = rows.repeat(x.shape[0] // (batch * K))
        problem = index % K
        return signs[problem] * y[torch.arange(x.shape[0], device=y.device), column[problem]]

    lo = lower.repeat_interleave(K, 0)
    hi = upper.repeat_interleave(K, 0)
    generator = torch.Generator(device=lower.device).manual_seed(seed)
    _, values = pgd_minimize(objective, lo, hi, steps=steps, restarts=restarts, generator=generator)
    values = values.reshape(batch, K)
    return values[:, :n_out], -values[:, n_out:]
