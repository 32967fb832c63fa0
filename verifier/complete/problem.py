"""One group of a property's cases that share an input box, as tensors in the network's type.

A counterexample is an ``x`` in the box with ``C_r . f(x) <= d_r`` for every row ``r`` of some case.
The *margin* of row ``r`` is ``C_r . f(x) - d_r``; a case is violated where its largest margin is <= 0,
and refuted on a domain where some row's margin has a positive lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifier.network import Network
from verifier.spec.specification import BoxGroup


@dataclass
class Problem:
    """``lower``/``upper``: the box ``[*input_shape]`` in the network's type; ``C`` ``[R, n_out]``; ``d`` ``[R]``;
    ``row_case`` ``[R]`` maps rows to local case numbers ``0..n_cases-1``; ``case_indices`` maps those to the
    spec's; ``exact_lower``/``exact_upper``: the box as parsed, in float64 (the network's type may round it).
    The tensors are on the network's device."""

    lower: Tensor
    upper: Tensor
    C: Tensor
    d: Tensor
    row_case: Tensor
    n_cases: int
    case_indices: tuple[int, ...]
    exact_lower: np.ndarray | None = None   # the box as parsed (float64), for checking witnesses exactly
    exact_upper: np.ndarray | None = None
    #: a case counts as refuted only where a row's margin lower bound exceeds this (a few units of the engine
    #: type's rounding at the scale of the outputs; see :func:`verifier.complete.float_sound.refutation_tolerance`)
    tolerance: float | Tensor = 0.0
    #: under float soundness, the rounding-error model of the bound computations
    #: (:class:`verifier.complete.float_sound.RoundingModel`); its row errors are then the tolerance
    rounding: object | None = None
    strict: Tensor | None = None   # [R] bool: rows ``C f(x) < d``, refuted by a margin lower bound >= 0

    @classmethod
    def from_group(cls, group: BoxGroup, network: Network) -> Problem:
        """The group's box and rows as tensors of the network's type. The box is widened one float64 unit
        and rounded *outward* (:func:`round_outward`), so no point of the box written in the file is lost to
        rounding."""
        dtype, device = network.dtype, getattr(network, "device", torch.device("cpu"))

        def tensor(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.array(a, dtype=np.float64), device=device).to(dtype)

        # one float64 unit outward first: the parser's rounding of the decimal bounds may have shrunk the box
        lower = np.nextafter(np.asarray(group.lower, np.float64), -np.inf)
        upper = np.nextafter(np.asarray(group.upper, np.float64), np.inf)
        lower, upper = round_outward(lower, upper, dtype, device)
        return cls(
            lower=lower.reshape(network.input_shape),
            upper=upper.reshape(network.input_shape),
            C=tensor(group.C).reshape(-1, network.output_size),
            d=tensor(group.d).reshape(-1),
            row_case=torch.as_tensor(np.array(group.row_case, dtype=np.int64), device=device).reshape(-1),
            n_cases=len(group.case_indices),
            case_indices=tuple(group.case_indices),
            exact_lower=np.asarray(group.lower, dtype=np.float64).reshape(-1),
            exact_upper=np.asarray(group.upper, dtype=np.float64).reshape(-1),
            strict=None if getattr(group, "strict", None) is None else torch.as_tensor(np.asarray(group.strict)),
        )

    @property
    def rows(self) -> int:
        return self.C.shape[0]

    def has_trivial_case(self) -> bool:
        """A case without output rows: every point of the box violates the property."""
        counts = torch.bincount(self.row_case, minlength=self.n_cases)
        return bool((counts == 0).any())

    def margins(self, y: Tensor) -> Tensor:
        """``C f(x) - d`` per row for flattened outputs ``y`` ``[N, n_out]``: ``[N, R]``."""
        return y @ self.C.T - self.d

    def case_max(self, row_values: Tensor, empty: float = float("-inf")) -> Tensor:
        """Largest value over each case's rows: ``[N, R] -> [N, n_cases]`` (``empty`` for a case without rows)."""
        out = row_values.new_full((row_values.shape[0], self.n_cases), empty)
        index = self.row_case.unsqueeze(0).expand_as(row_values)
        return out.scatter_reduce(1, index, row_values, reduce="amax", include_self=True)

    def violation(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """How far each output is from violating the property: ``min over cases of max over rows`` of the
        margins (``<= 0``: a counterexample), and the case attaining it. ``[N]`` each."""
        values, case = self.case_max(self.margins(y)).min(1)
        return values, case

    def restrict(self, keep_cases: Tensor) -> tuple[Problem, Tensor]:
        """The problem with only the cases in ``keep_cases`` (``[n_cases]`` bool), and the mask of its rows
        among the original ones. Cases refuted on the whole box stay refuted on every part of it, so a
        search may drop them."""
        rows = keep_cases[self.row_case]
        renumber = torch.cumsum(keep_cases.long(), 0) - 1
        return Problem(
            lower=self.lower, upper=self.upper, C=self.C[rows], d=self.d[rows],
            row_case=renumber[self.row_case[rows]], n_cases=int(keep_cases.sum()),
            case_indices=tuple(c for c, k in zip(self.case_indices, keep_cases.tolist()) if k),
            exact_lower=self.exact_lower, exact_upper=self.exact_upper,
            tolerance=self.tolerance[rows] if isinstance(self.tolerance, Tensor) else self.tolerance,
            rounding=None if self.rounding is None else self.rounding.restrict(rows),
            strict=None if self.strict is None else self.strict[rows],
        ), rows

    def in_type(self, dtype: torch.dtype) -> Problem:
        """The same problem in another floating type (the box rounded outward into it), for a search that runs
        in a faster type than the one its refutations are confirmed in; it carries no rounding model, and its
        tolerance is a few units of the new type's rounding at the scale of the row's right-hand side (the
        caller sets a better one where it has the network)."""
        lower, upper = round_outward(self.lower.double().cpu().numpy(), self.upper.double().cpu().numpy(), dtype,
                                     self.lower.device)
        eps = torch.finfo(dtype).eps
        return Problem(
            lower=lower, upper=upper, C=self.C.to(dtype), d=self.d.to(dtype), row_case=self.row_case,
            n_cases=self.n_cases, case_indices=self.case_indices, exact_lower=self.exact_lower,
            exact_upper=self.exact_upper, tolerance=8 * eps * (self.d.abs().to(dtype) + 1.0), rounding=None,
            strict=self.strict,
        )

    def row_refutes(self, lower_margins: Tensor) -> Tensor:
        """``[N, R]``: rows whose margin lower bound refutes their case (the row-level test of :meth:`refuted`)."""
        margins = lower_margins - self.tolerance
        if self.strict is None:
            return margins > 0
        return (margins > 0) | (self.strict.to(margins.device) & (margins >= 0))

    def refuted(self, lower_margins: Tensor) -> Tensor:
        """``[N, n_cases]``: cases with a row whose margin lower bound is positive (above :attr:`tolerance`)
        on the domain; a strict row (``C f(x) < d``: its unsafe set is open) is refuted by a margin of exactly
        the tolerance too."""
        margins = lower_margins - self.tolerance
        if self.strict is not None:
            margins = torch.where(self.strict.to(margins.device) & (margins >= 0),
                                  margins.clamp(min=torch.finfo(margins.dtype).tiny), margins)
        return self.case_max(margins) > 0


def round_outward(lower: np.ndarray, upper: np.ndarray, dtype: torch.dtype,
                  device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """The box ``[lower, upper]`` (float64) as tensors of ``dtype`` containing it: each lower end rounded down
    and each upper end rounded up to the nearest value of ``dtype`` (rounding to nearest can shrink the box,
    e.g. 0.1 becomes 0.10000000149 in float32, and a proof on the shrunk box says nothing about its edge)."""
    np_dtype = np.dtype(str(dtype).replace("torch.", ""))
    lo, hi = lower.astype(np_dtype), upper.astype(np_dtype)
    lo = np.where(lo.astype(np.float64) > lower, np.nextafter(lo, np.array(-np.inf, np_dtype)), lo)
    hi = np.where(hi.astype(np.float64) < upper, np.nextafter(hi, np.array(np.inf, np_dtype)), hi)
    return torch.as_tensor(lo, device=device), torch.as_tensor(hi, device=device)
