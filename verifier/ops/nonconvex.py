"""Smooth elementwise functions with inflection points: Sin, Cos, Erf, GELU.

* ``Sin``/``Cos``: exact-intercept lines (:mod:`verifier.ops.envelope`) whose candidate points are the
  first and last solution in ``[l, u]`` of each family ``f'(x) = k`` (``x = +-acos(k) + 2 pi n`` for
  sine): along one family ``f(x) - k x`` changes by ``-2 pi k`` per period, so its extremes over the
  family are at the two ends. On boxes of width ``>= 2 pi`` (or too far from 0 to resolve the period
  in float64) the relaxation is the constant band ``[-1, 1]``, which is then tight.
* ``Erf``: an S-shaped function (odd, convex for ``x < 0``, concave for ``x > 0``), relaxed with the
  Sigmoid/Tanh rules of :class:`verifier.ops.activation.SShaped` (CROWN tangent/chord slopes, exact
  intercepts); ``f'(x) = k`` at ``x = +-sqrt(-log(k sqrt(pi) / 2))``.
* ``GELU`` ``x Phi(x)`` (the Erf form): convex on ``[-sqrt 2, sqrt 2]``, concave outside, so
  ``f'(x) = k`` has at most one solution on each of the three pieces, found by bisection; the
  exact-intercept lines then hold for any slope. The ONNX pattern ``x * 0.5 * (1 + Erf(x / sqrt 2))``
  is fused into this operator by :mod:`verifier.frontend.fuse`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.ops.activation import SShaped
from verifier.ops.base import Interval
from verifier.ops.envelope import ExactInterceptNonlinear, bisect_monotone
from verifier.ops.registry import SourceNode, onnx_op, torch_op
from verifier.primitives import LinearRelaxation

TWO_PI = 2 * math.pi
#: beyond this magnitude the period of sin is not resolved well enough in float64 to place critical points
_PERIOD_RESOLVED = 1e8


class Sin(ExactInterceptNonlinear):
    """``sin(x)``; ``f'(x) = cos(x) = k`` at ``x = +-acos(k) + 2 pi n``."""

    op_type = "Sin"
    #: phase: this function is ``sin(x + shift)``
    shift = 0.0

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.cos(x)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        # solutions of cos(x + shift) = k, i.e. x + shift = +-acos(k) + 2 pi n; first and last of each family
        base = torch.acos(slope)
        lo, hi = lower + self.shift, upper + self.shift
        points = []
        for x0 in (base, -base):
            first = x0 + TWO_PI * torch.ceil((lo - x0) / TWO_PI)
            last = x0 + TWO_PI * torch.floor((hi - x0) / TWO_PI)
            points += [first - self.shift, last - self.shift]
        return points

    def _band(self, lower: Tensor, upper: Tensor) -> Tensor:
        """Neurons relaxed by the constant band [-1, 1]."""
        return (upper - lower >= TWO_PI) | (torch.maximum(lower.abs(), upper.abs()) > _PERIOD_RESOLVED)

    def interval(self, *inputs: Interval) -> Interval:
        (lower, upper), = inputs
        out_lower, out_upper = super().interval((lower, upper))
        band = self._band(lower, upper)
        return torch.where(band, -1.0, out_lower), torch.where(band, 1.0, out_upper)

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        r = super().relax(lower, upper)
        band = self._band(lower, upper)
        zero = torch.zeros_like(r.lower_slope)
        return LinearRelaxation(
            torch.where(band, zero, r.lower_slope),
            torch.where(band, zero - 1, r.lower_intercept),
            torch.where(band, zero, r.upper_slope),
            torch.where(band, zero + 1, r.upper_intercept),
        )


class Cos(Sin):
    """``cos(x) = sin(x + pi/2)``; ``f'(x) = -sin(x) = k``, the sine rule shifted by ``pi/2``."""

    op_type = "Cos"
    shift = math.pi / 2

    def forward(self, x: Tensor) -> Tensor:
        return torch.cos(x)

    def derivative(self, x: Tensor) -> Tensor:
        return -torch.sin(x)


