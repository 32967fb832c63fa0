"""Random operands for the kernel tests: coefficient tensors, relaxations and boxes of given layouts."""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.primitives import LinearRelaxation


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coefficients(b: int, K: int, shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator,
                 away_from_zero: bool = False) -> Tensor:
    """``A`` of shape ``[b, K, *shape]``: mixed signs, some exact zeros (or none, for gradient checks)."""
    A = torch.randn(b, K, *shape, generator=g, dtype=dtype)
    if away_from_zero:
        return A.sign() * (0.1 + A.abs())
    zero = torch.rand(b, K, *shape, generator=g) < 0.1
    return A.masked_fill(zero, 0.0)


def relaxation(B: int, K: int, shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator, per_row: bool,
               lower_intercept: bool, upper_intercept: bool) -> LinearRelaxation:
    """A random elementwise relaxation; slopes ``[B, *shape]`` or per spec row ``[B, K, *shape]``."""
    lead = (B, K) if per_row else (B,)

    def draw() -> Tensor:
        return torch.randn(*lead, *shape, generator=g, dtype=dtype)

    return LinearRelaxation(
        draw().abs(),
        draw() if lower_intercept else None,
        draw().abs(),
        draw() if upper_intercept else None,
    )


def pre_activation_bounds(B: int, shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator,
                          kind: str = "mixed") -> tuple[Tensor, Tensor]:
    """Bounds ``lower <= upper`` of ``[B, *shape]``: ``mixed`` (stable and unstable neurons, some bounds exactly
    0), ``active`` (all ``l >= 0``), ``dead`` (all ``u <= 0``), or ``generic`` (no bound within 0.05 of 0, and
    no ``u = -l`` tie: for gradient checks)."""
    centre = torch.randn(B, *shape, generator=g, dtype=dtype)
    width = torch.rand(B, *shape, generator=g, dtype=dtype) * 2
    lower, upper = centre - width / 2, centre + width / 2
    if kind == "active":
        lower, upper = lower.abs(), lower.abs() + width
    elif kind == "dead":
        lower, upper = -upper.abs() - width, -upper.abs()
    elif kind == "mixed":
        pick = torch.rand(B, *shape, generator=g)
        lower = torch.where(pick < 0.05, torch.zeros_like(lower), lower)
        upper = torch.where(pick > 0.95, torch.zeros_like(upper), upper)
        upper = torch.maximum(lower, upper)
    elif kind == "generic":
        lower = torch.where(lower.abs() < 0.05, lower - 0.1, lower)
        upper = torch.where(upper.abs() < 0.05, upper + 0.1, upper)
        upper = torch.where((upper + lower).abs() < 0.05, upper + 0.2, upper)
    return lower, upper


def box(B: int, shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Input boxes ``[B, *shape]`` with random centres and radii."""
    centre = torch.randn(B, *shape, generator=g, dtype=dtype)
    radius = torch.rand(B, *shape, generator=g, dtype=dtype)
    return centre - radius, centre + radius


def sum_tolerance(terms_abs_sum: Tensor, dtype: torch.dtype) -> Tensor:
    """Allowed difference of two summation orders of the same terms: a few roundings of their absolute sum."""
    return 16 * torch.finfo(dtype).eps * terms_abs_sum + torch.finfo(dtype).tiny


def assert_sums_close(actual: Tensor, expected: Tensor, terms_abs_sum: Tensor) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    allowed = sum_tolerance(terms_abs_sum.to(expected.dtype), expected.dtype)
    excess = (actual - expected).abs() - allowed
    assert bool((excess <= 0).all()), f"max excess {excess.max().item()} over the rounding allowance"
