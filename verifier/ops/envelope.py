"""Linear bounds of scalar functions by *exact intercepts*, shared by the elementwise relaxations.

For a function ``f`` on ``[l, u]`` and any slope ``k`` the tightest sound lines of slope ``k`` are::

    k x + min_{[l, u]} (f(x) - k x)  <=  f(x)  <=  k x + max_{[l, u]} (f(x) - k x)

and the extremes of ``f(x) - k x`` lie at ``l``, ``u``, a point where ``f'(x) = k``, or a kink of ``f``.
A function that lists those *candidate points* therefore gets sound lines for **any** slope; the slope
is a tightness choice only. Among a few slopes (the chord, the tangents at ``l``, the midpoint and
``u``) we keep, per neuron and per side, the line that is tightest at the midpoint of ``[l, u]``, i.e.
the one enclosing the least area with ``f`` (for a convex ``f`` this picks the chord above and the
midpoint tangent below, the classic CROWN choices). This is the intercept rule
:class:`verifier.ops.activation.SShaped` uses for Sigmoid and Tanh, made generic.

Numerics: slopes are rounded to the engine's dtype first, intercepts are then computed in float64
for those rounded slopes and widened by a bound on the rounding error before being rounded outwards.
A side whose line cannot be finite (``f`` unbounded on the box, e.g. ``1/x`` across 0, ``log`` at 0,
``exp`` overflowing the dtype) is reported as unbounded and turns every bound that uses it into
``-inf``, never into NaN (:func:`guarded_backward`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from verifier.ops.base import ElementwiseNonlinear, Interval
from verifier.primitives import LinearRelaxation, relaxed_backward

Function = Callable[[Tensor], Tensor]


def clamp_points(points: Sequence[Tensor], lower: Tensor, upper: Tensor) -> list[Tensor]:
    """Candidate points moved into ``[lower, upper]`` (invalid ones, NaN, become ``lower``).

    Moving a point into the interval never hurts soundness: the extremum over a larger candidate set
    of points *inside* the interval is still attained at a true critical point or an end.
    """
    result = []
    for x in points:
        x = torch.where(torch.isnan(x), lower, x)
        result.append(torch.minimum(torch.maximum(x, lower), upper))
    return result


def exact_intercept(f: Function, slope: Tensor, points: Sequence[Tensor], maximum: bool) -> tuple[Tensor, Tensor]:
    """``max`` (or ``min``) of ``f(x) - slope * x`` over the candidate points, and the magnitude of the
    terms involved (for the rounding error bound)."""
    values, magnitude = [], None
    for x in points:
        fx, kx = f(x), slope * x
        value = fx - kx
        values.append(value)
        # a candidate whose value is infinite is never the one whose rounding error matters
        size = torch.where(torch.isfinite(value), fx.abs() + kx.abs(), 0.0)
        magnitude = size if magnitude is None else torch.maximum(magnitude, size)
    stacked = torch.stack(values)
    return (stacked.amax(0) if maximum else stacked.amin(0)), magnitude


def chord_and_tangent_slopes(f: Function, derivative: Function, lower: Tensor, upper: Tensor) -> list[Tensor]:
    """The usual slope menu on ``[lower, upper]``: the chord (the midpoint tangent where the interval is too
    narrow to divide by) and the tangent slopes at ``lower``, the midpoint and ``upper``."""
    width = upper - lower
    narrow = width <= 1e-12 * (1 + lower.abs() + upper.abs())
    mid = (lower + upper) / 2
    chord = (f(upper) - f(lower)) / torch.where(narrow, 1.0, width)
    chord = torch.where(narrow, derivative(mid), chord)
    return [chord, derivative(lower), derivative(mid), derivative(upper)]


def round_outward(value: Tensor, magnitude: Tensor, dtype: torch.dtype, up: bool) -> Tensor:
    """A float64 intercept widened by its rounding error and cast to ``dtype`` rounding outwards."""
    pad = 4 * torch.finfo(torch.float64).eps * magnitude + 2 * torch.finfo(dtype).eps * value.abs()
    pad = pad + torch.finfo(dtype).tiny
    return (value + pad if up else value - pad).to(dtype)


class ExactInterceptNonlinear(ElementwiseNonlinear):
    """An elementwise function relaxed by lines with exact intercepts (see the module docstring).

    Subclasses implement :meth:`forward` (any dtype), :meth:`derivative` and :meth:`critical_points`;
    they may narrow :meth:`domain` (``sqrt``, ``log``) and change the slope menu.
    """

    def derivative(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        """Every point of ``[lower, upper]`` where ``f(x) - slope * x`` can have an interior extremum:
        the solutions of ``f'(x) = slope`` and the kinks. Points outside the interval or NaN are allowed
        (they are clamped); missing a point would be unsound. ``slope`` may carry extra leading axes
        (several slopes at once); results broadcast against it."""
        raise NotImplementedError

    def jump_limits(self, lower: Tensor, upper: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """One-sided limits at jumps inside the box, as ``(point, limit value, valid mask)``: a bound
        must hold in the limit too (``sign`` near 0). Default: none (a continuous function)."""
        return []

    def domain(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        """The part of ``[lower, upper]`` where the function is defined (default: all of it)."""
        return lower, upper

    def unbounded(self, lower: Tensor, upper: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Masks of the neurons whose function is unbounded below / above on the box (poles)."""
        return None, None

    def candidate_slopes(self, lower: Tensor, upper: Tensor) -> list[Tensor]:
        """Slopes tried for both sides: chord and tangents at the ends and the midpoint."""
        return chord_and_tangent_slopes(self.forward, self.derivative, lower, upper)

    # -- the three rules --------------------------------------------------------------------------------
    def interval(self, *inputs: Interval) -> Interval:
        """Exact range: ``f`` at the ends and at the stationary points (``f' = 0``) inside the box."""
        (lower, upper), = inputs
        lower, upper = self.domain(lower, upper)
        points = clamp_points([lower, upper, *self.critical_points(torch.zeros_like(lower), lower, upper)],
                              lower, upper)
        values = torch.stack([self.forward(x) for x in points])
        out_lower, out_upper = values.amin(0), values.amax(0)
        below, above = self.unbounded(lower, upper)
        if below is not None:
            out_lower = torch.where(below, -torch.inf, out_lower)
        if above is not None:
            out_upper = torch.where(above, torch.inf, out_upper)
        return out_lower, out_upper

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        dtype = lower.dtype
        lower, upper = self.domain(lower.double(), upper.double())
        mid = (lower + upper) / 2
        below, above = self.unbounded(lower, upper)
        # all candidate slopes at once, [S, *shape], rounded to the lines the engine will really use
        slopes = torch.stack(self.candidate_slopes(lower, upper)).to(dtype).double()
        points = [torch.broadcast_to(x, slopes.shape) for x in
                  clamp_points([lower, upper, *self.critical_points(slopes, lower, upper)], lower, upper)]
        sides = []
        for maximum, blocked in ((False, below), (True, above)):
            intercept, magnitude = exact_intercept(self.forward, slopes, points, maximum)
            for point, limit, valid in self.jump_limits(lower, upper):
                value = torch.where(valid, limit - slopes * point, intercept)
                intercept = torch.maximum(intercept, value) if maximum else torch.minimum(intercept, value)
                magnitude = torch.maximum(magnitude, torch.where(valid, limit.abs() + (slopes * point).abs(), 0.0))
            intercept = round_outward(intercept, magnitude, dtype, up=maximum).double()
            # tightness at the midpoint (least area between line and function): larger is better below
            value = slopes * mid + intercept
            value = torch.where(torch.isfinite(value), -value if maximum else value, -torch.inf)
            best = value.argmax(0, keepdim=True)
            slope = slopes.gather(0, best)[0].to(dtype)
            intercept = intercept.gather(0, best)[0].to(dtype)
            # a side without a finite line (pole, overflow of the dtype) is the vacuous line 0 x -+ inf
            vacuous = ~torch.isfinite(slope) | ~torch.isfinite(intercept)
            if blocked is not None:
                vacuous = vacuous | blocked
            slope = torch.where(vacuous, 0.0, slope)
            intercept = torch.where(vacuous, torch.inf if maximum else -torch.inf, intercept)
            sides.append((slope, intercept))
        (lower_slope, lower_intercept), (upper_slope, upper_intercept) = sides
        return LinearRelaxation(lower_slope, lower_intercept, upper_slope, upper_intercept)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        bounds = inputs[0]
        assert bounds is not None, f"{self.op_type} needs pre-activation bounds"
        A_in, bias = guarded_backward(A, self.relax(*bounds))
        return [A_in], bias


