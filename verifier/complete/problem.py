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
    spec's; ``exact_lower``/``exact_upper``: the box as parsed, in float64 (the network's type may round it)."""

    lower: Tensor
    upper: Tensor
    C: Tensor
    d: Tensor
    row_case: Tensor
    n_cases: int
    case_indices: tuple[int, ...]
    exact_lower: np.ndarray | None = None   # the box as parsed (float64), for checking witnesses exactly
    exact_upper: np.ndarray | None = None
    strict: Tensor | None = None   # [R] bool: rows ``C f(x) < d``, refuted by a margin lower bound >= 0

    @classmethod
    def from_group(cls, group: BoxGroup, network: Network) -> Problem:
        dtype = network.dtype

        def tensor(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.array(a, dtype=np.float64)).to(dtype)

        return cls(
            lower=tensor(group.lower).reshape(network.input_shape),
            upper=tensor(group.upper).reshape(network.input_shape),
            C=tensor(group.C).reshape(-1, network.output_size),
            d=tensor(group.d).reshape(-1),
            row_case=torch.as_tensor(np.array(group.row_case, dtype=np.int64)).reshape(-1),
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
        out = torch.full((row_values.shape[0], self.n_cases), empty, dtype=row_values.dtype)
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
            strict=None if self.strict is None else self.strict[rows],
        ), rows

    def refuted(self, lower_margins: Tensor) -> Tensor:
        """``[N, n_cases]``: cases with a row whose margin lower bound is positive on the domain."""
        if self.strict is not None:  # a strict row's unsafe set is open: a margin of exactly 0 refutes it
            lower_margins = torch.where(self.strict.to(lower_margins.device) & (lower_margins >= 0),
                                        lower_margins.clamp(min=torch.finfo(lower_margins.dtype).tiny), lower_margins)
        return self.case_max(lower_margins) > 0