class Erf(SShaped):
    """The error function ``erf(x)``."""

    op_type = "Erf"

    def forward(self, x: Tensor) -> Tensor:
        return torch.erf(x)

    def derivative(self, x: Tensor) -> Tensor:
        return 2 / math.sqrt(math.pi) * torch.exp(-x * x)

    def derivative_preimage(self, slope: Tensor) -> Tensor:
        # 2/sqrt(pi) exp(-x^2) = k  =>  x = sqrt(-log(k sqrt(pi) / 2))
        return torch.sqrt((-torch.log(slope * (math.sqrt(math.pi) / 2))).clamp(min=0))


_SQRT2 = math.sqrt(2)


class Gelu(ExactInterceptNonlinear):
    """GELU ``x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`` (``Phi`` the standard normal CDF).

    ``f'(x) = Phi(x) + x phi(x)``, ``f''(x) = phi(x) (2 - x^2)``: ``f'`` decreases on ``(-inf, -sqrt 2]``,
    increases on ``[-sqrt 2, sqrt 2]`` and decreases on ``[sqrt 2, inf)``.
    """

    op_type = "Gelu"

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x)

    def derivative(self, x: Tensor) -> Tensor:
        cdf = 0.5 * (1 + torch.erf(x / _SQRT2))
        pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return cdf + x * pdf

    def interval(self, *inputs: Interval) -> Interval:
        """Exact range: ``f`` at the ends and at its minimum point ``x* = -0.7518`` (``f'(x*) = 0``)."""
        (lower, upper), = inputs
        points = [lower, upper, torch.full_like(lower, _GELU_ARGMIN).clamp(lower, upper)]
        values = torch.stack([self.forward(x) for x in points])
        return values.amin(0), values.amax(0)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        points = []
        for start, end, increasing in ((-math.inf, -_SQRT2, False), (-_SQRT2, _SQRT2, True), (_SQRT2, math.inf, False)):
            # the piece's part of [l, u]; an empty part gives a point outside [l, u], clamped later
            a = lower.clamp(min=start)
            b = torch.maximum(upper.clamp(max=end), a)
            points.append(bisect_monotone(self.derivative, slope, a, b, increasing))
        return points


# -- converters -------------------------------------------------------------------------------------------
@onnx_op("Sin")
def _onnx_sin(node: SourceNode) -> Sin:
    return Sin()


@onnx_op("Cos")
def _onnx_cos(node: SourceNode) -> Cos:
    return Cos()


@onnx_op("Erf")
def _onnx_erf(node: SourceNode) -> Erf:
    return Erf()


@onnx_op("Gelu")
def _onnx_gelu(node: SourceNode) -> Gelu:
    approximate = node.attr("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate != "none":
        raise node.unsupported(f"approximate={approximate!r} (only the exact Erf form)")
    return Gelu()


@torch_op(torch.sin, "sin")
def _torch_sin(node: SourceNode) -> Sin:
    return Sin()


@torch_op(torch.cos, "cos")
def _torch_cos(node: SourceNode) -> Cos:
    return Cos()


@torch_op(torch.erf, torch.special.erf, "erf")
def _torch_erf(node: SourceNode) -> Erf:
    return Erf()


@torch_op(torch.nn.GELU, F.gelu)
def _torch_gelu(node: SourceNode) -> Gelu:
    approximate = node.module.approximate if node.module is not None else node.attr("kwargs", {}).get(
        "approximate", "none")
    if approximate != "none":
        raise node.unsupported(f"approximate={approximate!r} (only the exact Erf form)")
    return Gelu()


#: where GELU attains its minimum (f'(x) = 0 on the convex piece), in float64
_GELU_ARGMIN = bisect_monotone(Gelu().derivative, torch.zeros((), dtype=torch.float64),
                               torch.tensor(-_SQRT2, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64),
                               increasing=True, iterations=80).item()