def guarded_backward(A: Tensor, relaxation: LinearRelaxation) -> tuple[Tensor, Tensor | None]:
    """:func:`~verifier.primitives.relaxed_backward` where some lines may be unusable (infinite or NaN).

    An unusable line is replaced by zero, and every row of ``A`` that would have used it (a positive
    coefficient on an unusable lower line, a negative one on an unusable upper line) gets the bias
    ``-inf``: its lower bound is vacuous, as it must be, instead of NaN.
    """
    parts = [relaxation.lower_slope, relaxation.lower_intercept, relaxation.upper_slope, relaxation.upper_intercept]
    lower_bad = ~torch.isfinite(parts[0])
    upper_bad = ~torch.isfinite(parts[2])
    if parts[1] is not None:
        lower_bad = lower_bad | ~torch.isfinite(parts[1])
    if parts[3] is not None:
        upper_bad = upper_bad | ~torch.isfinite(parts[3])
    if not (lower_bad.any() or upper_bad.any()):
        return relaxed_backward(A, relaxation)

    def clean(t: Tensor | None, bad: Tensor) -> Tensor | None:
        return None if t is None else torch.where(bad, torch.zeros_like(t), t)

    safe = LinearRelaxation(
        clean(parts[0], lower_bad), clean(parts[1], lower_bad), clean(parts[2], upper_bad), clean(parts[3], upper_bad)
    )
    A_in, bias = relaxed_backward(A, safe)
    spread = (lambda t: t.unsqueeze(1)) if lower_bad.dim() == A.dim() - 1 else (lambda t: t)
    hit = ((A > 0) & spread(lower_bad)) | ((A < 0) & spread(upper_bad))
    hit = hit.flatten(2).any(-1)
    if bias is None:
        bias = A.new_zeros(hit.shape)
    bias = torch.where(hit, -torch.inf, bias)
    return A_in, bias


def bisect_monotone(
    g: Function, target: Tensor, a: Tensor, b: Tensor, increasing: bool, iterations: int = 60
) -> Tensor:
    """A point of ``[a, b]`` where the monotone function ``g`` equals ``target``, by bisection.

    Where ``target`` is outside ``g``'s range on ``[a, b]`` the nearer end is returned (which is then
    the extreme point on that piece, so still a valid candidate for :func:`exact_intercept`).
    """
    lo, hi = a.clone(), b.clone()
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = g(mid) < target if increasing else g(mid) > target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return (lo + hi) / 2
