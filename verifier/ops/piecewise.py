"""Piecewise-linear functions: LeakyRelu, PRelu, Clip (HardTanh, ReLU6, Max/Min with a constant), Abs,
Sign; Max and Min of two variables.

Elementwise ones use the exact-intercept lines of :mod:`verifier.ops.envelope` with the kinks as
candidate points: with one kink inside ``[l, u]`` this is the CROWN/DeepPoly triangle relaxation, the
**chord** on the convex side and on the other side the line through the kink with the slope of one
piece, chosen by the area it leaves (LeakyRelu: slope 1 if ``u > -l`` else ``alpha``, the adaptive
ReLU rule; Abs: slope ``sign(l + u)``). With two kinks (Clip across both ends) the best of the
chord, piece slopes and midpoint slope with exact intercepts is taken. IBP is the exact range.

Sign jumps at 0; its lines must also hold for the one-sided limits ``-1`` and ``+1`` there, which are
added as candidate values; the extra slopes ``2/u`` and ``-2/l`` give the lines through ``(0, -1)`` and
``(0, 1)``. (Meant for output layers: a step has no useful gradient for attacks.)

``max(x, y)`` of two variables is ``y + relu(x - y)`` with ``x - y`` bounded by ``[l_x - u_y, u_x - l_y]``:
the upper line is the ReLU chord, ``s x + (1 - s) y - s (l_x - u_y)`` with ``s = u_z / (u_z - l_z)``, and
the lower line is ``x`` or ``y`` (the adaptive ReLU slope: the input with the larger box midpoint).
``min(x, y) = -max(-x, -y)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.ops.activation import relu_default_lower_slope, relu_upper_line
from verifier.ops.base import Interval, Operator, unbroadcast
from verifier.ops.bilinear import align, to_output
from verifier.ops.envelope import ExactInterceptNonlinear
from verifier.ops.registry import SourceNode, onnx_op, torch_op


class LeakyRelu(ExactInterceptNonlinear):
    """``x`` for ``x >= 0``, ``alpha x`` otherwise (``alpha`` a number, or a tensor for PRelu); kink at 0."""

    op_type = "LeakyRelu"

    def __init__(self, alpha: float | Tensor):
        self.alpha = alpha

    def _alpha(self, x: Tensor) -> float | Tensor:
        return self.alpha.to(x.dtype) if isinstance(self.alpha, Tensor) else self.alpha

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, self._alpha(x) * x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, torch.ones_like(x), self._alpha(x) * torch.ones_like(x))

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return [torch.zeros_like(lower)]

    def exact_relaxation(self, lower: Tensor, upper: Tensor) -> Tensor:
        return (lower >= 0) | (upper <= 0)


class Clip(ExactInterceptNonlinear):
    """``min(max(x, lo), hi)`` (ONNX Clip, HardTanh, ReLU6); ``lo``/``hi`` are tensors broadcast to ``x``
    or ``None`` (no bound). Kinks at ``lo`` and ``hi``."""

    op_type = "Clip"

    def __init__(self, lo: Tensor | None, hi: Tensor | None):
        self.lo = lo
        self.hi = hi

    def forward(self, x: Tensor) -> Tensor:
        lo = None if self.lo is None else self.lo.to(x.dtype)
        hi = None if self.hi is None else self.hi.to(x.dtype)
        if lo is not None:
            x = torch.maximum(x, lo)
        return x if hi is None else torch.minimum(x, hi)

    def derivative(self, x: Tensor) -> Tensor:
        inside = torch.ones_like(x, dtype=torch.bool)
        if self.lo is not None:
            inside = inside & (x > self.lo.to(x.dtype))
        if self.hi is not None:
            inside = inside & (x < self.hi.to(x.dtype))
        return inside.to(x.dtype)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return [bound.to(lower.dtype).expand_as(lower) for bound in (self.lo, self.hi) if bound is not None]

    def exact_relaxation(self, lower: Tensor, upper: Tensor) -> Tensor:
        exact = torch.ones_like(lower, dtype=torch.bool)
        for bound in (self.lo, self.hi):
            if bound is not None:
                bound = bound.to(lower.dtype)
                exact = exact & ((lower >= bound) | (upper <= bound))
        return exact

    def describe(self) -> str:
        return "Clip"


class Abs(ExactInterceptNonlinear):
    """``|x|``: convex, kink at 0."""

    op_type = "Abs"

    def forward(self, x: Tensor) -> Tensor:
        return torch.abs(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.sign(x)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return [torch.zeros_like(lower)]

    def exact_relaxation(self, lower: Tensor, upper: Tensor) -> Tensor:
        return (lower >= 0) | (upper <= 0)


class Sign(ExactInterceptNonlinear):
    """``sign(x)`` in ``{-1, 0, 1}`` (``sign(0) = 0``)."""

    op_type = "Sign"

    def forward(self, x: Tensor) -> Tensor:
        return torch.sign(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return [torch.zeros_like(lower)]

    def exact_relaxation(self, lower: Tensor, upper: Tensor) -> Tensor:
        return (lower > 0) | (upper < 0)

    def jump_limits(self, lower: Tensor, upper: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        zero = torch.zeros_like(lower)
        return [(zero, zero - 1, (lower < 0) & (upper >= 0)), (zero, zero + 1, (lower <= 0) & (upper > 0))]

    def candidate_slopes(self, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return super().candidate_slopes(lower, upper)[:1] + [torch.zeros_like(lower), 2 / upper, -2 / lower]


class MaxVariables(Operator):
    """``max(x, y)`` (or ``min`` with ``sign = -1``) of two variable tensors, numpy broadcasting."""

    op_type = "Max"
    needs_input_bounds = True
    sign = 1.0

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        rank = max(len(s) for s in self.shapes)
        x, y = align(x, rank), align(y, rank)
        return torch.maximum(x, y) if self.sign > 0 else torch.minimum(x, y)

    def interval(self, first: Interval, second: Interval) -> Interval:
        return self.forward(first[0], second[0]), self.forward(first[1], second[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        (lx, ux), (ly, uy) = inputs
        if self.sign < 0:  # min(x, y) = -max(-x, -y)
            A, (lx, ux), (ly, uy) = -A, (-ux, -lx), (-uy, -ly)
        out_shape = A.shape[2:]
        lz = to_output(align(lx, len(out_shape)) - align(uy, len(out_shape)), out_shape)
        uz = to_output(align(ux, len(out_shape)) - align(ly, len(out_shape)), out_shape)
        upper_slope, upper_intercept = relu_upper_line(lz, uz)
        lower_slope = relu_default_lower_slope(lz, uz)
        A_pos, A_neg = A.clamp(min=0), A.clamp(max=0)
        lower_slope, upper_slope = lower_slope.unsqueeze(1), upper_slope.unsqueeze(1)
        upper_intercept = upper_intercept.unsqueeze(1)
        A_x = A_pos * lower_slope + A_neg * upper_slope
        A_y = A - A_x  # the lines are y + s (x - y) + c: the y coefficient is 1 - s
        bias = (A_neg * upper_intercept).flatten(2).sum(-1)
        if self.sign < 0:
            A_x, A_y = -A_x, -A_y
        return [unbroadcast(A_x, self.shapes[0]), unbroadcast(A_y, self.shapes[1])], bias


class MinVariables(MaxVariables):
    """``min(x, y)`` of two variable tensors."""

    op_type = "Min"
    sign = -1.0


# -- converters -------------------------------------------------------------------------------------------
@onnx_op("LeakyRelu")
def _onnx_leaky_relu(node: SourceNode) -> LeakyRelu:
    return LeakyRelu(float(node.attr("alpha", 0.01)))


@onnx_op("PRelu")
def _onnx_prelu(node: SourceNode) -> LeakyRelu:
    slope = node.const(1)
    if slope is None or node.is_const(0):
        raise node.unsupported("only PRelu(variable, constant slope) is supported")
    shape = node.shape(0)
    try:
        fits = np.broadcast_shapes(shape, np.shape(slope)) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise node.unsupported(f"slope of shape {np.shape(slope)} does not broadcast to {shape}")
    return LeakyRelu(node.tensor(slope))


def _clip_bound(node: SourceNode, value) -> Tensor | None:
    if value is None:
        return None
    value = np.asarray(value, dtype=np.float64)
    shape = node.shapes[node.variable_inputs[0]]
    try:
        fits = np.broadcast_shapes(value.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise node.unsupported(f"a bound of shape {value.shape} does not broadcast to the input {shape}")
    return node.tensor(value)


@onnx_op("Clip")
def _onnx_clip(node: SourceNode) -> Clip:
    if any(node.has_input(i) and not node.is_const(i) for i in (1, 2)):
        raise node.unsupported("min and max must be constants")
    lo = node.const(1) if node.has_input(1) else node.attr("min")
    hi = node.const(2) if node.has_input(2) else node.attr("max")
    return Clip(_clip_bound(node, lo), _clip_bound(node, hi))


@onnx_op("Abs")
def _onnx_abs(node: SourceNode) -> Abs:
    return Abs()


@onnx_op("Sign")
def _onnx_sign(node: SourceNode) -> Sign:
    return Sign()


@onnx_op("Max", "Min")
def _onnx_max(node: SourceNode) -> Operator:
    """``Max``/``Min`` of two variables, or of one variable and constants (a Clip)."""
    variables = node.variable_inputs
    constants = [np.asarray(node.constants[name], dtype=np.float64) for name in node.inputs if name in node.constants]
    is_max = node.op_type in ("Max", "maximum", "max")
    if len(variables) == 2 and not constants:
        cls = MaxVariables if is_max else MinVariables
        return cls([node.shapes[variables[0]], node.shapes[variables[1]]])
    if len(variables) == 1:
        value = constants[0]
        for other in constants[1:]:
            value = np.maximum(value, other) if is_max else np.minimum(value, other)
        bound = _clip_bound(node, value) if constants else None
        index = node.inputs.index(variables[0])
        if bound is None:
            return node.inputs[index]
        return Clip(bound, None) if is_max else Clip(None, bound)
    raise node.unsupported(f"{node.op_type} of {len(variables)} variables and {len(constants)} constants")


@torch_op(torch.nn.LeakyReLU, F.leaky_relu)
def _torch_leaky_relu(node: SourceNode) -> LeakyRelu:
    if node.module is not None:
        return LeakyRelu(float(node.module.negative_slope))
    args = node.attr("args", [])
    return LeakyRelu(float(args[0] if args else node.attr("kwargs", {}).get("negative_slope", 0.01)))


@torch_op(torch.nn.Hardtanh, torch.nn.ReLU6, F.hardtanh, F.relu6)
def _torch_hardtanh(node: SourceNode) -> Clip:
    module = node.module
    if module is not None:
        lo, hi = module.min_val, module.max_val
    elif node.op_type == "relu6":
        lo, hi = 0.0, 6.0
    else:
        args, kwargs = node.attr("args", []), node.attr("kwargs", {})
        lo = args[0] if args else kwargs.get("min_val", -1.0)
        hi = args[1] if len(args) > 1 else kwargs.get("max_val", 1.0)
    return Clip(node.tensor(lo), node.tensor(hi))


@torch_op(torch.clamp, torch.clip, "clamp", "clip")
def _torch_clamp(node: SourceNode) -> Clip:
    args, kwargs = node.attr("args", []), node.attr("kwargs", {})
    lo = args[0] if args else kwargs.get("min")
    hi = args[1] if len(args) > 1 else kwargs.get("max")
    return Clip(_clip_bound(node, lo), _clip_bound(node, hi))


@torch_op(torch.abs, "abs")
def _torch_abs(node: SourceNode) -> Abs:
    return Abs()


@torch_op(torch.sign, "sign")
def _torch_sign(node: SourceNode) -> Sign:
    return Sign()


@torch_op(torch.maximum, torch.minimum, torch.max, torch.min, "maximum", "minimum", "max", "min")
def _torch_max(node: SourceNode) -> Operator:
    if len(node.inputs) != 2:
        raise node.unsupported("only the two-tensor form max(x, y) / min(x, y) is supported")
    return _onnx_max(node)
