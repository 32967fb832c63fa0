"""Elementwise activations: ReLU, Sigmoid, Tanh.

ReLU (CROWN, Zhang et al. 2018): on ``[l, u]`` with ``l < 0 < u`` the upper bound is the chord
``u (x - l) / (u - l)`` and the lower bound ``alpha x`` with the adaptive slope ``alpha = 1`` if
``u > -l`` else ``0``; stable neurons are relaxed exactly.

Sigmoid and Tanh (S-shaped: convex left of 0, concave right of 0): for each slope ``k`` the intercept
is the *tightest sound one*, ``max/min over [l, u] of f(x) - k x``. That extremum is attained at ``l``,
``u`` or where ``f'(x) = k``, which has a closed form for both functions, so the bounds are sound
whatever the slope. Per neuron and side the slope is the least-area choice among CROWN's (chord on the
side where the function is convex for the upper bound, the tangent through the far end point where the
interval crosses 0), the chord, and the tangent slopes at the ends and the midpoint; alpha-CROWN
optimises the slopes further.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.kernels import relu_backward
from verifier.ops.base import ElementwiseNonlinear, Interval
from verifier.ops.envelope import chord_and_tangent_slopes
from verifier.ops.registry import SourceNode, onnx_op, torch_op
from verifier.primitives import (  # noqa: F401  (the ReLU line helpers moved to primitives; kept importable here)
    LinearRelaxation,
    relu_default_lower_slope,
    relu_relaxation,
    relu_upper_line,
)


class Relu(ElementwiseNonlinear):
    """``max(x, 0)``."""

    op_type = "Relu"

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def exact_relaxation(self, lower: Tensor, upper: Tensor) -> Tensor:
        return (lower >= 0) | (upper <= 0)

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        return relu_relaxation(lower, upper)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        # the relaxation formed inside the fused step (verifier.kernels.relu_backward) = relaxed_backward(A, relax)
        bounds = inputs[0]
        assert bounds is not None, "Relu needs pre-activation bounds"
        A_in, bias = relu_backward(A, *bounds)
        return [A_in], bias


def _widen(intercept: Tensor, dtype: torch.dtype, up: bool) -> Tensor:
    """A float64 intercept moved outwards by a few rounding errors of the engine's type, then cast to it."""
    pad = 4 * torch.finfo(dtype).eps * (1 + intercept.abs())
    return (intercept + pad if up else intercept - pad).to(dtype)


