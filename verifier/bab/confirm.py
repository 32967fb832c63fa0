"""Float-sound ReLU-split search at float32 speed: search in float32, confirm every refutation in float64.

Under float soundness (:mod:`verifier.complete.float_sound`) a refutation counts only when its margin lower
bound, computed in float64, exceeds the rigorous bound on that computation's rounding error. Running the
whole beta-CROWN search in float64 costs 1.4-2x its float32 time on mnist_fc. But the search only *finds*
the proof: which ReLUs to split and which multipliers (alpha, beta) bound each domain. Any alpha in its
range and any beta >= 0 give a valid bound, whatever arithmetic chose them. So here

* the root is bounded in float64 (full alpha-CROWN, as the float-sound search does): its pre-activation
  bounds are the ones every confirmation uses, and the cases it refutes are refuted float-soundly;
* the search runs on a float32 copy of the network and the problem, from the root cast to float32;
* every row that refutes its case for the first time in the float32 search (a row inherited from a parent
  was confirmed there) is bounded once more, in float64 and without optimisation, with its domain's own
  splits and the slopes and multipliers of the iterate that refuted it, over the float64 root bounds
  clamped by the splits, less the rounding error of that pass; it counts only if that bound refutes too.
  A row that fails is lowered below refutation, so its domain is split further (its children are
  tighter) and confirmed again;
* a domain with every phase fixed that the linear program refutes is confirmed by the long float64
  optimisation the float-sound search uses for it.

The union of the closed domains is the root box exactly as in the plain search, and each closed domain
carries a float64 bound past its rounding error, so ``unsat`` holds in the reals as the float-sound search's
does. One float64 pass per newly refuting (domain, row) pair costs a fraction of the ten float32 iterations
that bounded it. On graphs of affine nodes and ReLUs the rounding error is the a posteriori bound of
:mod:`verifier.bounds.rounding` (every float64 pass here runs inside ``rigorous``); on others the a priori
row errors of :mod:`verifier.complete.float_sound` are the refutation tolerance.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import Tensor

from verifier.bounds.crown import backward_lower
from verifier.bounds.rounding import UNIT_ROUNDOFF, rigorous
from verifier.complete.problem import Problem


class Confirmation:
    """The float64 side of a float-sound search run in a faster type: the float64 root and the confirmation
    of refuted domains (see the module docstring). ``search`` is a ``ReluBranchAndBound`` over the float64
    network and the problem with its rounding model."""

    def __init__(self, search, stats: dict):
        self.search = search
        self.stats = stats.setdefault("float_sound_confirmation", {"confirmed": 0, "reopened": 0, "seconds": 0.0})
        model = search.problem.rounding
        #: the a posteriori rounding model (graphs of affine nodes and ReLUs): every float64 pass here is then
        #: rigorous by itself (:mod:`verifier.bounds.rounding`) and the a priori row errors are not needed
        self.model = model.posteriori if model is not None else None
        if self.model is not None:
            problem = search.problem
            scale = problem.C.abs() @ self.model.terms[search.graph.output_name].to(problem.C.dtype)
            # (the rounding model stays on the problem: it says "float-sound" to every check, e.g. the MILP's)
            search.restrict(replace(problem, tolerance=16 * UNIT_ROUNDOFF * (problem.d.abs() + scale + 1),
                                    rounding=replace(model, passes_rigorous=True)))
        self.stats["rounding"] = "a posteriori" if self.model is not None else "a priori"

    @property
    def problem(self) -> Problem:
        return self.search.problem

    def root(self, fast):
        """The root bounded in float64; its pre-activation bounds are kept for confirming. Full alpha-CROWN's
        slopes are optimised by ``fast`` (the ``ReluBranchAndBound`` of the search's type) and replayed once in
        float64 (:func:`verifier.bounds.alpha.replay_all_slopes`); where full alpha-CROWN does not fit, the
        float64 root is bounded as the float64 search would."""
        from verifier.bounds.alpha import replay_all_slopes

        kept: dict = {}
        started = time.perf_counter()
        full = fast._full_alpha(keep=kept)
        search = self.search
        with rigorous(self.model):
            if full is not None:
                full = replay_all_slopes(search.graph, search.lower, search.upper, search.spec, search.problem.d,
                                         kept)
            root = search.root(full)
        self.stats["root_s"] = round(time.perf_counter() - started, 4)
        self.root_bounds = root.bounds
        return root

    def restrict(self, problem: Problem) -> None:
        self.search.restrict(problem)

    def to_search_type(self, domains, problem: Problem):
        """Float64 domains as domains of the search's type (``problem``'s), every row's bound lowered below
        refutation (the rows were open in float64; rounding to the search's type must not close them)."""
        from verifier.bab.relu_split import Domains

        dtype = problem.lower.dtype
        lb = _below_refutation(domains.lb.to(dtype), problem)
        return Domains({k: (lo.to(dtype), hi.to(dtype)) for k, (lo, hi) in domains.bounds.items()}, domains.splits,
                       {k: v.to(dtype) for k, v in domains.alphas.items()},
                       {k: v.to(dtype) for k, v in domains.betas.items()}, lb)

    def pair_margins(self, domains, index: Tensor, row: Tensor) -> Tensor:
        """``[P]``: float64 margin lower bounds of the (domain, row) pairs ``index``, ``row`` of ``domains`` (of
        any type), each with its domain's splits and its row's slopes and multipliers over the float64 root
        bounds, less the rounding error of the pass (inside ``rigorous``, or the split multipliers' a priori
        term here and the row errors as the tolerance). One row per pair: a batch refutes one or two new rows
        per domain, so this is several times cheaper than bounding every row."""
        from verifier.bab.relu_split import Domains

        search = self.search
        dtype = search.lower.dtype
        count = len(index)
        bounds = {k: (lo.expand(count, *lo.shape[1:]), hi.expand(count, *hi.shape[1:]))
                  for k, (lo, hi) in self.root_bounds.items() if k in domains.bounds}
        betas = {k: v[index, row].unsqueeze(1).to(dtype) for k, v in domains.betas.items()}
        pairs = Domains(bounds, {k: v[index] for k, v in domains.splits.items()},
                        {k: v[index, row].unsqueeze(1).to(dtype) for k, v in domains.alphas.items()}, betas,
                        domains.lb[index, row].unsqueeze(1).to(dtype))
        with torch.no_grad(), rigorous(self.model):
            pass_bounds, _, hook = search._pass_inputs(pairs, betas)
            value = backward_lower(search.graph, search.graph.output_name, search.spec[0, row].unsqueeze(1),
                                   pass_bounds, hook)
            value = value - search.problem.d[row].unsqueeze(1)
            rounding = search.problem.rounding
            if rounding is not None:
                value = value - rounding.beta_error(betas)
        return value[:, 0]

    def confirm(self, bounded, before: Tensor, problem: Problem):
        """A bounded batch (``bounded``, in the search's type; ``problem`` its problem) with each row that refutes
        its case now but did not in ``before`` (``[D, R]``, the bounds the batch had before this pass: those
        rows' bounds come from this pass, with the domain's own splits and multipliers) confirmed in float64,
        and the rows float64 does not confirm lowered below refutation (so the search goes on with them)."""
        new = problem.row_refutes(bounded.lb) & ~problem.row_refutes(before)
        if not bool(new.any()):
            return bounded
        started = time.perf_counter()
        index = new.any(1).nonzero().flatten()
        rows = new[index]
        local, row = rows.nonzero(as_tuple=True)
        margins = torch.full(rows.shape, -torch.inf, dtype=self.search.lower.dtype, device=rows.device)
        margins[local, row] = self.pair_margins(bounded, index[local], row)
        failed = rows & ~self.problem.row_refutes(margins)
        self.stats["confirmed"] += int((rows & ~failed).sum())
        if bool(failed.any()):
            from verifier.bab.relu_split import Domains

            self.stats["reopened"] += int(failed.sum())
            lb = bounded.lb.clone()
            part = lb[index]
            lb[index] = torch.where(failed, _below_refutation(torch.minimum(part, margins.to(lb.dtype)), problem),
                                    part)
            bounded = Domains(bounded.bounds, bounded.splits, bounded.alphas, bounded.betas, lb)
        self.stats["seconds"] = round(self.stats["seconds"] + time.perf_counter() - started, 4)
        return bounded

    def confirm_fixed(self, domain, steps: int) -> bool:
        """Whether a domain with every phase fixed (one, in the search's type) is refuted by a long float64
        optimisation of its multipliers, past the rounding error (what the float-sound search uses in place
        of the linear program's optimum)."""
        from verifier.bab.relu_split import Domains

        dtype = self.search.lower.dtype
        bounds = {k: (lo, hi) for k, (lo, hi) in self.root_bounds.items() if k in domain.bounds}
        one = Domains(bounds, domain.splits, {k: v.to(dtype) for k, v in domain.alphas.items()},
                      {k: v.to(dtype) for k, v in domain.betas.items()},
                      torch.full(domain.lb.shape, -torch.inf, dtype=dtype, device=domain.lb.device))
        with rigorous(self.model):
            bounded = self.search.bound(one, steps)[0]
        return bool(self.problem.refuted(bounded.lb).all())


def _below_refutation(lb: Tensor, problem: Problem) -> Tensor:
    """``lb`` lowered to at most ``-tolerance`` (and below zero): no row of it refutes a case in ``problem``,
    whose test is ``lb - tolerance > 0`` (``>= 0`` for a strict row)."""
    tolerance = torch.as_tensor(problem.tolerance, dtype=lb.dtype, device=lb.device).abs()
    return lb.clamp(max=0) - tolerance - torch.finfo(lb.dtype).tiny
