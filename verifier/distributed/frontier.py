"""Open domains on the move: a search's frontier as one value that can be counted, weighed, cut into pieces and
sent to another process.

A frontier is what :meth:`InputSplitSearch.frontier` or :meth:`ReluSplitSearch.frontier` hands out: for input
splitting a tuple ``(lower, upper, lb, observed, depth)`` of batched tensors, for ReLU splitting a
:class:`~verifier.bab.relu_split.Domains` (its depth is its number of split ReLUs). Each domain is
``2^-depth`` of its root (every split halves a domain), so a set of domains has an exact *weight*, a
dyadic fraction, and the domains of a problem that are refuted, undecided or still open always weigh 1 in
all (:mod:`verifier.distributed.ledger`).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor

from verifier.bab.relu_split import Domains, depths

#: an input-split frontier (lower, upper, lb, observed, depth) or a ReLU-split one
Frontier = tuple[Tensor, ...] | Domains


def size(frontier: Frontier | None) -> int:
    """How many domains."""
    if frontier is None:
        return 0
    return len(frontier) if isinstance(frontier, Domains) else int(frontier[0].shape[0])


def depth_of(frontier: Frontier) -> Tensor:
    """``[D]``: each domain's depth (splits from the root)."""
    return depths(frontier) if isinstance(frontier, Domains) else frontier[4]


def depth_counts(frontier: Frontier | None) -> Counter[int]:
    """Domains per depth."""
    if frontier is None or size(frontier) == 0:
        return Counter()
    return Counter(depth_of(frontier).tolist())


def weight(counts: Counter[int] | dict[int, int]) -> Fraction:
    """The exact share of the root that domains counted by depth make up: ``sum count * 2^-depth``."""
    return sum((Fraction(count, 1 << int(depth)) for depth, count in counts.items()), Fraction(0))


def select(frontier: Frontier, index: Tensor) -> Frontier:
    """The domains ``index``."""
    if isinstance(frontier, Domains):
        return frontier.select(index)
    return tuple(part[index] for part in frontier)


def concat(frontiers: list[Frontier]) -> Frontier:
    """One frontier of several (of one kind)."""
    if isinstance(frontiers[0], Domains):
        return Domains.cat(list(frontiers))
    return tuple(torch.cat(parts) for parts in zip(*frontiers))


def split(frontier: Frontier, pieces: int) -> list[Frontier]:
    """``pieces`` frontiers taking the domains in turn (domain ``i`` goes to piece ``i mod pieces``), so each
    gets a share of the hard and the easy ones, the shallow and the deep ones; none is empty."""
    count = size(frontier)
    pieces = max(1, min(pieces, count))
    if pieces == 1:
        return [frontier]
    order = torch.arange(count)
    return [select(frontier, order[start::pieces]) for start in range(pieces)]


def portable(frontier: Frontier) -> Frontier:
    """The frontier with every tensor detached and compact: a view would carry its whole base tensor along
    when pickled, an expanded one a copy per domain."""

    def own(t: Tensor) -> Tensor:
        return t.detach().clone(memory_format=torch.contiguous_format)

    if isinstance(frontier, Domains):
        return Domains({k: (own(lo), own(hi)) for k, (lo, hi) in frontier.bounds.items()},
                       {k: own(v) for k, v in frontier.splits.items()},
                       {k: own(v) for k, v in frontier.alphas.items()},
                       {k: own(v) for k, v in frontier.betas.items()}, own(frontier.lb))
    return tuple(own(part) for part in frontier)


def nbytes(frontier: Any) -> int:
    """Bytes of tensor data in a frontier (what a transfer moves, give or take pickling)."""
    if frontier is None:
        return 0
    if isinstance(frontier, Domains):
        tensors = [t for pair in frontier.bounds.values() for t in pair]
        tensors += [*frontier.splits.values(), *frontier.alphas.values(), *frontier.betas.values(), frontier.lb]
    else:
        tensors = list(frontier)
    return sum(t.numel() * t.element_size() for t in tensors)
