"""The numerical primitives of bound propagation, in plain PyTorch.

These are the hot loops of IBP and CROWN. Each is written once here; an accelerated implementation
(see ``verifier.kernels``) must give the same numbers, and this code is its specification.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LinearRelaxation:
    """Elementwise linear bounds ``lower_slope*x + lower_intercept <= f(x) <= upper_slope*x + upper_intercept``.

    Each field has the shape of the pre-activation bounds (``[batch, *shape]``); an intercept of
    ``None`` means zero. ``lower_slope`` may also carry a spec dimension ``[batch, K, *shape]`` when
    slopes are optimised per specification row (alpha-CROWN).
    """

    lower_slope: Tensor
    lower_intercept: Tensor | None
    upper_slope: Tensor
    upper_intercept: Tensor | None


def relaxed_backward(A: Tensor, relaxation: LinearRelaxation) -> tuple[Tensor, Tensor | None]:
    """One CROWN backward step through an elementwise nonlinearity.

    For a lower bound of ``A . f(z)`` each coefficient picks the lower relaxation where it is
    non-negative and the upper relaxation where it is negative (CROWN, Zhang et al. 2018, Thm 3.2):
    ``A_z = A+ * lower_slope + A- * upper_slope`` and
    ``bias = sum(A+ * lower_intercept + A- * upper_intercept)`` over the neuron dimensions.

    ``A`` is ``[b, K, *shape]``; relaxation slopes are ``[B, *shape]`` (shared by all rows) or
    ``[B, K, *shape]`` (per-row, alpha-CROWN). Returns ``(A_z, bias[B, K] or None)``.
    """
    lower_slope = _spec_broadcast(relaxation.lower_slope, A)
    upper_slope = _spec_broadcast(relaxation.upper_slope, A)
    A_pos = A.clamp(min=0)
    A_neg = A.clamp(max=0)
    A_z = A_pos * lower_slope + A_neg * upper_slope
    bias = None
    if relaxation.upper_intercept is not None:
        bias = _sum_neurons(A_neg * _spec_broadcast(relaxation.upper_intercept, A))
    if relaxation.lower_intercept is not None:
        lower_part = _sum_neurons(A_pos * _spec_broadcast(relaxation.lower_intercept, A))
        bias = lower_part if bias is None else bias + lower_part
    return A_z, bias


def relu_upper_line(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Slope and intercept of the ReLU's upper relaxation: the chord on unstable neurons, exact elsewhere."""
    lower = lower.clamp(max=0)
    upper = upper.clamp(min=0)
    width = upper - lower
    slope = torch.where(width > 0, upper / width.clamp(min=torch.finfo(width.dtype).tiny), (lower >= 0).to(upper))
    # a dead neuron (upper <= 0) has slope 0: upper.clamp(min=0) = 0 already gives it.
    return slope, -slope * lower


def relu_default_lower_slope(lower: Tensor, upper: Tensor) -> Tensor:
    """The adaptive lower slope (1 where ``u > -l``, else 0); exact (1 or 0) on stable neurons."""
    return (upper > -lower).to(lower.dtype) * (upper > 0).to(lower.dtype)


def relu_relaxation(lower: Tensor, upper: Tensor, lower_slope: Tensor | None = None) -> LinearRelaxation:
    """CROWN's linear relaxation of ReLU on the pre-activation bounds ``[lower, upper]`` (Zhang et al. 2018).

    Upper line: the chord ``u (x - l) / (u - l)`` on unstable neurons (``l < 0 < u``); lower line through 0
    with the adaptive slope (1 if ``u > -l`` else 0); stable neurons are relaxed exactly. A given
    ``lower_slope`` (``[B, *shape]`` or per spec row ``[B, K, *shape]``, alpha-CROWN, expected in ``[0, 1]``)
    replaces the adaptive slope on the unstable neurons only.
    """
    upper_slope, upper_intercept = relu_upper_line(lower, upper)
    default = relu_default_lower_slope(lower, upper)
    if lower_slope is not None:
        unstable = (lower < 0) & (upper > 0)
        if lower_slope.dim() == lower.dim() + 1:  # per spec row
            unstable, default = unstable.unsqueeze(1), default.unsqueeze(1)
        default = torch.where(unstable, lower_slope, default)
    return LinearRelaxation(default, None, upper_slope, upper_intercept)


def relu_backward(
    A: Tensor, lower: Tensor, upper: Tensor, lower_slope: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """One CROWN backward step through a ReLU with pre-activation bounds ``[lower, upper]``:
    :func:`relaxed_backward` with :func:`relu_relaxation`."""
    return relaxed_backward(A, relu_relaxation(lower, upper, lower_slope))


def concretize_box(A: Tensor, bias: Tensor | None, lower: Tensor, upper: Tensor) -> Tensor:
    """Minimum of ``A . x + bias`` over the box ``lower <= x <= upper``, for each row of ``A``.

    Uses the centre/radius form ``A . c - |A| . r`` (``c`` the box centre, ``r`` its radius, widened by
    rounding so the box ``[c - r, c + r]`` always contains ``[lower, upper]``).
    ``A`` is ``[b, K, *shape]``, ``lower``/``upper`` are ``[B, *shape]``; returns ``[B, K]``.
    """
    center = (lower + upper) / 2
    radius = torch.maximum(upper - center, center - lower)
    A_flat = A.flatten(2)
    if A_flat.shape[0] == 1 and center.shape[0] > 1:  # one A for many boxes: two matrix products, no copies of A
        value = center.flatten(1) @ A_flat[0].T - radius.flatten(1) @ A_flat[0].abs().T
    else:
        value = torch.matmul(A_flat, center.flatten(1).unsqueeze(-1)).squeeze(-1)
        value = value - torch.matmul(A_flat.abs(), radius.flatten(1).unsqueeze(-1)).squeeze(-1)
    if bias is not None:
        value = value + bias
    return value


def interval_linear(
    lower: Tensor, upper: Tensor, weight: Tensor, weight_abs: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """IBP through ``y = x W^T + b`` (Gowal et al. 2018): the box with centre ``c W^T + b`` and radius
    ``r |W|^T``, for input boxes ``[lower, upper]`` (``[..., in]``) with centre ``c`` and radius ``r``."""
    center, radius = center_radius(lower, upper)
    out_center = torch.nn.functional.linear(center, weight, bias)
    out_radius = torch.nn.functional.linear(radius, weight_abs)
    return out_center - out_radius, out_center + out_radius


def interval_from_center_radius(center: Tensor, radius: Tensor) -> tuple[Tensor, Tensor]:
    """The box ``[center - radius, center + radius]``."""
    return center - radius, center + radius


def center_radius(lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Centre and radius of a box, the radius widened by rounding so the box is covered."""
    center = (lower + upper) / 2
    return center, torch.maximum(upper - center, center - lower)


def _spec_broadcast(t: Tensor, A: Tensor) -> Tensor:
    """View per-neuron tensor ``[B, *shape]`` as ``[B, 1, *shape]`` to broadcast over spec rows."""
    return t.unsqueeze(1) if t.dim() == A.dim() - 1 else t


def _sum_neurons(t: Tensor) -> Tensor:
    return t.flatten(2).sum(-1)
