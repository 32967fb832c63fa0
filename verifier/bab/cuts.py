"""Cuts learned from branch and bound (after BICCOS, Zhou et al., NeurIPS 2024), without a MIP solver.

A domain refuted under split decisions ``S = {(j, s_j)}`` proves that no counterexample has every ReLU ``j``
of ``S`` in phase ``s_j``: over the ReLU indicator variables ``delta_j`` (1 active, 0 inactive) that is the cut
``sum_{s_j > 0} delta_j + sum_{s_j < 0} (1 - delta_j) <= |S| - 1``. The cut is only of use elsewhere in the
tree, so it is first *strengthened*: the decisions whose split multiplier (beta) is zero on every row that
refutes the domain did not enter the bound through their Lagrangian term, and they are dropped when one
bound pass on the root's pre-activation bounds clamped by the remaining decisions (the split neurons'
relaxations are exact, so dropping a decision can still loosen the bound) still refutes the domain.

The cuts enter the search on the domains it is about to bound (``apply``):

* a domain holding every decision of a cut is infeasible for counterexamples and is dropped unbounded;
* a domain holding all but one, the last neuron unsplit, must have that neuron in the other phase: the
  decision is added to the domain (unit propagation), where it gets its own beta multiplier and an exact
  relaxation in the next bound pass; two cuts implying opposite phases drop the domain.

Cuts are kept as two ``[G, N]`` 0/1 matrices (the positive and negative literals over all ReLUs, layers
concatenated), so checking a batch of ``D`` domains against ``G`` cuts is two matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class CutOptions:
    """``max_cuts``: cuts kept (the oldest are dropped); ``max_length``: longest cut kept after strengthening
    (a long one matches almost no other domain)."""

    max_cuts: int = 4000
    max_length: int = 24


class CutStore:
    """The learned cuts of one ReLU-split search (see the module docstring)."""

    def __init__(self, layers: dict[str, int], dtype: torch.dtype, options: CutOptions | None = None,
                 device: torch.device | None = None):
        self.layers = dict(layers)                      # pre-activation name -> neurons, in the search's order
        self.size = sum(self.layers.values())
        self.options = options or CutOptions()
        self.positive = torch.zeros(0, self.size, dtype=dtype, device=device)
        self.negative = torch.zeros(0, self.size, dtype=dtype, device=device)
        self.learned = 0
        self.pruned = 0
        self.implied = 0

    def __len__(self) -> int:
        return self.positive.shape[0]

    def flat(self, splits: dict[str, Tensor]) -> Tensor:
        """Split decisions ``[D, N]`` (int8 in {-1, 0, 1}) over all layers."""
        return torch.cat([splits[name].reshape(splits[name].shape[0], -1) for name in self.layers], 1)

    def unflat(self, flat: Tensor) -> dict[str, Tensor]:
        out, start = {}, 0
        for name, size in self.layers.items():
            out[name] = flat[:, start : start + size].contiguous()
            start += size
        return out

    def add(self, decisions: Tensor) -> None:
        """Add the cuts excluding each row of ``decisions`` ``[G, N]`` (int8 in {-1, 0, 1})."""
        length = (decisions != 0).sum(1)
        keep = (length > 0) & (length <= self.options.max_length)
        decisions = decisions[keep]
        if len(decisions) == 0:
            return
        positive = (decisions > 0).to(self.positive.dtype)
        negative = (decisions < 0).to(self.positive.dtype)
        self.positive = torch.cat([self.positive, positive])[-self.options.max_cuts :]
        self.negative = torch.cat([self.negative, negative])[-self.options.max_cuts :]
        self.learned += len(decisions)

    def apply(self, splits: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """For domains with ``splits`` (``[D, N_layer]`` per layer): the mask ``[D]`` of domains that no cut
        excludes, and their splits with the decisions the cuts imply added."""
        flat = self.flat(splits)
        count = flat.shape[0]
        if len(self) == 0 or count == 0:
            return torch.ones(count, dtype=torch.bool, device=flat.device), splits
        active = (flat > 0).to(self.positive.dtype)
        inactive = (flat < 0).to(self.positive.dtype)
        held = active @ self.positive.T + inactive @ self.negative.T           # literals of each cut the domain has
        broken = inactive @ self.positive.T + active @ self.negative.T         # literals it contradicts
        length = (self.positive + self.negative).sum(1)
        keep = ~((held == length) & (broken == 0)).any(1)
        unit = (held == length - 1) & (broken == 0) & keep.unsqueeze(1)        # [D, G]: one literal left open
        if bool(unit.any()):
            flat = flat.clone()
            domain, cut = unit.nonzero(as_tuple=True)
            open_ = (flat[domain] == 0).to(self.positive.dtype)
            # the open literal of each (domain, cut) pair, and the phase the cut forbids for it
            pos = (open_ * self.positive[cut]).argmax(1)
            has_pos = (open_ * self.positive[cut]).amax(1) > 0
            neg = (open_ * self.negative[cut]).argmax(1)
            neuron = torch.where(has_pos, pos, neg)
            phase = torch.where(has_pos, -1, 1).to(flat.dtype)                  # the opposite of the literal
            implied = torch.zeros_like(flat, dtype=torch.int32)
            implied.index_put_((domain, neuron), phase.to(torch.int32), accumulate=False)
            clash = torch.zeros_like(flat, dtype=torch.int32)
            clash.index_put_((domain, neuron), torch.ones_like(neuron, dtype=torch.int32), accumulate=True)
            # opposite implications of one neuron: both phases excluded, the domain is infeasible
            plus = torch.zeros_like(flat, dtype=torch.int32)
            plus.index_put_((domain, neuron), (phase > 0).to(torch.int32), accumulate=True)
            conflict = ((plus > 0) & (plus < clash)).any(1)
            keep &= ~conflict
            flat = torch.where(implied != 0, implied.to(flat.dtype), flat)
            self.implied += int((implied != 0).sum())
        self.pruned += int((~keep).sum())
        return keep, self.unflat(flat)


def strengthen(search, domains, refuted: Tensor, max_trials: int = 256) -> Tensor:
    """Cuts ``[G, N]`` from the ``refuted`` domains (mask ``[D]``): each domain's decisions less one whose
    multipliers are zero on every row that refutes it, for each such decision where one bound pass with the
    remaining decisions (on the root's pre-activation bounds, with the domain's slopes and multipliers)
    still refutes every case. (Dropping all zero-multiplier decisions at once, measured on mnist_fc 256x4,
    never survived the re-check: a split also makes its neuron's relaxation exact.) At most ``max_trials``
    candidate cuts are checked per call."""
    problem = search.problem
    index = refuted.nonzero().flatten()
    empty = torch.zeros(0, 0, dtype=torch.int8, device=refuted.device)
    if len(index) == 0:
        return empty
    chosen = domains.select(index)
    refuting = chosen.lb > problem.tolerance                                # [G, R] (tolerance per row or scalar)
    names = list(chosen.splits)
    full = torch.cat([chosen.splits[name].reshape(len(index), -1) for name in names], 1)
    used = torch.cat([((chosen.betas[name] > 0) & refuting.unsqueeze(-1)).any(1) for name in names], 1)
    droppable = (full != 0) & ~used                                         # [G, N]
    domain, neuron = droppable.nonzero(as_tuple=True)
    if len(domain) == 0:
        return empty
    if len(domain) > max_trials:
        pick = torch.randperm(len(domain), device=domain.device)[:max_trials]
        domain, neuron = domain[pick], neuron[pick]
    trial_flat = full[domain].clone()
    trial_flat[torch.arange(len(domain), device=domain.device), neuron] = 0
    trial_splits, start = {}, 0
    for name in names:
        size = chosen.splits[name].shape[1]
        trial_splits[name] = trial_flat[:, start : start + size].contiguous()
        start += size
    root = {name: (lo.expand(len(domain), *lo.shape[1:]), hi.expand(len(domain), *hi.shape[1:]))
            for name, (lo, hi) in search.root_pre_bounds.items()}
    pick = lambda d: {k: v[domain] for k, v in d.items()}  # noqa: E731
    trial = type(chosen)(root, trial_splits, pick(chosen.alphas), pick(chosen.betas),
                         torch.full_like(chosen.lb[domain], -torch.inf))
    with torch.no_grad():
        value = search.evaluate(trial)
    return trial_flat[problem.refuted(value).all(1)]
