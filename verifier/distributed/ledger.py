"""The books of a distributed search: every domain of a problem's search tree is refuted, undecided, or in exactly
one open subtree, and the three together weigh exactly 1.

A *subtree* is a set of open domains handed to workers as one task: it has an id, a domain count and an
exact weight (:func:`verifier.distributed.frontier.weight`: each domain is ``2^-depth`` of the root). It is
open (queued, or running as attempt ``k`` on some worker) until a result for it is *settled*; a result
whose subtree is settled already (a late one from an attempt given up on, a duplicate) is ignored. A
worker that dies, hangs or disconnects leaves its subtree open: it is re-queued as it was sent.

Settling checks the balance of that result: the subtree's weight must equal the weight the worker refuted
plus the weight it left undecided plus the weight of the open domains it returned, exactly (fractions, no
rounding). A result that does not balance raises :class:`LedgerError` (a bug, never an answer). The problem
is proved only when the refuted weight is exactly 1, which leaves no domain unaccounted for.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from verifier.distributed import frontier as frontiers
from verifier.errors import VerifierError

QUEUED, RUNNING, SETTLED = "queued", "running", "settled"


class LedgerError(VerifierError):
    """The domains of a result do not add up to those of its subtree (or the books do not close)."""


@dataclass
class Subtree:
    """Open domains sent to workers as one task: ``domains`` (a frontier), their ``count`` and exact ``weight``.
    ``attempt``: the number of the current (latest) attempt; ``state``: queued, running or settled."""

    id: int
    domains: Any
    count: int
    weight: Fraction
    state: str = QUEUED
    attempt: int = 0
    started: float = 0.0
    worker: str = ""
    failures: int = 0
    history: list[str] = field(default_factory=list)


class Ledger:
    """The books of one problem's search (see the module docstring)."""

    def __init__(self) -> None:
        self.subtrees: dict[int, Subtree] = {}
        self.refuted = Fraction(0)
        self.undecided = Fraction(0)
        self.refuted_domains = 0
        self.undecided_domains = 0
        self.sent_domains = 0        # domains handed to workers, re-sent ones included
        self.requeued = 0            # attempts given up on (worker died, hung, disconnected)
        self.requeued_domains = 0
        self.ignored = 0             # late or duplicate results
        self.requeue_log: list[dict[str, Any]] = []   # each attempt given up on: subtree, attempt, domains, why
        self._next = 0

    # -- opening ----------------------------------------------------------------------------------------
    def open(self, domains: Any) -> Subtree:
        """A new queued subtree of ``domains``."""
        counts = frontiers.depth_counts(domains)
        subtree = Subtree(self._next, domains, sum(counts.values()), frontiers.weight(counts))
        self._next += 1
        self.subtrees[subtree.id] = subtree
        return subtree

    def close_locally(self, refuted: Counter[int], undecided: Counter[int]) -> None:
        """Count the domains a search refuted or left undecided before its frontier was opened here."""
        self.refuted += frontiers.weight(refuted)
        self.undecided += frontiers.weight(undecided)
        self.refuted_domains += sum(refuted.values())
        self.undecided_domains += sum(undecided.values())

    # -- attempts ---------------------------------------------------------------------------------------
    def queued(self) -> list[Subtree]:
        return [s for s in self.subtrees.values() if s.state == QUEUED]

    def running(self) -> list[Subtree]:
        return [s for s in self.subtrees.values() if s.state == RUNNING]

    def open_subtrees(self) -> list[Subtree]:
        return [s for s in self.subtrees.values() if s.state != SETTLED]

    def start(self, subtree: Subtree, worker: str = "") -> int:
        """Mark ``subtree`` running as a new attempt; returns the attempt number."""
        if subtree.state != QUEUED:
            raise LedgerError(f"subtree {subtree.id} started while {subtree.state}")
        subtree.state, subtree.attempt, subtree.started, subtree.worker = RUNNING, subtree.attempt + 1, \
            time.monotonic(), worker
        self.sent_domains += subtree.count
        return subtree.attempt

    def requeue(self, subtree_id: int, attempt: int, why: str) -> bool:
        """Give up on attempt ``attempt`` of a subtree (its worker died, hung or disconnected): queued again,
        its domains as they were sent; False (nothing changes) unless that attempt is the one running. A
        result of the abandoned attempt that still comes is accepted if the subtree is still open then (it is
        as good as any), ignored otherwise."""
        subtree = self.subtrees[subtree_id]
        if subtree.state != RUNNING or subtree.attempt != attempt:
            return False
        subtree.state = QUEUED
        subtree.failures += 1
        subtree.history.append(f"attempt {subtree.attempt}: {why}")
        self.requeued += 1
        self.requeued_domains += subtree.count
        self.requeue_log.append({"subtree": subtree.id, "attempt": attempt, "domains": subtree.count, "why": why})
        return True

    # -- settling ---------------------------------------------------------------------------------------
    def is_open(self, subtree_id: int) -> bool:
        subtree = self.subtrees.get(subtree_id)
        return subtree is not None and subtree.state != SETTLED

    def settle(self, subtree_id: int, refuted: Counter[int], undecided: Counter[int], remaining: Any,
               pieces: int = 1) -> list[Subtree] | None:
        """Settle a subtree with a worker's result: the domains it refuted and left undecided (counted by depth)
        and the open ``remaining`` ones (a frontier, or None), opened as up to ``pieces`` new subtrees, which
        are returned. None (nothing changes) when the subtree is settled already: a late or duplicate result.
        Raises :class:`LedgerError` when the result does not balance."""
        subtree = self.subtrees.get(subtree_id)
        if subtree is None or subtree.state == SETTLED:
            self.ignored += 1
            return None
        remaining_counts = frontiers.depth_counts(remaining)
        gone, left, kept = frontiers.weight(refuted), frontiers.weight(undecided), frontiers.weight(remaining_counts)
        if gone + left + kept != subtree.weight:
            raise LedgerError(f"subtree {subtree.id} does not balance: {subtree.count} domains of weight "
                              f"{subtree.weight} came back as refuted {gone} + undecided {left} + open {kept}")
        subtree.state = SETTLED
        subtree.domains = None  # its data lives on in the new subtrees
        self.refuted += gone
        self.undecided += left
        self.refuted_domains += sum(refuted.values())
        self.undecided_domains += sum(undecided.values())
        if remaining is None or frontiers.size(remaining) == 0:
            return []
        return [self.open(piece) for piece in frontiers.split(remaining, pieces)]

    # -- totals -----------------------------------------------------------------------------------------
    def open_weight(self) -> Fraction:
        return sum((s.weight for s in self.open_subtrees()), Fraction(0))

    def open_domains(self) -> int:
        return sum(s.count for s in self.open_subtrees())

    def check(self) -> None:
        """Raise :class:`LedgerError` unless refuted + undecided + open weigh exactly 1."""
        total = self.refuted + self.undecided + self.open_weight()
        if total != 1:
            raise LedgerError(f"the books do not close: refuted {self.refuted} + undecided {self.undecided} + open "
                              f"{self.open_weight()} = {total}, not 1")

    def proved(self) -> bool:
        """Every domain refuted: weight exactly 1 refuted, nothing open, nothing undecided."""
        self.check()
        return self.refuted == 1 and not self.open_subtrees()

    def summary(self) -> dict[str, Any]:
        """The books in numbers (weights as exact fractions in text)."""
        return {"subtrees": len(self.subtrees), "open_subtrees": len(self.open_subtrees()),
                "refuted_weight": str(self.refuted), "undecided_weight": str(self.undecided),
                "open_weight": str(self.open_weight()), "refuted_domains": self.refuted_domains,
                "undecided_domains": self.undecided_domains, "open_domains": self.open_domains(),
                "sent_domains": self.sent_domains, "requeued": self.requeued,
                "requeued_domains": self.requeued_domains, "ignored_results": self.ignored,
                "requeue_log": self.requeue_log[-20:],
                "requeued_settled": all(self.subtrees[e["subtree"]].state == SETTLED for e in self.requeue_log)}
