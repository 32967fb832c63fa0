"""Floating-point rounding: ONNX ``Cast`` to a floating type, and the rounding-error envelope of a node.

* ``RoundToType``: ``y = round(x)`` to the nearest value of a floating type (float16, bfloat16, float32,
  float64; ties to even, overflow to +-inf, as onnxruntime's ``Cast``). The engine keeps its own dtype; a
  cast to a type at least as precise as it is the identity. IBP: rounding is monotone, so
  ``[round(l), round(u)]`` is the exact range. CROWN: ``x - e <= y <= x + e`` with
  ``e = u_T max(|l|, |u|) + s_T`` (``u_T`` the unit roundoff of the target type, ``s_T`` its smallest
  subnormal, which covers rounding in the subnormal range); infinite where the box overflows the type.
* ``Roundoff``: ``y = x + r`` with ``|r| <= eps`` elementwise, ``eps`` a constant: the rounding error of
  executing the ONNX node whose exact result is ``x`` in its floating type (the envelope that
  :mod:`verifier.frontend.roundoff` puts after each node of a network analysed in floating-point semantics).
  Concrete forward: the identity (the engine runs the exact function). IBP: ``[l - eps, u + eps]``.
  CROWN: ``x - eps <= y <= x + eps``, without input bounds (``RoundedCast`` is the same for a cast whose
  error was bounded once over a known box).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from onnx import TensorProto
from torch import Tensor

from verifier.ops.base import ElementwiseNonlinear, Interval, Operator
from verifier.ops.registry import SourceNode, onnx_op
from verifier.primitives import LinearRelaxation

#: ONNX element types that are floating point, as torch dtypes
FLOAT_ELEMENT_TYPES = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
}


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the spacing of the type's numbers at 1: the largest relative error of one rounding to nearest."""
    return torch.finfo(dtype).eps / 2


def rounding_error(magnitude: Tensor, dtype: torch.dtype) -> Tensor:
    """Largest error of rounding any real of absolute value at most ``magnitude`` to ``dtype`` (nearest):
    ``u magnitude + smallest subnormal``; infinite beyond the type's largest finite number (overflow)."""
    info = torch.finfo(dtype)
    error = unit_roundoff(dtype) * magnitude + info.smallest_normal * info.eps
    return torch.where(magnitude > info.max, torch.full_like(magnitude, float("inf")), error)


def _exact_everywhere(lower: Tensor) -> Tensor:
    return torch.ones_like(lower, dtype=torch.bool)


class RoundToType(ElementwiseNonlinear):
    """ONNX ``Cast`` to a floating type: round to nearest in ``target`` (see the module docstring)."""

    op_type = "RoundToType"

    def __init__(self, target: torch.dtype):
        self.target = target

    def _narrowing(self, dtype: torch.dtype) -> bool:
        return torch.finfo(self.target).eps > torch.finfo(dtype).eps or \
            torch.finfo(self.target).max < torch.finfo(dtype).max

    def forward(self, x: Tensor) -> Tensor:
        if not self._narrowing(x.dtype):
            return x
        return x.to(self.target).to(x.dtype)

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        ones = torch.ones_like(lower)
        if not self._narrowing(lower.dtype):
            return LinearRelaxation(ones, None, ones, None)
        error = rounding_error(torch.maximum(lower.abs(), upper.abs()).double(), self.target).to(lower.dtype)
        # the exact range bounds y too: where it is tighter than the band (a point box), use it
        low, high = self.forward(lower), self.forward(upper)
        flat = (high == low) & torch.isfinite(low)
        zero = torch.zeros_like(lower)
        return LinearRelaxation(torch.where(flat, zero, ones), torch.where(flat, low, -error),
                                torch.where(flat, zero, ones), torch.where(flat, high, error))

    def exact_relaxation(self, lower: Tensor, upper: Tensor) -> Tensor:
        return _exact_everywhere(lower)

    def describe(self) -> str:
        return f"Cast {str(self.target).replace('torch.', '')}"


class _BoundedError(Operator):
    """``y = round(x)`` with ``|y - x| <= error`` elementwise, ``error`` a constant: CROWN passes the coefficients
    through and pays ``|A| . error``; no input bounds needed (so every search, ReLU splitting included, can
    use it)."""

    error: Tensor

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        error = self.error.to(A.dtype)
        # an infinite error with a zero coefficient costs nothing (not NaN)
        cost = torch.where(A == 0, torch.zeros((), dtype=A.dtype), A.abs() * error)
        return [A], -cost.flatten(2).sum(-1)


class Roundoff(_BoundedError):
    """The rounding-error envelope ``y = x + r``, ``|r| <= eps`` (see the module docstring)."""

    op_type = "Roundoff"

    def __init__(self, eps: Tensor):
        self.error = eps

    def forward(self, x: Tensor) -> Tensor:
        return x

    def interval(self, *inputs: Interval) -> Interval:
        (lower, upper), = inputs
        return lower - self.error, upper + self.error

    def describe(self) -> str:
        return f"Roundoff (max {float(self.error.max()):.3g})"


class RoundedCast(_BoundedError):
    """``Cast`` to a narrower floating type with its rounding error bounded once, over a known box of inputs
    (:mod:`verifier.frontend.roundoff` puts it in place of :class:`RoundToType` in composed networks)."""

    op_type = "RoundedCast"

    def __init__(self, target: torch.dtype, error: Tensor):
        self.target = target
        self.error = error

    def forward(self, x: Tensor) -> Tensor:
        return RoundToType(self.target).forward(x)

    def interval(self, *inputs: Interval) -> Interval:
        (lower, upper), = inputs
        return self.forward(lower), self.forward(upper)

    def describe(self) -> str:
        return f"Cast {str(self.target).replace('torch.', '')} (max error {float(self.error.max()):.3g})"


@onnx_op("Cast")
def _onnx_cast(node: SourceNode):
    """``Cast`` of a variable: to a floating type (rounding), an integer type (truncation) or bool (``x != 0``)."""
    to = int(node.attr("to"))
    if to == TensorProto.DOUBLE:  # the engine computes in float32 or float64: widening is the identity
        return node.inputs[0]
    if to in FLOAT_ELEMENT_TYPES:
        return RoundToType(FLOAT_ELEMENT_TYPES[to])
    from verifier.ops.select import INTEGER_ELEMENT_TYPES, NonZero, Truncate

    if to in INTEGER_ELEMENT_TYPES:
        return Truncate()
    if to == TensorProto.BOOL:
        return NonZero()
    raise node.unsupported(f"cast to element type {TensorProto.DataType.Name(to)}")
