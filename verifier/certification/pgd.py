"""The ``pgd`` column: empirical robustness under a strong batched attack, an upper bound on certified accuracy.

Projected gradient descent (Madry et al. 2018) on the margin ``f_y - f_j`` inside each input's perturbation
set, every input of a batch and every restart at once: restart 0 starts at the input, the others at random
points of the set; restart ``r`` (``1 <= r < K``) targets the ``r``-th most likely wrong class (the margin to
that class), the rest the whole margin ``f_y - max_j f_j`` (Carlini and Wagner's loss). Steps are signed
gradients (L-infinity) or normalised gradients (L2) of a size decaying geometrically from ``eps / 2`` to
``eps / 100``, each followed by the projection onto the set. An input is *broken* as soon as some point of
its set has a margin ``<= 0`` (a tie already defeats any certificate); the point is re-checked at the end by
a forward pass and lies in the set by construction (:meth:`~verifier.certification.balls.PerturbationSet.project`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.cancel import checkpoint
from verifier.certification.balls import PerturbationSet, margins
from verifier.network import Network


def attack(network: Network, perturbation: PerturbationSet, x: Tensor, labels: Tensor, eps: Tensor,
           steps: int = 50, restarts: int = 8, seeds: list[int] | None = None) -> tuple[Tensor, Tensor]:
    """Look for an input of each set whose margin is ``<= 0``. Returns ``broken`` ``[B]`` and the points found
    ``[B, ...]`` (the input itself where none was found). ``seeds``: one per input for its random starts, so
    an input's attack does not depend on the batch it is in (a resumed run repeats it exactly)."""
    graph = network.graph
    batch = x.shape[0]
    with torch.no_grad():
        logits = graph.forward(x).reshape(batch, -1)
    broken = margins(logits, labels) <= 0
    found = x.clone()
    active = (~broken & (eps > 0)).nonzero().flatten()
    if active.numel() == 0 or steps <= 0:
        return broken, found
    n_classes = logits.shape[1]
    restarts = max(1, restarts)
    # restart r < K targets the r-th most likely wrong class; -1: the untargeted margin
    ranked = logits.scatter(1, labels.unsqueeze(1), -torch.inf).argsort(1, descending=True)
    targets = torch.full((restarts, batch), -1, dtype=torch.long, device=x.device)
    for r in range(1, min(restarts, n_classes)):
        targets[r] = ranked[:, r - 1]
    shape = x.shape[1:]
    center = x.unsqueeze(0).expand(restarts, *x.shape)
    noise, scale = _random_starts(restarts, x, seeds)
    radius = eps.reshape(1, batch, *[1] * len(shape))
    if perturbation.norm == "l2":
        noise = noise / noise.flatten(2).norm(dim=2).clamp(min=1e-12).reshape(restarts, batch, *[1] * len(shape))
        noise = noise * scale.reshape(restarts, batch, *[1] * len(shape))
    start = center + noise * radius
    start[0] = x
    points = start
    for step in range(steps + 1):
        checkpoint()
        idx = active
        if idx.numel() == 0:
            break
        current = points[:, idx].reshape(-1, *shape)
        rows_center = center[:, idx].reshape(-1, *shape)
        rows_eps = eps[idx].repeat(restarts)
        rows_label = labels[idx].repeat(restarts)
        rows_target = targets[:, idx].reshape(-1)
        current = perturbation.project(rows_center, current, rows_eps).detach().requires_grad_(True)
        with torch.enable_grad():
            out = graph.forward(current).reshape(current.shape[0], -1)
            whole = margins(out, rows_label)
            targeted = out.gather(1, rows_label.unsqueeze(1)).squeeze(1) - out.gather(
                1, rows_target.clamp(min=0).unsqueeze(1)).squeeze(1)
            loss = torch.where(rows_target >= 0, targeted, whole)
            gradient, = torch.autograd.grad(loss.sum(), current)
        # an input is broken when any restart reached a margin <= 0
        hit = (whole.detach() <= 0).reshape(restarts, -1)
        newly = hit.any(0)
        if newly.any():
            which = hit.float().argmax(0)
            chosen = current.detach().reshape(restarts, -1, *shape)[which, torch.arange(idx.numel())]
            found[idx[newly]] = chosen[newly]
            broken[idx[newly]] = True
        if step == steps:
            break
        size = 0.5 * 0.02 ** (step / max(1, steps - 1))
        step_radius = rows_eps.reshape(-1, *[1] * len(shape)) * size
        if perturbation.norm == "linf":
            direction = gradient.sign()
        else:
            direction = gradient / gradient.flatten(1).norm(dim=1).clamp(min=1e-30).reshape(-1, *[1] * len(shape))
        moved = (current.detach() - step_radius * direction).reshape(restarts, -1, *shape)
        points = points.clone()
        points[:, idx] = moved
        active = idx[~newly]
    # the points reported are re-checked: in the set, and misclassified by a forward pass
    if broken.any():
        rows = broken.nonzero().flatten()
        with torch.no_grad():
            out = graph.forward(found[rows]).reshape(rows.numel(), -1)
        still = (margins(out, labels[rows]) <= 0) & perturbation.contains(x[rows], found[rows], eps[rows])
        broken[rows] = still
    return broken, found


def _random_starts(restarts: int, x: Tensor, seeds: list[int] | None) -> tuple[Tensor, Tensor]:
    """Uniform noise in ``[-1, 1]`` ``[R, B, ...]`` and uniform scales ``[R, B]``, drawn per input from its seed."""
    seeds = list(range(x.shape[0])) if seeds is None else seeds
    noise, scale = [], []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        noise.append(torch.rand((restarts, *x.shape[1:]), generator=generator, dtype=x.dtype) * 2 - 1)
        scale.append(torch.rand(restarts, generator=generator, dtype=x.dtype))
    return torch.stack(noise, 1).to(x.device), torch.stack(scale, 1).to(x.device)
