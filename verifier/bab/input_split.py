"""Branch and bound over the input box, for networks with few inputs (ACAS Xu, control policies).

Domains are sub-boxes, processed in batches, the lowest-bounded first (so counterexamples turn up early).
Each batch is bounded at once (pre-activation bounds by forward-mode linear bounds or CROWN, the margins
by one CROWN backward pass); domains where every case is refuted are dropped, the others are checked at
their centre and at the minimiser of their linear lower bound (a cheap counterexample search) and split
in two along the input dimension with the largest *smear*: ``|coefficient of the bound| * width``, the
dimension the bound depends on most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from verifier.attack.pgd import pgd_minimize
from verifier.bab.batching import input_split_batch
from verifier.bounds.alpha import AlphaOptions, optimize_slopes
from verifier.bounds.crown import CrownOptions, backward_lower, compute_intermediate_bounds, pre_activation_names
from verifier.bounds.forward import forward_bounds, supports_forward
from verifier.bounds.ibp import interval_bounds
from verifier.complete.deadline import Deadline
from verifier.complete.problem import Problem
from verifier.complete.result import PAUSED, SAT, TIMEOUT, UNKNOWN, UNSAT
from verifier.device import OutOfMemory, attempt, halving_on_oom
from verifier.network import Network


@dataclass
class InputSplitOptions:
    """``batch``: domains bounded together (None: sized to the network and to the memory free on the device,
    see :func:`verifier.bab.batching.input_split_batch`); ``intermediate``: ``"crown"``, ``"forward"`` or ``"ibp"`` for
    pre-activation bounds; ``max_domains``: open domains before giving up with ``unknown``;
    ``alpha_iterations``: alpha-CROWN steps on the domains plain CROWN leaves open (0: none);
    ``candidates``: input dimensions tried per split (strong branching)."""

    batch: int | None = None
    intermediate: str = "crown"
    max_domains: int = 2_000_000
    alpha_iterations: int = 10
    candidates: int = 8


class MarginBounder:
    """Lower bounds of a problem's margins ``C f(x) - d`` over batches of boxes, with the linear bound's
    input coefficients (for branching and for candidate points)."""

    def __init__(self, network: Network, problem: Problem, intermediate: str, alpha_iterations: int = 0,
                 refine_all: bool = False):
        self.graph = network.graph
        self.problem = problem
        self.alpha = AlphaOptions(iterations=alpha_iterations)
        self.crown = CrownOptions(refine_all=refine_all)
        if intermediate == "forward" and not supports_forward(self.graph):
            intermediate = "crown"
        self.intermediate = intermediate
        shape = network.output_shape
        self.spec = problem.C.reshape(1, problem.rows, *shape)

    def __call__(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor | None]:
        with torch.no_grad():
            if self.intermediate == "forward":
                bounds = forward_bounds(self.graph, lower, upper)
            elif self.intermediate == "ibp":
                bounds = interval_bounds(self.graph, lower, upper)
            else:
                bounds = compute_intermediate_bounds(self.graph, lower, upper, self.crown)
            lb, A_x, _ = backward_lower(self.graph, self.graph.output_name, self.spec, bounds,
                                        return_coefficients=True)
            lb = lb - self.problem.d
        if self.alpha.iterations > 0:
            open_ = ~self.problem.refuted(lb).all(1)
            if open_.any():
                subset = {name: (lo[open_], hi[open_]) for name, (lo, hi) in bounds.items()}
                tighter, _ = optimize_slopes(self.graph, self.spec, self.problem.d, subset, self.alpha)
                lb = lb.clone()
                lb[open_] = torch.maximum(lb[open_], tighter)
        return lb, A_x


def choose_split_dimension(problem: Problem, lb: Tensor, A_x: Tensor | None, lower: Tensor, upper: Tensor) -> Tensor:
    """Per domain, the input dimension to bisect: the largest ``|A_x| * width`` for the row that is closest to
    refuting the hardest open case (widest dimension when the bound has no input coefficients)."""
    batch = lower.shape[0]
    width = (upper - lower).reshape(batch, -1)
    if A_x is None:
        return width.argmax(1)
    case_best = problem.case_max(lb)                       # [B, m]: best row per case
    hardest = case_best.argmin(1)                          # the case furthest from being refuted
    in_case = problem.row_case.unsqueeze(0) == hardest.unsqueeze(1)
    row = torch.where(in_case, lb, torch.full_like(lb, -torch.inf)).argmax(1)
    coeffs = A_x.reshape(A_x.shape[0], A_x.shape[1], -1).expand(batch, -1, -1)
    chosen = coeffs[torch.arange(batch, device=row.device), row]
    score = chosen.abs() * width
    return torch.where(score.amax(1) > 0, score.argmax(1), width.argmax(1))


def bisect(lower: Tensor, upper: Tensor, dim: Tensor) -> tuple[Tensor, Tensor]:
    """Both halves of every box along its chosen dimension: ``[2B, *shape]`` (left halves first)."""
    batch = lower.shape[0]
    flat_lo, flat_hi = lower.reshape(batch, -1), upper.reshape(batch, -1)
    rows = torch.arange(batch, device=dim.device)
    mid = (flat_lo[rows, dim] + flat_hi[rows, dim]) / 2
    left_hi, right_lo = flat_hi.clone(), flat_lo.clone()
    left_hi[rows, dim] = mid
    right_lo[rows, dim] = mid
    new_lo = torch.cat([flat_lo, right_lo]).reshape(2 * batch, *lower.shape[1:])
    new_hi = torch.cat([left_hi, flat_hi]).reshape(2 * batch, *lower.shape[1:])
    return new_lo, new_hi


def linear_minimizer(problem: Problem, lb: Tensor, A_x: Tensor | None, lower: Tensor, upper: Tensor) -> Tensor:
    """The box vertex minimising the linear lower bound of the hardest case's best row (a likely violation)."""
    if A_x is None:
        return (lower + upper) / 2
    batch = lower.shape[0]
    hardest = problem.case_max(lb).argmin(1)
    in_case = problem.row_case.unsqueeze(0) == hardest.unsqueeze(1)
    row = torch.where(in_case, lb, torch.full_like(lb, -torch.inf)).argmax(1)
    coeffs = A_x.reshape(A_x.shape[0], A_x.shape[1], -1).expand(batch, -1, -1)[torch.arange(batch, device=row.device),
                                                                              row]
    lo, hi = lower.reshape(batch, -1), upper.reshape(batch, -1)
    return torch.where(coeffs > 0, lo, hi).reshape(lower.shape)


