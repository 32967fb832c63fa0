"""Branch and bound over ReLU phases with beta-CROWN (Wang et al. 2021), for high-dimensional inputs.

A *domain* fixes the phase of some unstable ReLUs: ``z_j >= 0`` (active) or ``z_j <= 0`` (inactive). Its
pre-activation bounds are the root's with the split neurons clamped at 0 (so their relaxation is exact),
and its margins are bounded by CROWN with two kinds of optimised multipliers (projected Adam, started
from the parent's values):

* alpha: the lower slopes of the unstable ReLUs (alpha-CROWN), per domain and specification row;
* beta >= 0: Lagrange multipliers of the split constraints. Since ``s_j z_j >= 0`` on the domain,
  ``f(x) >= f(x) - sum_j beta_j s_j z_j(x)``, so ``-beta * s`` is added to the coefficients of ``z`` on
  the way back; any ``beta >= 0`` gives a sound bound.

Domains whose every case is refuted are dropped. The others are checked at the input vertex minimising
their linear bound (a cheap counterexample search) and split on the unstable neuron with the largest
BaBSR-style score: ``max(-a_j, 0) * (-u_j l_j / (u_j - l_j))``, the intercept the ReLU's upper relaxation
costs the bound (``a_j`` the bound's coefficient on the ReLU output).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifier.bab.batching import relu_split_batch
from verifier.bab.lp import decide_fixed_phases
from verifier.bounds.alpha import (
    AlphaOptions,
    Plateau,
    ReluSlopes,
    adam,
    optimize_all_slopes,
    optimize_slopes,
    shortfall_loss,
    slope_groups,
)
from verifier.bounds.crown import CrownOptions, backward_lower, compute_intermediate_bounds
from verifier.cancel import checkpoint
from verifier.complete.deadline import Deadline
from verifier.complete.float_sound import accept_solver_refutation
from verifier.complete.problem import Problem
from verifier.complete.result import PAUSED, SAT, TIMEOUT, UNKNOWN, UNSAT
from verifier.device import OutOfMemory, attempt, halving_on_oom, is_out_of_memory, release_memory
from verifier.ir import Graph, Node
from verifier.kernels import relu_backward
from verifier.network import Network
from verifier.ops.activation import Relu
from verifier.ops.base import Interval

#: alpha/beta steps that stand in for the LP on a domain with every phase fixed under float soundness
FLOAT_SOUND_FIXED_STEPS = 300


@dataclass
class ReluSplitOptions:
    """``batch``: domains bounded together (the children of ``batch // 2`` parents, taken depth first);
    ``iterations``: alpha/beta steps per batch (10: with children warm-started from their parent's last
    iterate, 10 steps proved mnist_fc 256x4 prop 11 in 4.5 s, 20 steps in 7.7 s, 5 steps in 14 s);
    ``root_iterations``: alpha steps at the root, fewer once its shortfall stops improving (``root_plateau``,
    None: all of them; on oval21 cifar_base_kw imgs 3568, 876, 6767 the root took 2.1-2.6 s instead of 3.6-5.4 s
    and the whole run 5-11 % less, for 0.8-2 % more domains; mnist_fc eps 0.03/0.05 samples unchanged or a
    little faster); ``max_domains``: open domains before ``unknown``;
    ``candidates``: neurons tried per split (filtered smart branching; 1 = the best score alone);
    ``refine_intermediate``: recompute the pre-activation bounds after the first split layer of each batch
    with CROWN. Off by default: it tightens the domains but costs more than it saves (measured on mnist_fc
    256x4 prop 11 and 256x6 prop 7: 39 s and 47 s with it, 22 s and 26 s without)."""

    batch: int = 256
    iterations: int = 10
    root_iterations: int = 50
    root_plateau: Plateau | None = field(default_factory=Plateau)
    lr_alpha: float = 0.1
    lr_beta: float = 0.05
    max_domains: int = 200_000
    candidates: int = 1
    refine_intermediate: bool = False


@dataclass
class Domains:
    """A set of domains as stacked tensors (one row per domain)."""

    bounds: dict[str, tuple[Tensor, Tensor]]   # pre-activation name -> ([D, *shape], [D, *shape])
    splits: dict[str, Tensor]                  # pre-activation name -> [D, N] int8 in {-1, 0, +1}
    alphas: dict[str, Tensor]                  # ReLU node name -> [D, K, *shape]
    betas: dict[str, Tensor]                   # pre-activation name -> [D, K, N]
    lb: Tensor                                 # [D, R] margin lower bounds

    def __len__(self) -> int:
        return self.lb.shape[0]

    def select(self, index: Tensor) -> Domains:
        pick = lambda d: {k: v[index] for k, v in d.items()}  # noqa: E731
        return Domains({k: (lo[index], hi[index]) for k, (lo, hi) in self.bounds.items()}, pick(self.splits),
                       pick(self.alphas), pick(self.betas), self.lb[index])

    @staticmethod
    def cat(parts: list[Domains]) -> Domains:
        parts = [p for p in parts if len(p)] or parts[:1]
        first = parts[0]
        join = lambda key: {k: torch.cat([getattr(p, key)[k] for p in parts]) for k in getattr(first, key)}  # noqa: E731
        bounds = {k: (torch.cat([p.bounds[k][0] for p in parts]), torch.cat([p.bounds[k][1] for p in parts]))
                  for k in first.bounds}
        return Domains(bounds, join("splits"), join("alphas"), join("betas"), torch.cat([p.lb for p in parts]))


class SplitConstraints:
    """CROWN backward hook adding ``-beta * s`` to the coefficients of split pre-activations, and using the
    domain's alpha slopes at the ReLUs; records the coefficients reaching each ReLU output (for branching)."""

    def __init__(self, graph: Graph, relu_inputs: dict[str, str], splits: dict[str, Tensor], betas: dict[str, Tensor],
                 slopes: ReluSlopes):
        self.graph = graph
        self.relu_inputs = relu_inputs            # ReLU node name -> pre-activation name
        self.pre_activations = set(relu_inputs.values())
        self.splits = splits
        self.betas = betas
        self.slopes = slopes
        self.relu_coefficients: dict[str, Tensor] = {}

    def coefficient_shift(self, name: str) -> Tensor | None:
        """``|beta s|`` (``[D, K, N]``) this hook subtracts from the coefficients of pre-activation ``name``
        (for the rounding-error bound of rigorous passes, :mod:`verifier.bounds.rounding`), or None."""
        if name not in self.pre_activations or name not in self.betas:
            return None
        return (self.betas[name].detach() * self.splits[name].to(self.betas[name].dtype).unsqueeze(1)).abs()

    def __call__(self, node: Node, start: str, A: Tensor, bounds: dict[str, Interval]):
        if node.name in self.relu_inputs:
            self.relu_coefficients[node.name] = A.detach()
            lower, upper = bounds[node.inputs[0]]
            A_in, bias = relu_backward(A, lower, upper, self.slopes.slopes.get(node.name))
            return [A_in], bias
        if node.name in self.pre_activations and node.name in self.betas:
            split = self.splits[node.name].to(A.dtype)
            term = self.betas[node.name] * split.unsqueeze(1)
            A = A - term.reshape(term.shape[0], *A.shape[1:])
            inputs = [bounds.get(name) for name in node.inputs] if node.op.needs_input_bounds else []
            return node.op.backward(A, inputs)
        return None


def _keep_where(kept: dict[str, Tensor], current: dict[str, Tensor], improved: Tensor) -> None:
    """``kept[k]`` becomes ``current[k]`` (``[D, K, ...]``) on the (domain, row) pairs where ``improved``
    (``[D, K]``)."""
    for name, value in current.items():
        value = value.detach()
        mask = improved.reshape(*improved.shape, *([1] * (value.dim() - 2)))
        kept[name] = value.clone() if name not in kept else torch.where(mask, value, kept[name])


def _row_where(rows: Tensor, best: Tensor, last: Tensor) -> Tensor:
    """``best`` on the (domain, row) pairs ``rows`` (``[D, K]``), ``last`` elsewhere (``[D, K, ...]`` each)."""
    return torch.where(rows.reshape(*rows.shape, *([1] * (last.dim() - 2))), best, last)


def _clamp_to_splits(bounds: dict[str, tuple[Tensor, Tensor]], splits: dict[str, Tensor]) -> dict[str, tuple]:
    out = {}
    for name, (lower, upper) in bounds.items():
        split = splits[name].reshape(lower.shape)
        out[name] = (torch.where(split > 0, lower.clamp(min=0), lower),
                     torch.where(split < 0, upper.clamp(max=0), upper))
    return out


class ReluBranchAndBound:
    """The state of one ReLU-split search: the network, the problem and the root's bounds."""

    def __init__(self, network: Network, problem: Problem, options: ReluSplitOptions, stats: dict):
        self.graph = network.graph
        self.network = network
        self.problem = problem
        self.options = options
        self.stats = stats
        self.relu_inputs = {n.name: n.inputs[0] for n in self.graph.nodes if isinstance(n.op, Relu)}
        self.spec = problem.C.reshape(1, problem.rows, *network.output_shape)
        self.lower = problem.lower.unsqueeze(0)
        self.upper = problem.upper.unsqueeze(0)
        #: return, for domains the optimisation refutes, the multipliers of their best iterate (not the last):
        #: a refutation confirmed by another pass (:mod:`verifier.bab.confirm`) needs the ones that made it
        self.keep_best_multipliers = False

    def restrict(self, problem: Problem) -> None:
        """Continue on a problem with fewer rows (see :meth:`Problem.restrict`)."""
        self.problem = problem
        self.spec = problem.C.reshape(1, problem.rows, *self.network.output_shape)

    # -- bounding -------------------------------------------------------------------------------------
    def root(self, full=None) -> Domains:
        """Bounds of the whole box: full alpha-CROWN (slopes optimised for the intermediate layers too) where
        the slopes fit in memory, else CROWN pre-activation bounds with optimised final slopes. ``full``: a
        full alpha-CROWN result computed elsewhere (:func:`verifier.bounds.alpha.replay_all_slopes`)."""
        full = self._full_alpha() if full is None else full
        if full is not None:
            lb, bounds, slopes = full
            # the slopes were chosen for the final bound: CROWN's own slopes on the tightened earlier layers
            # can still tighten some later neurons
            with torch.no_grad():
                bounds = compute_intermediate_bounds(self.graph, self.lower, self.upper, CrownOptions(), prior=bounds)
        else:
            with torch.no_grad():
                bounds = compute_intermediate_bounds(self.graph, self.lower, self.upper, CrownOptions())
            alpha = AlphaOptions(iterations=self.options.root_iterations, lr=self.options.lr_alpha)
            lb, slopes = optimize_slopes(self.graph, self.spec, self.problem.d, bounds, alpha)
        self.root_bounds = bounds
        pre = {name: bounds[name] for name in self.relu_inputs.values()}
        splits = {name: torch.zeros(1, lo[0].numel(), dtype=torch.int8, device=lo.device)
                  for name, (lo, _) in pre.items()}
        betas = {name: lo.new_zeros(1, self.problem.rows, lo[0].numel()) for name, (lo, _) in pre.items()}
        alphas = {name: value.detach() for name, value in slopes.slopes.items()}
        return Domains(pre, splits, alphas, betas, lb)

    def _full_alpha(self, keep: dict | None = None):
        """Full alpha-CROWN at the root, or None when the slopes are too many or do not fit in the device's memory
        (then the root gets the cheaper bound). ``keep``: see :func:`optimize_all_slopes`."""
        try:
            return optimize_all_slopes(self.graph, self.lower, self.upper, self.spec, self.problem.d,
                                       iterations=self.options.root_iterations, lr=self.options.lr_alpha, keep=keep,
                                       plateau=self.options.root_plateau)
        except Exception as error:  # noqa: BLE001 - only allocation failures are handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
        release_memory(self.lower.device)
        self.stats["root_full_alpha"] = "out of memory"
        return None

    def bound(self, domains: Domains, iterations: int) -> tuple[Domains, Tensor | None, dict[str, Tensor]]:
        """Optimise alpha and beta on a batch of domains; returns them with new bounds, the input coefficients of
        the final linear bound and the coefficients reaching each ReLU output.

        Only the rows of cases still open in each domain are bounded: the (domain, row) pairs are bounded as
        a batch of single-row problems, so a case refuted in one domain costs nothing there any more (on
        mnist_fc, about half of the nine cases are refuted in a typical domain). The other rows keep their
        bounds, which hold on the domain since they held on its parent."""
        if self.options.refine_intermediate and iterations > 1:
            domains = self.refine(domains)
        needed = ~self.problem.refuted(domains.lb)[:, self.problem.row_case]          # [D, R]
        if iterations <= 1 or bool(needed.all()):
            return self._optimise(domains, iterations, self.spec, self.problem.d.unsqueeze(0),
                                  lambda best: self.problem.refuted(best).all(1))
        index, row = needed.nonzero(as_tuple=True)
        if len(index) == 0:        # every case already refuted in every domain: nothing to bound
            return domains, None, {}
        pairs = Domains({k: (lo[index], hi[index]) for k, (lo, hi) in domains.bounds.items()},
                        {k: v[index] for k, v in domains.splits.items()},
                        {k: v[index, row].unsqueeze(1) for k, v in domains.alphas.items()},
                        {k: v[index, row].unsqueeze(1) for k, v in domains.betas.items()},
                        domains.lb[index, row].unsqueeze(1))
        spec = self.spec[0, row].unsqueeze(1)
        offset = self.problem.d[row].unsqueeze(1)
        bounded, A_x, coefficients = self._optimise(pairs, iterations, spec, offset, lambda best: best[:, 0] > 0)

        def scatter(full: Tensor, part: Tensor) -> Tensor:
            full = full.clone()
            full[index, row] = part[:, 0]
            return full

        lb = scatter(domains.lb, bounded.lb)
        alphas = {k: scatter(v, bounded.alphas[k]) for k, v in domains.alphas.items()}
        betas = {k: scatter(v, bounded.betas[k]) for k, v in domains.betas.items()}

        def spread(part: Tensor | None) -> Tensor | None:
            """Per-pair coefficients [P, 1, ...] as per-domain ones [D, R, ...], zero on rows not bounded
            (the branching and the counterexample check only read rows of open cases)."""
            if part is None:
                return None
            part = part.expand(len(index), *part.shape[1:])
            full = part.new_zeros(len(domains), self.problem.rows, *part.shape[2:])
            full[index, row] = part[:, 0]
            return full

        result = Domains(domains.bounds, domains.splits, alphas, betas, lb)
        return result, spread(A_x), {k: spread(v) for k, v in coefficients.items()}

    def _optimise(self, domains: Domains, iterations: int, spec: Tensor, offset: Tensor,
                  done: Callable[[Tensor], Tensor]) -> tuple[Domains, Tensor | None, dict[str, Tensor]]:
        """Projected Adam on the domains' alpha and beta for the bounds of ``spec . y - offset`` (``spec``
        ``[1|D, K, *out]``, ``offset`` ``[1|D, K]``); stops early when ``done(best)`` (``[D]``) holds for all.

        The bounds returned are the best of every iterate (each is sound); the alpha and beta returned, which
        the children start from, are the last iterate's, not the best one's: Adam's latest point is the
        better warm start (measured on mnist_fc: 256x4 prop 11 at eps 0.05 took 7.7 s and 2 159 domains
        from the last iterate, 13.7 s and 6 749 domains from each row's best; 256x6 prop 7 at eps 0.03,
        4.6 s and 11.3 s)."""
        count = len(domains)
        betas = {k: v.clone().requires_grad_(True) for k, v in domains.betas.items()}
        bounds, slopes, hook = self._pass_inputs(domains, betas)
        groups = slope_groups(slopes.slopes, slopes.ranges, self.options.lr_alpha)
        active_betas = [v for k, v in betas.items() if bool((domains.splits[k] != 0).any())]
        if active_betas:
            groups.append({"params": active_betas, "lr": self.options.lr_beta})
        optimizer = adam(groups)
        best = self.lower.new_full((count, spec.shape[1]), -torch.inf)
        best_alphas: dict[str, Tensor] = {}
        best_betas: dict[str, Tensor] = {}
        A_x = None
        coefficients: dict[str, Tensor] = {}
        for step in range(max(1, iterations)):
            checkpoint()
            with torch.enable_grad():
                value, A_in, _ = backward_lower(self.graph, self.graph.output_name, spec, bounds, hook,
                                                return_coefficients=True)
                value = value - offset
                kept = value.detach()
                if self.problem.rounding is not None:
                    # float soundness: each iterate's bound less the rounding error its own multipliers add
                    kept = kept - self.problem.rounding.beta_error(betas)
                improved = kept > best
                best = torch.where(improved, kept, best)
                # (under confirmation: the multipliers of the iterate that set each refuting row's bound; only rows
                # that refute are ever confirmed, so the others' are not kept)
                refuting_now = improved & (kept > 0)
                any_improved, all_done, any_refuting = torch.stack(    # one host sync
                    [improved.any(), done(best).all(), refuting_now.any()]).tolist()
                if any_refuting and self.keep_best_multipliers:
                    _keep_where(best_alphas, slopes.slopes, refuting_now)
                    _keep_where(best_betas, betas, refuting_now)
                if step == 0 or any_improved:
                    A_x = A_in.detach() if A_in is not None else None
                    coefficients = dict(hook.relu_coefficients)
                if step == iterations - 1 or all_done:
                    break
                loss = shortfall_loss(value, best)
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
            slopes.clamp_()
            with torch.no_grad():
                for v in betas.values():
                    v.clamp_(min=0)
        # a NaN gradient must not leave the children a NaN start: such entries keep the parent's values
        alphas = {k: torch.where(v.isnan(), domains.alphas[k], v.detach()) for k, v in slopes.slopes.items()}
        betas = {k: torch.where(v.isnan(), domains.betas[k], v.detach()) for k, v in betas.items()}
        if self.keep_best_multipliers and best_alphas:   # rows refuted keep the multipliers that refuted them
            refuting = best > 0
            alphas = {k: _row_where(refuting, best_alphas[k], v) for k, v in alphas.items()}
            betas = {k: _row_where(refuting, best_betas[k], v) for k, v in betas.items()}
        result = Domains(domains.bounds, domains.splits, alphas, betas, torch.maximum(best, domains.lb))
        return result, A_x, coefficients

    def _pass_inputs(self, domains: Domains, betas: dict[str, Tensor]
                     ) -> tuple[dict[str, Interval], ReluSlopes, SplitConstraints]:
        """What one bound pass over the domains needs: the input box and the split-clamped pre-activation
        bounds, the domains' slopes (optimisable) and the hook applying the splits with multipliers ``betas``."""
        count = len(domains)
        bounds: dict[str, Interval] = {self.graph.input_name: (self.lower.expand(count, *self.lower.shape[1:]),
                                                              self.upper.expand(count, *self.upper.shape[1:]))}
        bounds.update(_clamp_to_splits(domains.bounds, domains.splits))
        slopes = ReluSlopes.from_tensors(self.graph, domains.alphas)
        return bounds, slopes, SplitConstraints(self.graph, self.relu_inputs, domains.splits, betas, slopes)

    def refine(self, domains: Domains) -> Domains:
        """The domains with the pre-activation bounds after their first split layer re-computed by CROWN from
        their split-clamped bounds (a split ReLU is exact, which tightens everything downstream of it; the
        result is intersected with the stored bounds, so it is never looser)."""
        names = list(self.relu_inputs.values())
        first = next((i for i, name in enumerate(names) if bool((domains.splits[name] != 0).any())), None)
        if first is None:
            return domains
        count = len(domains)
        clamped = _clamp_to_splits(domains.bounds, domains.splits)
        with torch.no_grad():
            fresh = compute_intermediate_bounds(self.graph, self.lower.expand(count, *self.lower.shape[1:]),
                                                self.upper.expand(count, *self.upper.shape[1:]), CrownOptions(),
                                                prior=clamped, keep=names[: first + 1])
        return Domains({name: fresh[name] for name in domains.bounds}, domains.splits, domains.alphas,
                       domains.betas, domains.lb)

    # -- branching ------------------------------------------------------------------------------------
    def scores(self, domains: Domains, coefficients: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """BaBSR-style score ``[D, N_total]`` of every unstable, unsplit ReLU (-1 elsewhere), all layers
        concatenated in the order of ``self.relu_inputs``, and the layer offsets ``[L + 1]``."""
        count = len(domains)
        hardest = self.problem.case_max(domains.lb).argmin(1)
        in_case = self.problem.row_case.unsqueeze(0) == hardest.unsqueeze(1)
        row = torch.where(in_case, domains.lb, torch.full_like(domains.lb, -torch.inf)).argmax(1)
        scores = []
        for relu, pre in self.relu_inputs.items():
            lower, upper = domains.bounds[pre]
            lower, upper = lower.reshape(count, -1), upper.reshape(count, -1)
            unstable = (lower < 0) & (upper > 0) & (domains.splits[pre] == 0)
            A = coefficients.get(relu)
            if A is None:
                a = torch.zeros_like(lower)
            else:
                A = A.reshape(A.shape[0], A.shape[1], -1).expand(count, -1, -1)
                a = A[torch.arange(count, device=row.device), row]
            intercept = -upper * lower / (upper - lower).clamp(min=1e-12)
            score = a.clamp(max=0).neg() * intercept + 1e-4 * torch.minimum(upper, -lower).clamp(min=0)
            scores.append(torch.where(unstable, score, torch.full_like(score, -1.0)))
        sizes = [s.shape[1] for s in scores]
        return torch.cat(scores, 1), torch.tensor([0] + sizes, device=row.device).cumsum(0)

    def children(self, domains: Domains, neuron: Tensor, offsets: Tensor) -> Domains:
        """Both children of every domain, splitting its neuron ``neuron`` (a flat index over all layers):
        active children first, then inactive ones."""
        parts = []
        for sign in (1, -1):
            splits = {k: v.clone() for k, v in domains.splits.items()}
            for i, pre in enumerate(self.relu_inputs.values()):
                # without a host sync: every domain writes its own entry, the split sign where the neuron is in
                # this layer, the entry as it was elsewhere
                in_layer = ((neuron >= offsets[i]) & (neuron < offsets[i + 1])).unsqueeze(1)
                local = (neuron - offsets[i]).clamp(0, splits[pre].shape[1] - 1).unsqueeze(1)
                current = splits[pre].gather(1, local)
                splits[pre].scatter_(1, local, torch.where(in_layer, torch.full_like(current, sign), current))
            parts.append(Domains(domains.bounds, splits, domains.alphas, domains.betas, domains.lb))
        return Domains.cat(parts)

    def branch(self, domains: Domains, coefficients: dict[str, Tensor]) -> tuple[Domains, Tensor]:
        """Both children of every domain, split by *filtered smart branching*: the ``candidates`` best neurons
        by score are each tried with one bound pass of both children (slopes and multipliers as in the
        parent), and the split whose worse child has the highest bound wins. Also returns a mask of the
        domains that had no unstable ReLU left (they cannot be split)."""
        flat, offsets = self.scores(domains, coefficients)
        k = min(self.options.candidates, flat.shape[1])
        top_score, top = flat.topk(k, dim=1)
        stuck = top_score[:, 0] < 0
        keep = ~stuck
        domains, top, top_score = domains.select(keep), top[keep], top_score[keep]
        live = len(domains)
        if live == 0:
            return domains, stuck
        if k == 1:
            return self.children(domains, top[:, 0], offsets), stuck
        # every candidate's two children, bounded once without optimisation
        repeated = domains.select(torch.arange(live, device=top.device).repeat_interleave(k))
        trial = self.children(repeated, top.reshape(-1), offsets)
        with torch.no_grad():
            trial_lb = self.evaluate(trial)
        worse = self.problem.case_max(trial_lb).min(1).values            # [2 * live * k], per child
        worse = torch.maximum(worse[: live * k], worse[live * k :]).reshape(live, k)
        worse = torch.where(top_score >= 0, worse, torch.full_like(worse, -torch.inf))
        chosen = top[torch.arange(live, device=top.device), worse.argmax(1)]
        return self.children(domains, chosen, offsets), stuck

    def evaluate(self, domains: Domains) -> Tensor:
        """One bound pass (no optimisation) of a batch of domains with their stored slopes and multipliers."""
        bounds, _, hook = self._pass_inputs(domains, domains.betas)
        value = backward_lower(self.graph, self.graph.output_name, self.spec, bounds, hook) - self.problem.d
        return torch.maximum(value.detach(), domains.lb)


def relu_split_search(
    network: Network,
    problem: Problem,
    deadline: Deadline,
    stats: dict,
    try_candidates: Callable[[Tensor], object | None],
    method: str = "relu-split",
    batch: int | None = None,
    milp_strategy=None,
    cuts: bool = False,
    search_network: Network | None = None,
) -> tuple[str, object | None]:
    """Run the search; returns ``(status, counterexample or None)``. ``method="bounds"`` stops after the root
    bound (incomplete verification). ``milp_strategy`` (a :class:`verifier.bab.milp.MilpStrategy`): after the
    root, hand the problem to the exact MILP when few ReLUs are left unstable (alone or before the search).
    ``cuts``: learn cuts from refuted domains and apply them to new ones (:mod:`verifier.bab.cuts`).
    ``search_network``: ``network`` in a faster type (float32 where ``network`` and ``problem`` are the
    float64, float-sound ones): the search runs in its type and every refutation is confirmed in ``network``'s
    (:mod:`verifier.bab.confirm`)."""
    search = ReluSplitSearch(network, problem, stats, try_candidates, batch, milp_strategy=milp_strategy, cuts=cuts,
                             search_network=search_network)
    found = search.start(method)
    return found if found is not None else search.run(deadline)


class ReluSplitSearch:
    """One ReLU-split search (see :func:`relu_split_search`): the bounding and branching
    (:class:`ReluBranchAndBound`), the open domains (a stack of bounded batches, depth first) and the counters.
    :meth:`run` goes on until a verdict, the deadline or, for a time slice, until ``pause()`` says so;
    :meth:`frontier` hands the open domains out and :meth:`add` takes such domains in, so that the search can
    continue elsewhere (:mod:`verifier.distributed`). A domain's depth is its number of split ReLUs, so it
    is ``2^-depth`` of the root; ``closed`` counts the refuted domains by depth, ``stuck`` those whose every
    phase is fixed that the linear program left undecided. The batch is as given, else sized to the memory
    free on the device (the CPU keeps the measured 256), and halved for good when a step does not fit."""

    def __init__(self, network: Network, problem: Problem, stats: dict,
                 try_candidates: Callable[[Tensor], object | None], batch: int | None = None,
                 milp_strategy=None, cuts: bool = False, search_network: Network | None = None):
        options = ReluSplitOptions()
        self.device = problem.lower.device
        self.confirmation = None
        if search_network is not None and search_network.dtype != network.dtype:
            from verifier.bab.confirm import Confirmation

            self.confirmation = Confirmation(ReluBranchAndBound(network, problem, options, stats), stats)
            problem = problem.in_type(search_network.dtype)
            network = search_network
            from verifier.complete.float_sound import default_tolerance

            problem.tolerance = default_tolerance(network, problem)
            stats["search_dtype"] = str(network.dtype).replace("torch.", "")
        options.batch = batch or relu_split_batch(network.graph, problem.rows, problem.lower.dtype, self.device,
                                                  options.batch)
        stats["batch"] = options.batch
        self.search = ReluBranchAndBound(network, problem, options, stats)
        self.search.keep_best_multipliers = self.confirmation is not None
        self.network, self.problem, self.options, self.stats = network, problem, options, stats
        self.try_candidates = try_candidates
        self.keep_cases = torch.ones(problem.n_cases, dtype=torch.bool, device=self.device)
        self.stack: list[tuple[Domains, Tensor | None, dict[str, Tensor]]] = []
        self.visited = self.open_count = self.stuck_domains = 0
        self.closed: Counter[int] = Counter()
        self.stuck: Counter[int] = Counter()
        self.milp_strategy, self.cuts = milp_strategy, cuts
        self.cut_store = None
        self.root = None           # the root's bounded domain (the MILP phase reads its pre-activation bounds)
        self.milp_at: float | None = None
        self.milp_done = milp_strategy is None

    def start(self, method: str = "relu-split") -> tuple[str, object | None] | None:
        """Bound the root (full alpha-CROWN): a verdict if that settles it, else None with the root on the stack
        and the problem restricted to the cases the root leaves open."""
        search, problem, stats = self.search, self.problem, self.stats
        started = time.perf_counter()
        confirmation = self.confirmation
        # under confirmation the root is bounded in float64: its refutations are final, its bounds confirm
        root = confirmation.root(search) if confirmation is not None else search.root()
        stats["root_s"] = time.perf_counter() - started
        judge = confirmation.problem if confirmation is not None else problem
        stats["root_lower_bound"] = float(judge.case_max(root.lb).min())
        stats["lower_bound"] = stats["root_lower_bound"]
        refuted = judge.refuted(root.lb)[0]
        if bool(refuted.all()):
            stats["domains"] = 1
            self.closed[0] += 1
            return UNSAT, None
        if method == "bounds":
            stats["unknown_reason"] = "the bounds do not prove the property and branching is off"
            return UNKNOWN, None
        # cases refuted on the whole box need no more work: the search continues on the others' rows only
        rows = self.restrict(~refuted)
        root = Domains(root.bounds, root.splits, {k: v[:, rows] for k, v in root.alphas.items()},
                       {k: v[:, rows] for k, v in root.betas.items()}, root.lb[:, rows])
        if confirmation is not None:
            self.root64 = root
            root = confirmation.to_search_type(root, self.problem)
            search.root_bounds = {k: (lo.to(root.lb.dtype), hi.to(root.lb.dtype))
                                  for k, (lo, hi) in confirmation.search.root_bounds.items()}
        search.root_pre_bounds = root.bounds
        # (under float soundness a cut would need its own check)
        if self.cuts and self.problem.rounding is None and confirmation is None:
            from verifier.bab.cuts import CutStore

            self.cut_store = CutStore({pre: root.bounds[pre][0].numel() for pre in search.relu_inputs.values()},
                                      problem.lower.dtype, device=self.device)
        self.root = root
        self.visited = 1
        # the open domains, as a stack of batches with the coefficients of their last bound pass (the root's come
        # from one plain pass). Depth first, one batch at a time: the open set stays small and no step copies all
        # of it (breadth first, one step's copies of 19 000 open domains took 4 s on mnist_fc 256x4)
        self.stack.append(self._bound_once(root))
        self.open_count = 1
        return None

    def _bound_once(self, domains: Domains) -> tuple[Domains, Tensor | None, dict[str, Tensor]]:
        """One plain bound pass over open domains, for the coefficients that branching reads. Under confirmation
        a row this float32 pass refutes for the first time is confirmed in float64 like any other (children
        inherit their parent's refuted rows, which are never bounded again)."""
        entry = self.search.bound(domains, 1)
        if self.confirmation is not None:
            entry = (self.confirmation.confirm(entry[0], domains.lb, self.problem), *entry[1:])
        return entry

    def restrict(self, keep_cases: Tensor) -> Tensor:
        """Continue on the cases ``keep_cases`` only (see :meth:`Problem.restrict`); returns the rows kept."""
        self.problem, rows = self.problem.restrict(keep_cases)
        self.search.restrict(self.problem)
        if self.confirmation is not None:
            self.confirmation.restrict(self.confirmation.problem.restrict(keep_cases)[0])
        self.keep_cases = keep_cases
        return rows

    def add(self, domains: Domains) -> None:
        """Continue with open domains handed out by another search's :meth:`frontier` (bounded once more
        without optimisation, for the coefficients that branching reads)."""
        for start in range(0, len(domains), self.options.batch):
            index = torch.arange(start, min(start + self.options.batch, len(domains)), device=self.device)
            part = domains.select(index)
            self.stack.append(self._bound_once(part))
            self.open_count += len(part)

    def frontier(self) -> Domains | None:
        """Every open domain, shallowest first (None when there is none), leaving this search empty."""
        if not self.stack:
            return None
        domains = Domains.cat([entry[0] for entry in self.stack])
        self.stack.clear()
        self.open_count = 0
        return domains

    def run(self, deadline: Deadline, pause: Callable[[], bool] | None = None) -> tuple[str, object | None]:
        """Search until a verdict or ``deadline`` (``timeout``); with ``pause``, also stop (``paused``, the
        open domains kept) at the first step where ``pause()`` is true."""
        if not self.milp_done and self.milp_at is None:
            # the exact MILP's turn comes after a short branch-and-bound start (which settles easy problems first)
            self.milp_at = self.milp_strategy.start_time(deadline)
        return _search(self, deadline, pause)


def depths(domains: Domains) -> Tensor:
    """``[D]``: the number of split ReLUs of each domain (each split halves a domain's share of the root)."""
    return sum((split != 0).sum(1) for split in domains.splits.values())


def _search(state: ReluSplitSearch, deadline: Deadline, pause: Callable[[], bool] | None
            ) -> tuple[str, object | None]:
    """The loop of :meth:`ReluSplitSearch.run`."""
    network, problem, options, stats = state.network, state.problem, state.options, state.stats
    search, stack, try_candidates = state.search, state.stack, state.try_candidates
    device, cut_store = state.device, state.cut_store
    visited, open_count, stuck_domains = state.visited, state.open_count, state.stuck_domains
    while stack:
        if deadline.expired():
            stats.update(domains=visited, open_domains=open_count)
            return TIMEOUT, None
        if pause is not None:  # the counters as of now, for pause() and for whoever continues the search
            state.visited, state.open_count, state.stuck_domains = visited, open_count, stuck_domains
            if pause():
                stats.update(domains=visited, open_domains=open_count)
                return PAUSED, None
        take = max(1, options.batch // 2)      # parents per step: their children fill one bound batch
        if state.milp_at is not None and time.monotonic() >= state.milp_at:
            state.milp_at, state.milp_done = None, True
            from verifier.bab.milp import milp_phase

            exact = state.confirmation.search if state.confirmation is not None else search   # float64 if any
            decided = milp_phase(exact.graph, exact.problem,
                                 state.root64.bounds if state.confirmation is not None else state.root.bounds,
                                 exact.root_bounds.get(exact.graph.output_name), deadline, try_candidates, stats,
                                 state.milp_strategy)
            if decided is not None and decided[0] in (SAT, UNSAT):
                stats.update(domains=visited, decided_by="milp")
                return decided
            continue
        entry = stack.pop()
        if len(entry[0]) > take:
            stack.append(_select_entry(entry, torch.arange(take, len(entry[0]), device=device)))
            entry = _select_entry(entry, torch.arange(take, device=device))
        pool, A_x, coefficients = entry

        def step(pool=pool, A_x=A_x, coefficients=coefficients):
            return _check_primal(network, problem, pool, A_x, search, try_candidates), search.branch(pool, coefficients)

        fits, outcome = attempt(step, device)
        if not fits:  # the pool's children do not fit in memory: put it back, take half as many next time
            if len(pool) == 1:
                raise OutOfMemory(f"out of memory on {device} branching a single domain")
            stack.append(entry)
            options.batch = len(pool)
            stats["oom_halvings"] = stats.get("oom_halvings", 0) + 1
            stats["batch"] = options.batch
            continue
        open_count -= len(pool)
        witness, (children, stuck) = outcome
        if witness is not None:
            stats["domains"] = visited
            return SAT, witness
        if cut_store is not None and len(cut_store) and len(children):
            keep, implied = cut_store.apply(children.splits)
            # a child a cut prunes is refuted: it is closed at its own depth
            state.closed.update(depths(children)[~keep].tolist())
            children = Domains(children.bounds, implied, children.alphas, children.betas, children.lb
                               ).select(keep.nonzero().flatten())
        pool_depths = depths(pool) if bool(stuck.any()) else None
        for index in stuck.nonzero().flatten().tolist():
            verdict, point = decide_fixed_phases(
                search.graph, problem, {k: (lo[index], hi[index]) for k, (lo, hi) in pool.bounds.items()},
                {k: v[index] for k, v in pool.splits.items()})
            if verdict == "violated":
                witness = try_candidates(torch.as_tensor(point, dtype=problem.lower.dtype, device=device)
                                         .reshape(1, *network.input_shape))
                if witness is not None:
                    stats["domains"] = visited
                    return SAT, witness
            if verdict == "refuted" and problem.rounding is not None:
                # the LP's optimum is not float-sound; with every phase fixed the relaxation is exact and the
                # beta-CROWN bound reaches the LP's value at the optimal multipliers: a long optimisation
                # of this one domain, certified as every bound is, stands in for it
                # (float_sound="auto" accepts the LP's refutation where that does not reach it, and counts it)
                one = pool.select(torch.tensor([index], device=device))
                if not bool(problem.refuted(search.bound(one, FLOAT_SOUND_FIXED_STEPS)[0].lb).all()) \
                        and not accept_solver_refutation(problem, stats, "lp"):
                    verdict = "unknown"
            elif verdict == "refuted" and state.confirmation is not None:   # the same, in float64
                one = pool.select(torch.tensor([index], device=device))
                if not state.confirmation.confirm_fixed(one, FLOAT_SOUND_FIXED_STEPS) \
                        and not accept_solver_refutation(state.confirmation.problem, stats, "lp"):
                    verdict = "unknown"
            if verdict != "refuted":
                stuck_domains += 1
            (state.closed if verdict == "refuted" else state.stuck)[int(pool_depths[index])] += 1

        def bound_part(start: int, stop: int, children: Domains = children):
            if deadline.expired():
                return None
            return search.bound(children.select(torch.arange(start, stop, device=device)), options.iterations)

        # batches of options.batch children; one that does not fit in memory is halved and bounded again
        for start, stop, part in halving_on_oom(bound_part, len(children), options, device, stats):
            if part is None:  # children not bounded yet: the search is incomplete
                stats.update(domains=visited, open_domains=open_count + len(children) - start)
                return TIMEOUT, None
            bounded, part_A, part_coefficients = part
            visited += len(bounded)
            if state.confirmation is not None:   # rows refuting for the first time: confirmed in float64
                bounded = state.confirmation.confirm(bounded, children.lb[start:stop], problem)
            refuted = problem.refuted(bounded.lb).all(1)
            state.closed.update(depths(bounded)[refuted].tolist())
            if cut_store is not None and bool(refuted.any()):
                from verifier.bab.cuts import strengthen

                cut_store.add(strengthen(search, bounded, refuted))
            open_ = (~refuted).nonzero().flatten()
            if len(open_):
                stack.append(_select_entry((bounded, part_A, part_coefficients), open_))
                open_count += len(open_)
        stats["domains"] = visited
        stats["open_domains"] = open_count
        if stack:  # the global lower bound, for progress reports: the lowest open domain's bound (one sync)
            stats["lower_bound"] = float(torch.stack([problem.case_max(e[0].lb).min() for e in stack]).min())
        stats["max_open"] = max(stats.get("max_open", 0), open_count)
        if open_count > options.max_domains:
            stats["unknown_reason"] = f"more than {options.max_domains} open domains"
            return UNKNOWN, None
    stats["domains"] = visited
    if cut_store is not None:
        stats["cuts"] = {"learned": cut_store.learned, "pruned": cut_store.pruned, "implied": cut_store.implied}
    if stuck_domains:
        stats["unknown_reason"] = (f"{stuck_domains} domains with every ReLU phase fixed were neither proved by the "
                                   "linear program nor gave a valid counterexample")
        return UNKNOWN, None
    return UNSAT, None


def _select_entry(entry: tuple[Domains, Tensor | None, dict[str, Tensor]], index: Tensor
                  ) -> tuple[Domains, Tensor | None, dict[str, Tensor]]:
    """Domains ``index`` of a batch with the coefficients of its last bound pass (input coefficients and those
    reaching each ReLU, ``[D | 1, ...]``: a batch of 1 is shared by every domain)."""
    domains, A_x, coefficients = entry

    def rows(A: Tensor | None) -> Tensor | None:
        return A if A is None or A.shape[0] == 1 else A[index]

    return domains.select(index), rows(A_x), {k: rows(v) for k, v in coefficients.items()}


def _check_primal(network: Network, problem: Problem, domains: Domains, A_x: Tensor | None,
                  search: ReluBranchAndBound, try_candidates) -> object | None:
    """Evaluate the network at the input vertex minimising each domain's linear bound (hardest case, best row)."""
    if A_x is None:
        return None
    count = len(domains)
    hardest = problem.case_max(domains.lb).argmin(1)
    in_case = problem.row_case.unsqueeze(0) == hardest.unsqueeze(1)
    row = torch.where(in_case, domains.lb, torch.full_like(domains.lb, -torch.inf)).argmax(1)
    coeffs = A_x.reshape(A_x.shape[0], A_x.shape[1], -1).expand(count, -1, -1)[torch.arange(count, device=row.device),
                                                                              row]
    lo, hi = search.lower.reshape(1, -1), search.upper.reshape(1, -1)
    points = torch.where(coeffs > 0, lo, hi).reshape(count, *network.input_shape)
    with torch.no_grad():
        violation, _ = problem.violation(network.forward_flat(points))
    hits = points[violation <= 0]
    return try_candidates(hits) if len(hits) else None