class SShaped(ElementwiseNonlinear):
    """A smooth S-shaped activation: increasing, convex for ``x < 0``, concave for ``x > 0``."""

    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def derivative_preimage(self, slope: Tensor) -> Tensor:
        """The ``x >= 0`` with ``f'(x) = slope`` (for ``0 < slope <= f'(0)``); ``-x`` is the other solution."""
        raise NotImplementedError

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        """Per neuron and side, the line enclosing the least area with ``f`` on ``[lower, upper]`` among a few
        slopes: CROWN's (see :meth:`_upper_slope`), the chord, and the tangent slopes at both ends and the
        midpoint, each with its exact intercept. With exact intercepts the least-area line is the one
        closest to ``f`` at the midpoint. On the wide, saturated pre-activation ranges of deep sigmoid
        networks the chord-like lines often win by far (ERAN's 6x200 sigmoid network: the CROWN bound of a
        margin moves from -43 to +4 with the same pre-activation rules)."""
        dtype = lower.dtype
        l, u = lower.double(), upper.double()
        # f(-x) = c - f(x) for these functions, so CROWN's lower slope on [l, u] is its upper slope on [-u, -l]
        menu = [self._upper_slope(-u, -l), self._upper_slope(l, u),
                *chord_and_tangent_slopes(self.forward, self.derivative, l, u)]
        slopes = torch.stack(menu).to(dtype).double()        # the lines the engine will really use
        L, U = torch.broadcast_to(l, slopes.shape), torch.broadcast_to(u, slopes.shape)
        lower_intercepts = self._intercept_extreme(L, U, slopes, maximum=False)
        upper_intercepts = self._intercept_extreme(L, U, slopes, maximum=True)
        mid = (l + u) / 2
        lower_pick = (slopes * mid + lower_intercepts).argmax(0, keepdim=True)
        upper_pick = (slopes * mid + upper_intercepts).argmin(0, keepdim=True)
        lower_slope, lower_intercept = slopes.gather(0, lower_pick)[0], lower_intercepts.gather(0, lower_pick)[0]
        upper_slope, upper_intercept = slopes.gather(0, upper_pick)[0], upper_intercepts.gather(0, upper_pick)[0]
        return LinearRelaxation(lower_slope.to(dtype), _widen(lower_intercept, dtype, up=False),
                                upper_slope.to(dtype), _widen(upper_intercept, dtype, up=True))

    def slope_range(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """The least and greatest derivative on ``[lower, upper]``: the slopes worth optimising (alpha-CROWN
        for S-shaped functions). Any slope is sound (the intercepts are exact); outside this range a line
        is only looser."""
        low = torch.minimum(self.derivative(lower), self.derivative(upper))
        high = self.derivative(torch.minimum(torch.maximum(torch.zeros_like(lower), lower), upper))
        return low, high

    def relax_with_slopes(self, lower: Tensor, upper: Tensor, lower_slope: Tensor,
                          upper_slope: Tensor) -> LinearRelaxation:
        """Lines of the given slopes with the tightest sound intercepts (``min``/``max`` of ``f(x) - k x``
        over ``[lower, upper]``), widened by a few rounding errors. Slopes ``[B, K, *shape]`` (per
        specification row) take bounds ``[B, *shape]``; the result has the slopes' shape and type."""
        dtype = lower_slope.dtype
        l, u = lower.double(), upper.double()
        if lower_slope.dim() > l.dim():
            l, u = l.unsqueeze(1), u.unsqueeze(1)
        k_lower, k_upper = lower_slope.double(), upper_slope.double()
        l, u = torch.broadcast_tensors(l, u, k_lower)[:2]
        lower_intercept = self._intercept_extreme(l, u, k_lower, maximum=False)
        upper_intercept = self._intercept_extreme(l, u, k_upper, maximum=True)
        return LinearRelaxation(lower_slope, _widen(lower_intercept, dtype, up=False),
                                upper_slope, _widen(upper_intercept, dtype, up=True))

    def _upper_slope(self, l: Tensor, u: Tensor) -> Tensor:
        """Slope of the upper line: the chord if ``u <= 0``, the tangent at the midpoint if ``l >= 0``, and
        where ``l < 0 < u`` the secant from ``l`` to ``min(u, d)``, ``d >= 0`` the point whose tangent passes
        through ``(l, f(l))``."""
        f_l, f_u = self.forward(l), self.forward(u)
        width = u - l
        narrow = width < 1e-9
        chord = torch.where(narrow, self.derivative(l), (f_u - f_l) / torch.where(narrow, 1.0, width))
        tangent_mid = self.derivative((l + u) / 2)
        # tangent point d in [0, u] for crossing intervals, by bisection on g(d) = f'(d)(d-l) - (f(d)-f(l))
        lo = torch.zeros_like(l)
        hi = u.clamp(min=0)
        for _ in range(30):
            mid = (lo + hi) / 2
            g = self.derivative(mid) * (mid - l) - (self.forward(mid) - f_l)
            lo = torch.where(g > 0, mid, lo)
            hi = torch.where(g > 0, hi, mid)
        d = hi
        secant = (self.forward(d) - f_l) / (d - l).clamp(min=1e-12)
        crossing = torch.where(d >= u, chord, secant)
        return torch.where(u <= 0, chord, torch.where(l >= 0, tangent_mid, crossing))

    def _intercept_extreme(self, l: Tensor, u: Tensor, slope: Tensor, maximum: bool) -> Tensor:
        """``max`` (or ``min``) over ``x in [l, u]`` of ``f(x) - slope * x``: at an end or where ``f' = slope``."""
        candidates = [l, u]
        peak = self.derivative(torch.zeros_like(slope))
        valid = (slope > 0) & (slope <= peak)
        # the tangent points need no gradient (envelope theorem: d/dk of the extremum is -x*), and computing
        # them without one keeps the preimage's infinite derivative at k = f'(0) out of alpha-CROWN
        with torch.no_grad():
            interior = valid & (slope < peak)
            x_pos = self.derivative_preimage(torch.where(interior, slope, peak / 2))
            x_pos = torch.where(interior, x_pos, torch.zeros_like(x_pos))
        for x in (x_pos, -x_pos):
            inside = valid & (x >= l) & (x <= u)
            candidates.append(torch.where(inside, x, l))
        values = torch.stack([self.forward(x) - slope * x for x in candidates])
        return values.amax(0) if maximum else values.amin(0)


class Sigmoid(SShaped):
    """The logistic function ``1 / (1 + exp(-x))``."""

    op_type = "Sigmoid"

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(x)
        return s * (1 - s)

    def derivative_preimage(self, slope: Tensor) -> Tensor:
        # s(1-s) = k  =>  s = 1 - q with q = 2k / (1 + sqrt(1 - 4k)) (the stable root), x = log((1-q)/q)
        q = 2 * slope / (1 + torch.sqrt((1 - 4 * slope).clamp(min=0)))
        return torch.log1p(-q) - torch.log(q)


class Tanh(SShaped):
    """The hyperbolic tangent."""

    op_type = "Tanh"

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x)

    def derivative(self, x: Tensor) -> Tensor:
        return 1 - torch.tanh(x) ** 2

    def derivative_preimage(self, slope: Tensor) -> Tensor:
        # 1 - t^2 = k  =>  t = sqrt(1 - k), x = atanh(t)
        return torch.atanh(torch.sqrt((1 - slope).clamp(min=0)).clamp(max=1 - 1e-16))


@onnx_op("Relu")
def _onnx_relu(node: SourceNode) -> Relu:
    return Relu()


@onnx_op("Sigmoid")
def _onnx_sigmoid(node: SourceNode) -> Sigmoid:
    return Sigmoid()


@onnx_op("Tanh")
def _onnx_tanh(node: SourceNode) -> Tanh:
    return Tanh()


@torch_op(torch.nn.ReLU, torch.relu, F.relu, "relu")
def _torch_relu(node: SourceNode) -> Relu:
    return Relu()


@torch_op(torch.nn.Sigmoid, torch.sigmoid, F.sigmoid, "sigmoid")
def _torch_sigmoid(node: SourceNode) -> Sigmoid:
    return Sigmoid()


@torch_op(torch.nn.Tanh, torch.tanh, F.tanh, "tanh")
def _torch_tanh(node: SourceNode) -> Tanh:
    return Tanh()