def input_split_search(
    network: Network,
    problem: Problem,
    deadline: Deadline,
    options: InputSplitOptions,
    stats: dict,
    try_candidates: Callable[[Tensor], Tensor | None],
) -> tuple[str, Tensor | None]:
    """Run the search; returns ``(status, counterexample point or None)``.

    Every open domain is split by *strong branching*: both halves along each candidate dimension (every
    dimension when there are few, else the best few by smear and the widest) are bounded, and the split
    that leaves the least negative bound behind wins; its two halves, already bounded, go on the stack.
    ``try_candidates(points)`` validates candidate counterexamples and returns one that holds, or None.
    """
    search = InputSplitSearch(network, problem, options, stats, try_candidates)
    found = search.start()
    return found if found is not None else search.run(deadline)


class InputSplitSearch:
    """One input-split search (see :func:`input_split_search`): its open domains, a stack of bounded batches
    ``(lower, upper, lb, observed, depth)`` (``depth``: bisections from the root box, so a domain is
    ``2^-depth`` of its root's volume), and its counters. :meth:`run` goes on until a verdict, the deadline or,
    for a time slice, until ``pause()`` says so; :meth:`frontier` hands the open domains out and :meth:`add`
    takes such domains in, so that the search can continue elsewhere (:mod:`verifier.distributed`).
    ``closed`` counts the refuted domains by depth."""

    def __init__(self, network: Network, problem: Problem, options: InputSplitOptions, stats: dict,
                 try_candidates: Callable[[Tensor], Tensor | None]):
        neurons = sum(network.graph.numel(name) for name in pre_activation_names(network.graph))
        # refining every neuron tightens IBP for small networks; on large ones it costs more than it gives
        self.bounder = MarginBounder(network, problem, options.intermediate, options.alpha_iterations,
                                     refine_all=neurons <= 2000)
        # batches sized to the network: about as much work per batch as 1024 domains of ACAS Xu (on the CPU; a
        # GPU takes more, as far as its free memory holds them)
        sized = max(16, min(options.batch or 1024, 400_000 // max(1, neurons)))
        if options.batch is None:
            sized = input_split_batch(network.graph, problem.rows, problem.lower.dtype, problem.lower.device, sized)
        self.options = replace(options, batch=sized)
        stats["batch"] = self.options.batch
        stats["intermediate"] = self.bounder.intermediate
        self.network, self.problem, self.stats, self.try_candidates = network, problem, stats, try_candidates
        self.stack: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []
        self.open_count = self.visited = self.rounds = 0
        self.closed: Counter[int] = Counter()
        self.root_width = (problem.upper - problem.lower).reshape(-1)

    def start(self) -> tuple[str, Tensor | None] | None:
        """Bound the root box: a verdict if that settles it (``sat``), else None with the root on the stack."""
        lower, upper = self.problem.lower.unsqueeze(0), self.problem.upper.unsqueeze(0)
        lb, A_x = self.bounder(lower, upper)
        self.visited = 1
        return self._push(lower, upper, lb, A_x, torch.zeros(1, dtype=torch.long, device=lower.device))

    def add(self, domains: tuple[Tensor, Tensor, Tensor, Tensor, Tensor]) -> None:
        """Continue with open domains handed out by another search's :meth:`frontier`."""
        if len(domains[0]):
            self.stack.append(domains)
            self.open_count += len(domains[0])

    def frontier(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None:
        """Every open domain as one batch (None when there is none), leaving this search empty."""
        if not self.stack:
            return None
        domains = tuple(torch.cat(parts) for parts in zip(*self.stack))
        self.stack.clear()
        self.open_count = 0
        return domains

    def _push(self, lower, upper, lb, A_x, depth) -> tuple[str, Tensor | None] | None:
        """Keep the open ones of a bounded batch (counting the refuted ones); ``sat`` on a valid counterexample."""
        refuted = self.problem.refuted(lb).all(1)
        self.closed.update(depth[refuted].tolist())
        before = len(self.stack)
        witness = _push_open(self.network, self.problem, lower, upper, lb, A_x, self.stack, self.try_candidates,
                             depth)
        if witness is not None:
            self.stats["domains"] = self.visited
            return SAT, witness
        self.open_count += sum(item[0].shape[0] for item in self.stack[before:])
        return None

    def run(self, deadline: Deadline, pause: Callable[[], bool] | None = None) -> tuple[str, Tensor | None]:
        """Search until a verdict or ``deadline`` (``timeout``); with ``pause``, also stop (``paused``, the
        open domains kept) at the first step where ``pause()`` is true."""
        options, problem, stack, stats = self.options, self.problem, self.stack, self.stats
        while self.open_count:
            if deadline.expired():
                stats.update(domains=self.visited, open_domains=self.open_count)
                return TIMEOUT, None
            if pause is not None and pause():
                stats.update(domains=self.visited, open_domains=self.open_count)
                return PAUSED, None
            # alternate between the domains with the lowest bounds and those where the network came closest to
            # violating the property: the order changes nothing for a proof, but finds counterexamples sooner
            self.rounds += 1
            taken = _pop(stack, max(1, options.batch // (2 * options.candidates)), problem,
                         by_observed=self.rounds % 2 == 0)
            lower, upper, lb, _, depth = taken
            before, open_before, closed_before = len(stack), self.open_count, Counter(self.closed)

            def step(lower=lower, upper=upper, lb=lb, depth=depth):
                children = _strong_branch(self.bounder, problem, lower, upper, lb, self.root_width, options,
                                          deadline, stats)
                if children is None:
                    return None
                child_lo, child_hi, child_lb, child_A, evaluated = children
                return evaluated, self._push(child_lo, child_hi, child_lb, child_A, torch.cat([depth, depth]) + 1)

            self.open_count -= lower.shape[0]
            fits, outcome = attempt(step, lower.device)
            if not fits:  # the children do not fit in memory: the domains go back, half as many are taken next
                del stack[before:]
                stack.append(taken)
                self.open_count, self.closed = open_before, closed_before
                if lower.shape[0] == 1:
                    raise OutOfMemory(f"out of memory on {lower.device} branching a single domain")
                options.batch = max(1, options.batch // 2)
                stats["oom_halvings"] = stats.get("oom_halvings", 0) + 1
                stats["batch"] = options.batch
                continue
            if outcome is None:  # the deadline passed while bounding: nothing was lost, but nothing is proved
                stats.update(domains=self.visited, open_domains=self.open_count + lower.shape[0])
                return TIMEOUT, None
            evaluated, found = outcome
            self.visited += evaluated
            if found is not None:
                self.stats["domains"] = self.visited
                return found
            stats["domains"] = self.visited
            stats["open_domains"] = self.open_count
            if stack:  # the global lower bound, for progress reports: the lowest open domain's bound (one sync)
                stats["lower_bound"] = float(torch.stack([problem.case_max(item[2]).min() for item in stack]).min())
            stats["max_open"] = max(stats.get("max_open", 0), self.open_count)
            if self.open_count > options.max_domains:
                stats["unknown_reason"] = f"more than {options.max_domains} open domains"
                return UNKNOWN, None
        stats["domains"] = self.visited
        return UNSAT, None


def _push_open(network, problem, lower, upper, lb, A_x, stack, try_candidates, depth):
    """Keep the domains not refuted (after looking for a counterexample at their centre and at the minimiser
    of their linear bound); returns a validated counterexample if one turns up."""
    open_ = ~problem.refuted(lb).all(1)
    if not open_.any():
        return None
    lower, upper, lb, depth = lower[open_], upper[open_], lb[open_], depth[open_]
    A_x = None if A_x is None else (A_x[open_] if A_x.shape[0] > 1 else A_x)
    count = lower.shape[0]
    points = torch.cat([(lower + upper) / 2, linear_minimizer(problem, lb, A_x, lower, upper),
                        _local_attack(network, problem, lower, upper, lb)])
    with torch.no_grad():
        violation, _ = problem.violation(network.forward_flat(points))
    hits = points[violation <= 0]
    if len(hits):
        witness = try_candidates(hits)
        if witness is not None:
            return witness
    observed = torch.minimum(violation[:count], violation[count : 2 * count])
    stack.append((lower, upper, lb, observed, depth))
    return None


def _local_attack(network: Network, problem: Problem, lower: Tensor, upper: Tensor, lb: Tensor,
                  count: int = 16) -> Tensor:
    """PGD inside the ``count`` open domains with the lowest bounds: small boxes around where a counterexample
    is most likely, where gradient steps settle far better than in the whole input box."""
    worst = problem.case_max(lb).min(1).values.argsort()[:count]
    lo, hi = lower[worst], upper[worst]

    def objective(x: Tensor) -> Tensor:
        return problem.violation(network.forward_flat(x))[0]

    points, _ = pgd_minimize(objective, lo, hi, steps=20, restarts=2, start=(lo + hi) / 2)
    return points.detach()


def _candidate_dimensions(problem, lb, lower, upper, root_width, count: int) -> Tensor:
    """``[B, k]`` dimensions worth trying: all when there are at most ``count``, else the ``count - 1`` with the
    largest width relative to the root box and, in any case, the widest relative one."""
    batch = lower.shape[0]
    relative = (upper - lower).reshape(batch, -1) / root_width.clamp(min=1e-30)
    n = relative.shape[1]
    if n <= count:
        return torch.arange(n, device=lower.device).expand(batch, n)
    return relative.topk(count, dim=1).indices


def _strong_branch(bounder, problem, lower, upper, lb, root_width, options, deadline, stats=None):
    """Bound both halves along every candidate dimension and keep, per domain, the best split (``options.batch``
    halves at a time, halved for good when they do not fit in memory)."""
    batch = lower.shape[0]
    dims = _candidate_dimensions(problem, lb, lower, upper, root_width, options.candidates)   # [B, k]
    k = dims.shape[1]
    parent_lo = lower.repeat_interleave(k, 0)
    parent_hi = upper.repeat_interleave(k, 0)
    child_lo, child_hi = bisect(parent_lo, parent_hi, dims.reshape(-1))                      # [2*B*k]
    lbs, As = [], []

    def bound_part(start: int, stop: int):
        return None if deadline.expired() else bounder(child_lo[start:stop], child_hi[start:stop])

    for _, _, part in halving_on_oom(bound_part, child_lo.shape[0], options, lower.device, stats):
        if part is None:
            return None
        part_lb, part_A = part
        lbs.append(part_lb)
        As.append(None if part_A is None else part_A.expand(part_lb.shape[0], *part_A.shape[1:]))
    child_lb = torch.cat(lbs)
    child_A = None if any(a is None for a in As) else torch.cat(As)
    # the split whose better half is closest to (or furthest past) being refuted: measured on ACAS Xu this
    # needs far fewer splits than the smear heuristic or scores that weigh both halves
    hardest = problem.case_max(child_lb).min(1).values                                       # [2*B*k]
    score = torch.maximum(hardest[: batch * k], hardest[batch * k :]).reshape(batch, k)
    best = score.argmax(1)
    left = torch.arange(batch, device=best.device) * k + best
    chosen = torch.cat([left, left + batch * k])
    A_chosen = None if child_A is None else child_A[chosen]
    return child_lo[chosen], child_hi[chosen], child_lb[chosen], A_chosen, child_lo.shape[0]


def _pop(stack: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]], count: int, problem: Problem,
         by_observed: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Take ``count`` open domains (box, bounds, observed violations and depth): those with the lowest bounds,
    or (``by_observed``) those where the smallest violation seen at their sample points is lowest. The pool is
    kept as one entry after each take."""
    lower, upper, lb, observed, depth = (torch.cat(parts) for parts in zip(*stack))
    stack.clear()
    key = observed if by_observed else problem.case_max(lb).min(1).values
    order = key.argsort()
    take, rest = order[:count], order[count:]
    if len(rest):
        stack.append((lower[rest], upper[rest], lb[rest], observed[rest], depth[rest]))
    return lower[take], upper[take], lb[take], observed[take], depth[take]
