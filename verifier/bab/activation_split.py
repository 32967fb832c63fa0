"""Branch and bound over S-shaped activations (Sigmoid, Tanh), for networks without ReLUs on many inputs.

Input splitting makes no progress on hundreds of inputs, and without ReLUs there are no phases to split. What
can be split is an S-shaped neuron's pre-activation interval (after GenBaB, Shi et al. 2024): a *domain*
narrows some neurons' ``[l_j, u_j]`` to ``[l_j, s]`` or ``[s, u_j]``, on which the activation's linear
relaxation is tighter. Its margins are bounded by CROWN over the root's pre-activation bounds (full
alpha-CROWN's), those of the split neurons replaced by the domain's, with two kinds of optimised multipliers
(projected Adam, started from the parent's best):

* alpha: the slopes of both lines of every S-shaped neuron, per specification row (any slope is sound: the
  intercepts are exact on the domain's interval);
* beta >= 0: Lagrange multipliers of the narrowed ends. Since ``z_j - lo_j >= 0`` and ``hi_j - z_j >= 0`` on
  the domain, ``f(x) >= f(x) - b_lo (z_j - lo_j) - b_hi (hi_j - z_j)``: ``b_hi - b_lo`` is added to the
  coefficient of ``z_j`` on the way back and ``b_lo lo_j - b_hi hi_j`` to the constant.

Every bound is valid on its domain, and the two halves of a split cover their parent, so a search that
refutes every leaf proves the property on the box. The pre-activation bounds of the other neurons stay the
root's (valid on the whole box, so on every domain); the multipliers carry a split's constraint to the rest.

Branching: the neurons scored by ``|a_j| * gap_j`` (``a_j`` the bound's coefficient on the activation's output,
``gap_j`` the height between the relaxation's two lines at the middle of the interval) are candidates; each
candidate's two children are bounded once with the parent's multipliers, and the candidate whose children
fall least short in sum is split. The split point is where the two halves' relaxations enclose the least
area, among nine interior fractions of the interval and 0 (where the function turns from convex to concave).

Measured on ERAN's 6x200 sigmoid network, idx 9044 (no VNN-COMP tool solved it): see the README.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bounds.alpha import ReluSlopes, adam, keep_best, shortfall_loss, slope_groups
from verifier.bounds.crown import backward_lower
from verifier.cancel import TimeLimitReached, checkpoint, time_limit
from verifier.complete.deadline import Deadline
from verifier.complete.problem import Problem
from verifier.complete.result import TIMEOUT, UNSAT
from verifier.ir import Graph, Node
from verifier.network import Network
from verifier.ops.activation import SShaped
from verifier.ops.base import Interval

#: interior points tried as split points, as fractions of the interval (0 is tried too, where inside)
SPLIT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: intervals narrower than this are not split further
MIN_WIDTH = 1e-3
#: networks with at most this many S-shaped neurons refine intermediate bounds by default
REFINE_MAX_NEURONS = 256


@dataclass
class ActivationSplitOptions:
    """``batch``: children bounded together; ``iterations``: alpha/beta steps per batch (warm-started from
    the parent's best); ``candidates``: neurons tried per split; ``refine_intermediate``: before bounding new
    domains, tighten the pre-activation bounds of the S-shaped layers after the first split one by CROWN over
    the domains' bounds (None: on networks of at most :data:`REFINE_MAX_NEURONS` S-shaped neurons). Measured
    (README): on ERAN 6x200 sigmoid idx 9044, 20 steps made more progress in 200 s than 10 (worst margin -0.34
    against -0.56), and refining cost 5x the domains per second for no gain at 120 s (-0.33 against -0.28);
    on the 2-input networks of the tests it decides cases that are open without it."""

    batch: int = 32
    iterations: int = 20
    lr_alpha: float = 0.25
    lr_beta: float = 0.05
    candidates: int = 4
    refine_intermediate: bool | None = None


@dataclass
class Domain:
    """One sub-domain: the narrowed pre-activation intervals (``[1, *shape]`` per split-able tensor), the best
    multipliers found for it (slopes ``[1, K, 2, *shape]`` per S-shaped node, betas ``[1, K, N]`` per
    pre-activation tensor and end), its margin lower bounds ``[K]`` and their smallest over the cases still
    open (``worst``, ``+inf`` once every case is refuted), with the coefficients that reached each S-shaped
    node's output in its last bound (``[1, K, *shape]``, for branching)."""

    bounds: dict[str, Interval]
    slopes: dict[str, Tensor]
    betas: dict[str, tuple[Tensor, Tensor]]
    lb: Tensor | None = None
    worst: float = -float("inf")
    coefficients: dict[str, Tensor] | None = None


def s_shaped_nodes(graph: Graph) -> list[Node]:
    """The S-shaped activations whose input is computed by a node (its interval can be split and its
    constraint carried back through that node)."""
    produced = {node.name for node in graph.nodes}
    return [node for node in graph.nodes if isinstance(node.op, SShaped) and node.inputs[0] in produced]


def relaxation_gap(node: Node, lower: Tensor, upper: Tensor) -> Tensor:
    """Height between the upper and lower line of ``node``'s relaxation on ``[lower, upper]`` at the middle."""
    relaxation = node.op.relax(lower, upper)
    middle = (lower + upper) / 2
    return (relaxation.upper_slope - relaxation.lower_slope) * middle \
        + relaxation.upper_intercept - relaxation.lower_intercept


class SplitHook:
    """CROWN backward hook for a batch of domains: the domains' slopes at S-shaped nodes (recording the
    coefficients that reach them) and the beta terms of the narrowed ends at their pre-activation nodes."""

    def __init__(self, slopes: ReluSlopes, betas: dict[str, tuple[Tensor, Tensor]], narrowed: dict[str, tuple],
                 bounds: dict[str, Interval]):
        self.slopes, self.betas, self.narrowed, self.bounds = slopes, betas, narrowed, bounds
        self.coefficients: dict[str, Tensor] = {}

    def __call__(self, node: Node, start: str, A: Tensor, bounds: dict[str, Interval]):
        if isinstance(node.op, SShaped) and node.name in self.slopes.slopes:
            self.coefficients[node.name] = A.detach()
            return self.slopes(node, start, A, bounds)
        if node.name in self.betas:
            b_lo, b_hi = self.betas[node.name]
            lo_mask, hi_mask = self.narrowed[node.name]
            lo, hi = (end.flatten(1).unsqueeze(1) for end in self.bounds[node.name])
            A = A + (b_hi * hi_mask - b_lo * lo_mask).reshape(A.shape)
            constant = (b_lo * lo_mask * lo - b_hi * hi_mask * hi).sum(-1)
            inputs = [bounds.get(name) for name in node.inputs] if node.op.needs_input_bounds else []
            A_inputs, bias = node.op.backward(A, inputs)
            return A_inputs, constant if bias is None else bias + constant
        return None


class ActivationSplitSearch:
    """The search (see the module docstring) for one problem, from the root's pre-activation bounds."""

    def __init__(self, network: Network, problem: Problem, root_bounds: dict[str, Interval], stats: dict,
                 options: ActivationSplitOptions | None = None):
        self.graph, self.problem, self.stats = network.graph, problem, stats
        self.options = options or ActivationSplitOptions()
        self.nodes = s_shaped_nodes(self.graph)
        self.names = [node.inputs[0] for node in self.nodes]
        self.root = {k: (lo.detach(), hi.detach()) for k, (lo, hi) in root_bounds.items()}
        self.spec = problem.C.reshape(1, problem.rows, *network.output_shape)
        self.domains = 0
        self.refine = self.options.refine_intermediate
        if self.refine is None:
            self.refine = sum(self.graph.numel(name) for name in self.names) <= REFINE_MAX_NEURONS

    # -- bounding ---------------------------------------------------------------------------------------
    def _stacked(self, domains: list[Domain]) -> dict[str, Interval]:
        n = len(domains)
        bounds = {k: (lo.expand(n, *lo.shape[1:]), hi.expand(n, *hi.shape[1:])) for k, (lo, hi) in self.root.items()}
        for name in self.names:
            bounds[name] = (torch.cat([d.bounds[name][0] for d in domains]),
                            torch.cat([d.bounds[name][1] for d in domains]))
        return bounds

    def bound(self, domains: list[Domain], iterations: int) -> list[Domain]:
        """The domains with their margins bounded (best over ``iterations`` alpha/beta steps, at least one
        pass) and their best multipliers."""
        n, rows = len(domains), self.problem.rows
        bounds = self._stacked(domains)
        if self.refine and domains[0].lb is None:
            self._refine(bounds)
        narrowed = {name: tuple(end.flatten(1).unsqueeze(1).to(bounds[name][0].dtype)
                                for end in self._narrowed(bounds, name)) for name in self.names}
        initial = None
        if domains[0].slopes:
            initial = ReluSlopes.from_tensors(self.graph, {k: torch.cat([d.slopes[k] for d in domains])
                                                           for k in domains[0].slopes})
        slopes = ReluSlopes(self.graph, bounds, rows, initial)
        betas = {name: tuple(torch.cat([d.betas[name][side] for d in domains]).clone().requires_grad_(True)
                             for side in (0, 1)) for name in self.names}
        hook = SplitHook(slopes, betas, narrowed, bounds)
        groups = slope_groups(slopes.slopes, slopes.ranges, self.options.lr_alpha)
        groups.append({"params": [t for pair in betas.values() for t in pair], "lr": self.options.lr_beta})
        optimizer = adam(groups)
        spec = self.spec.expand(n, *self.spec.shape[1:])
        best = None
        best_slopes = {k: v.detach().clone() for k, v in slopes.slopes.items()}
        best_betas = {k: (lo.detach().clone(), hi.detach().clone()) for k, (lo, hi) in betas.items()}
        coefficients: dict[str, Tensor] = {}
        for step in range(max(1, iterations)):
            checkpoint()
            with torch.enable_grad():
                value = backward_lower(self.graph, self.graph.output_name, spec, bounds, hook) - self.problem.d
                worst = self._worst(value.detach())
                improved = worst > (self._worst(best) if best is not None else torch.full_like(worst, -torch.inf))
                for k, v in slopes.slopes.items():
                    best_slopes[k][improved] = v.detach()[improved]
                for k, (lo, hi) in betas.items():
                    best_betas[k][0][improved] = lo.detach()[improved]
                    best_betas[k][1][improved] = hi.detach()[improved]
                for k, v in hook.coefficients.items():
                    coefficients[k] = v if k not in coefficients else torch.where(
                        improved.reshape(-1, *([1] * (v.dim() - 1))), v, coefficients[k])
                best = keep_best(value.detach(), best)
                if step == iterations - 1 or bool(self.problem.refuted(best).all()):
                    break
                loss = shortfall_loss(value, best)
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
            slopes.clamp_()
            with torch.no_grad():
                for lo, hi in betas.values():
                    lo.clamp_(min=0)
                    hi.clamp_(min=0)
        worst = self._worst(best).tolist()
        return [Domain({name: (bounds[name][0][i:i + 1], bounds[name][1][i:i + 1]) for name in self.names},
                       {k: v[i:i + 1] for k, v in best_slopes.items()},
                       {k: (lo[i:i + 1], hi[i:i + 1]) for k, (lo, hi) in best_betas.items()},
                       best[i], worst[i], {k: v[i:i + 1] for k, v in coefficients.items()})
                for i in range(n)]

    def _refine(self, bounds: dict[str, Interval]) -> None:
        """Tighten, in place, the pre-activation bounds of the S-shaped layers after the first narrowed one by
        CROWN over the domains' bounds (intersected with them: each is valid on its domain)."""
        from verifier.bounds.crown import CrownOptions, _largest_layer, refine_with_crown

        narrowed = [bool((lo | hi).any()) for lo, hi in (self._narrowed(bounds, name) for name in self.names)]
        if not any(narrowed):
            return
        options, largest = CrownOptions(), _largest_layer(self.graph)
        with torch.no_grad():
            for name in self.names[narrowed.index(True) + 1:]:
                lower, upper = refine_with_crown(self.graph, name, bounds, options, largest)
                bounds[name] = (torch.maximum(lower, bounds[name][0]), torch.minimum(upper, bounds[name][1]))

    def _narrowed(self, bounds: dict[str, Interval], name: str) -> tuple[Tensor, Tensor]:
        """Where the domains' lower and upper ends of tensor ``name`` are tighter than the root's (bool each)."""
        return bounds[name][0] > self.root[name][0], bounds[name][1] < self.root[name][1]

    def _worst(self, lb: Tensor) -> Tensor:
        """Per domain, the smallest margin over the cases not yet refuted (``+inf`` when all are)."""
        margins = lb - self.problem.tolerance
        case = self.problem.case_max(margins)
        return torch.where(self.problem.refuted(lb), torch.full_like(case, torch.inf), case).amin(1)

    # -- branching --------------------------------------------------------------------------------------
    def _candidates(self, domains: list[Domain]) -> list[list[tuple[int, int]]]:
        """Per domain, up to ``candidates`` (layer number, neuron) pairs with the largest score
        ``sum over rows |a_j| * gap_j``, the gap that of the activation's own relaxation on the domain's interval."""
        scores = []
        for node, name in zip(self.nodes, self.names):
            lower = torch.cat([d.bounds[name][0] for d in domains])
            upper = torch.cat([d.bounds[name][1] for d in domains])
            gap = relaxation_gap(node, lower, upper)
            weight = torch.cat([d.coefficients[node.name] for d in domains]).abs().sum(1).reshape(gap.shape)
            score = (weight * gap).flatten(1)
            scores.append(torch.where((upper - lower).flatten(1) > MIN_WIDTH, score, torch.zeros_like(score)))
        sizes = [score.shape[1] for score in scores]
        values, index = torch.cat(scores, 1).topk(min(self.options.candidates, sum(sizes)), dim=1)
        offsets = torch.tensor([0, *sizes]).cumsum(0)
        picked = []
        for row_values, row_index in zip(values.tolist(), index.tolist()):
            pairs = []
            for value, flat in zip(row_values, row_index):
                if value > 0:
                    layer = int((offsets[1:] <= flat).sum())
                    pairs.append((layer, flat - int(offsets[layer])))
            picked.append(pairs)
        return picked

    def split_points(self, node: Node, lower: Tensor, upper: Tensor) -> Tensor:
        """Per interval ``[lower_m, upper_m]`` (``[M]``), where splitting it leaves the two halves'
        relaxations the least area (height between the lines at the middle times width), among
        :data:`SPLIT_FRACTIONS` and 0: ``[M]``."""
        fractions = torch.tensor(SPLIT_FRACTIONS, dtype=lower.dtype, device=lower.device)
        width = (upper - lower).unsqueeze(1)
        low, high = lower.unsqueeze(1), upper.unsqueeze(1)
        zero = torch.zeros_like(low).clamp(low + 0.05 * width, high - 0.05 * width)
        points = torch.cat([low + fractions * width, zero], 1)                     # [M, P]
        ends_lower = torch.cat([low.expand_as(points), points]).flatten()
        ends_upper = torch.cat([points, high.expand_as(points)]).flatten()
        gap = relaxation_gap(node, ends_lower, ends_upper)       # both halves of every point in one call
        area = ((ends_upper - ends_lower) * gap).reshape(2, *points.shape).sum(0)
        return points.gather(1, area.argmin(1, keepdim=True)).squeeze(1)

    def _children(self, domain: Domain, name: str, j: int, point: Tensor) -> list[Domain]:
        children = []
        for side in (0, 1):
            bounds = dict(domain.bounds)
            lo, hi = bounds[name][0].clone(), bounds[name][1].clone()
            (hi if side == 0 else lo).view(-1)[j] = point
            bounds[name] = (lo, hi)
            children.append(Domain(bounds, domain.slopes, domain.betas))
        return children

    def branch(self, domains: list[Domain]) -> list[list[Domain]]:
        """Per domain, the two children of its best candidate split (none if no neuron can be split): the
        candidates' split points found in one call per layer, and every candidate's children bounded once,
        together, with their parent's multipliers; the pair with the least summed shortfall wins."""
        candidates = self._candidates(domains)
        points: dict[tuple[int, int], Tensor] = {}
        for layer, (node, name) in enumerate(zip(self.nodes, self.names)):
            wanted = [(d, j) for d, pairs in enumerate(candidates) for (at, j) in pairs if at == layer]
            if not wanted:
                continue
            lower = torch.stack([domains[d].bounds[name][0].flatten()[j] for d, j in wanted])
            upper = torch.stack([domains[d].bounds[name][1].flatten()[j] for d, j in wanted])
            for (d, j), point in zip(wanted, self.split_points(node, lower, upper)):
                points[(d, layer, j)] = point
        trials = [[self._children(domains[d], self.names[layer], j, points[(d, layer, j)]) for layer, j in pairs]
                  for d, pairs in enumerate(candidates)]
        several = [pair for options in trials if len(options) > 1 for pair in options]
        if several:
            tried = self.bound([child for pair in several for child in pair], iterations=1)
            # the two children's shortfalls added up (a refuted child counts 0): the child on the side that
            # holds the worst point often keeps its parent's bound after one pass, so its partner decides
            shortfall = [min(a.worst, 0.0) + min(b.worst, 0.0) for a, b in zip(tried[::2], tried[1::2])]
            worse = iter(shortfall)
        chosen = []
        for options in trials:
            if len(options) <= 1:
                chosen.append(options[0] if options else [])
                continue
            values = [next(worse) for _ in options]
            chosen.append(options[max(range(len(values)), key=values.__getitem__)])
        return chosen

    # -- the search -------------------------------------------------------------------------------------
    def run(self, deadline: Deadline) -> str:
        """``unsat`` once every domain is refuted, ``timeout`` at the deadline (or when a domain can be split
        no further and is not refuted)."""
        start = time.perf_counter()
        status = TIMEOUT
        open_domains: list[Domain] = []
        try:
            with time_limit(deadline.end):
                open_domains = self._open(self.bound([self._root()], self.options.iterations))
                while open_domains:
                    if deadline.expired():
                        break
                    open_domains.sort(key=lambda d: d.worst)
                    batch, open_domains = open_domains[: self.options.batch // 2], \
                        open_domains[self.options.batch // 2:]
                    pairs = self.branch(batch)
                    if any(not pair for pair in pairs):   # a domain that cannot be split and is not refuted
                        open_domains += batch
                        break
                    children = [child for pair in pairs for child in pair]
                    self.domains += len(children)
                    open_domains += self._open(self.bound(children, self.options.iterations))
                if not open_domains:
                    status = UNSAT
        except TimeLimitReached:
            pass
        self.stats["domains"] = self.stats.get("domains", 0) + self.domains
        self.stats["open_domains"] = len(open_domains)
        if open_domains:
            self.stats["lower_bound"] = min(d.worst for d in open_domains)
        self.stats["phases"]["activation_split"] = time.perf_counter() - start
        return status

    def _root(self) -> Domain:
        rows = self.problem.rows
        betas = {name: tuple(self.root[name][0].new_zeros(1, rows, self.root[name][0][0].numel()) for _ in (0, 1))
                 for name in self.names}
        return Domain({name: self.root[name] for name in self.names}, {}, betas)

    def _open(self, domains: list[Domain]) -> list[Domain]:
        return [d for d in domains if d.worst < float("inf")]   # (worst is +inf once every case is refuted)


def activation_split_search(network: Network, problem: Problem, root_bounds: dict[str, Interval],
                            deadline: Deadline, stats: dict, options: ActivationSplitOptions | None = None) -> str:
    """Branch and bound over S-shaped pre-activation intervals from the root's pre-activation bounds
    ``root_bounds`` (valid on the whole box; full alpha-CROWN's are the tightest the engine has): ``unsat``
    when every sub-domain's margins are refuted, else ``timeout``."""
    return ActivationSplitSearch(network, problem, root_bounds, stats, options).run(deadline)
