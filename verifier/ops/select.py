"""Piecewise-constant and constant functions: comparisons, ``Where``, casts to integers and booleans,
constant outputs, and ``Pow`` with a per-element exponent.

Booleans are represented as 0.0 / 1.0 in the engine's floating type.

* ``Compare`` (ONNX ``Equal``, ``Greater``, ``Less``, ``GreaterOrEqual``, ``LessOrEqual``) of two tensors,
  either of which may be a constant: ``1`` where the comparison holds. IBP: ``a > b`` is certainly true where
  ``l_a > u_b``, certainly false where ``u_a <= l_b``, else ``[0, 1]``; ``a == b`` is certainly true only
  where both are the same point, certainly false where the intervals are disjoint. CROWN: the output is
  piecewise constant, so the relaxation is the constant interval (exact wherever the comparison is decided
  on the box).
* ``Where(c, a, b)``: ``a`` where ``c`` else ``b`` (any of the three may be constant). IBP: the branch the
  condition decides, else the hull of both. CROWN: where ``c`` is decided the coefficients pass to that
  branch unchanged (exact); elsewhere the constant hull.
* ``Truncate`` (``Cast`` to an integer type): rounding toward zero, monotone; ``NonZero`` (``Cast`` to bool):
  ``x != 0``. IBP: the exact range; CROWN: that range as constant bounds.
* ``ConstantOutput``: an output that does not depend on the input (``Pow(x, 0)``, a model computing a
  constant such as ``Shape``): exact, affine with zero linear part.
* ``PowerPerElement``: ``x ** E`` with a constant exponent tensor ``E`` holding several values; per value the
  rules of :class:`verifier.ops.smooth.Power` (``E = 0``: the constant 1, ``E = 1``: the identity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from onnx import TensorProto
from torch import Tensor

from verifier.ops.base import ElementwiseNonlinear, Interval, Operator, unbroadcast
from verifier.ops.registry import SourceNode, onnx_op
from verifier.primitives import LinearRelaxation

INTEGER_ELEMENT_TYPES = frozenset({
    TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
    TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64,
})

_COMPARISONS = {
    "Equal": torch.eq,
    "Greater": torch.gt,
    "Less": torch.lt,
    "GreaterOrEqual": torch.ge,
    "LessOrEqual": torch.le,
}


def _attach(y: Tensor, *xs: Tensor, slope: float = 0.0) -> Tensor:
    """``y`` carrying a gradient path to the inputs ``xs`` that require one (``slope`` times the sum of their
    gradients, a straight-through surrogate), so attacks by gradient descent run through piecewise-constant
    operators; the value is unchanged."""
    for x in xs:
        if x.requires_grad:
            y = y + slope * (x - x.detach()).expand_as(y) if x.shape == y.shape else y + 0 * (x - x.detach()).sum()
    return y


def _constant_backward(A: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """``sum(A+ * lower + A- * upper)`` over the neuron axes: the lower bound of ``A . y`` for ``y`` in the box."""
    lower, upper = lower.unsqueeze(1), upper.unsqueeze(1)
    # an infinite end with a zero coefficient contributes nothing (not NaN)
    low = torch.where(A > 0, A * lower, torch.zeros((), dtype=A.dtype))
    high = torch.where(A < 0, A * upper, torch.zeros((), dtype=A.dtype))
    return (low + high).flatten(2).sum(-1)


def _lift(t: Tensor, rank: int) -> Tensor:
    """A ``[B, *s]`` tensor with ones inserted after the batch axis up to ``rank`` sample axes, so that numpy
    broadcasting of the sample shapes aligns trailing axes as ONNX does."""
    missing = rank - (t.dim() - 1)
    return t.reshape(t.shape[0], *([1] * missing), *t.shape[1:]) if missing > 0 else t


class _Slots:
    """Which arguments of a multi-input operator are variables (read from the node's inputs, in order) and
    which are constants baked into the operator (stored without the batch axis)."""

    def __init__(self, constants: Sequence[Tensor | None], rank: int):
        self.constants = list(constants)
        self.rank = rank

    def values(self, variables: Sequence[Tensor]) -> list[Tensor]:
        it = iter(variables)
        return [_lift(next(it) if c is None else c.unsqueeze(0), self.rank) for c in self.constants]

    def intervals(self, variables: Sequence[Interval | None]) -> list[Interval]:
        it = iter(variables)
        out = []
        for c in self.constants:
            if c is None:
                lower, upper = next(it)
                out.append((_lift(lower, self.rank), _lift(upper, self.rank)))
            else:
                value = _lift(c.unsqueeze(0), self.rank)
                out.append((value, value))
        return out

    def tensors(self) -> dict[str, Tensor]:
        return {f"constant{i}": c for i, c in enumerate(self.constants) if c is not None}

    def to(self, dtype, device) -> None:
        self.constants = [None if c is None else c.to(device=device if device is not None else c.device,
                                                       dtype=dtype if dtype is not None and c.is_floating_point()
                                                       else c.dtype) for c in self.constants]


class _MultiInput(Operator):
    """Shared housekeeping of operators whose arguments may each be a variable or a constant."""

    needs_input_bounds = True
    slots: _Slots
    out_shape: tuple[int, ...]
    shapes: list[tuple[int, ...]]  # shapes of the variable inputs, in order

    def constants(self) -> dict[str, Tensor]:
        return self.slots.tensors()

    def to(self, dtype: torch.dtype | None = None, device: torch.device | None = None) -> Operator:
        self.slots.to(dtype, device)
        return self

    def _full(self, t: Tensor, batch: int) -> Tensor:
        return t.expand(batch, *self.out_shape)

    def _to_inputs(self, A_args: Sequence[Tensor | None]) -> list[Tensor | None]:
        """The coefficients of the variable arguments, summed down to their shapes (``None`` for constants)."""
        out, shapes = [], iter(self.shapes)
        for A_arg, c in zip(A_args, self.slots.constants):
            if c is None:
                shape = next(shapes)
                out.append(None if A_arg is None else unbroadcast(A_arg, shape))
        return out


class Compare(_MultiInput):
    """ONNX comparison of two tensors (see the module docstring)."""

    def __init__(self, kind: str, constants: Sequence[Tensor | None], shapes: Sequence[Sequence[int]],
                 out_shape: Sequence[int]):
        self.kind = kind
        self.op_type = kind
        self.out_shape = tuple(out_shape)
        self.slots = _Slots(constants, len(self.out_shape))
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, *variables: Tensor) -> Tensor:
        a, b = self.slots.values(variables)
        dtype = variables[0].dtype
        return _attach(self._full(_COMPARISONS[self.kind](a, b).to(dtype), variables[0].shape[0]), *variables)

    def interval(self, *variables: Interval) -> Interval:
        (la, ua), (lb, ub) = self.slots.intervals(variables)
        if self.kind == "Equal":
            certain = (la == ua) & (lb == ub) & (la == lb)
            possible = (la <= ub) & (lb <= ua)
        elif self.kind == "Greater":
            certain, possible = la > ub, ua > lb
        elif self.kind == "GreaterOrEqual":
            certain, possible = la >= ub, ua >= lb
        elif self.kind == "Less":
            certain, possible = ua < lb, la < ub
        else:  # LessOrEqual
            certain, possible = ua <= lb, la <= ub
        dtype, batch = variables[0][0].dtype, variables[0][0].shape[0]
        return self._full(certain.to(dtype), batch), self._full(possible.to(dtype), batch)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        lower, upper = self.interval(*inputs)
        return [None] * len(self.shapes), _constant_backward(A, lower, upper)


class Where(_MultiInput):
    """ONNX ``Where(condition, a, b)`` (see the module docstring)."""

    op_type = "Where"

    def __init__(self, constants: Sequence[Tensor | None], shapes: Sequence[Sequence[int]],
                 out_shape: Sequence[int]):
        self.out_shape = tuple(out_shape)
        self.slots = _Slots(constants, len(self.out_shape))
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, *variables: Tensor) -> Tensor:
        c, a, b = self.slots.values(variables)
        return _attach(self._full(torch.where(c > 0.5, a, b).to(variables[0].dtype), variables[0].shape[0]),
                       *variables)

    def _parts(self, inputs: Sequence[Interval]):
        (cl, cu), (la, ua), (lb, ub) = self.slots.intervals(inputs)
        batch = inputs[0][0].shape[0]
        full = lambda t: self._full(t, batch)  # noqa: E731
        return full(cl > 0.5), full(cu < 0.5), full(la), full(ua), full(lb), full(ub)

    def interval(self, *variables: Interval) -> Interval:
        true, false, la, ua, lb, ub = self._parts(variables)
        lower = torch.where(true, la, torch.where(false, lb, torch.minimum(la, lb)))
        upper = torch.where(true, ua, torch.where(false, ub, torch.maximum(ua, ub)))
        return lower, upper

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        true, false, la, ua, lb, ub = self._parts(inputs)
        true, false = true.unsqueeze(1), false.unsqueeze(1)
        zero = torch.zeros((), dtype=A.dtype)
        A_a, A_b = torch.where(true, A, zero), torch.where(false, A, zero)
        undecided = torch.where(true | false, zero, A)
        bias = _constant_backward(undecided, torch.minimum(la, lb), torch.maximum(ua, ub))
        A_args: list[Tensor | None] = [None, A_a, A_b]
        for i, value in ((1, la), (2, lb)):
            if self.slots.constants[i] is not None:  # a constant branch: its value goes into the bias
                bias = bias + (A_args[i] * value.unsqueeze(1)).flatten(2).sum(-1)
                A_args[i] = None
        return self._to_inputs(A_args), bias


class Truncate(ElementwiseNonlinear):
    """ONNX ``Cast`` to an integer type: round toward zero (see the module docstring)."""

    op_type = "Truncate"

    def forward(self, x: Tensor) -> Tensor:
        return _attach(torch.trunc(x), x, slope=1.0)

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        zero = torch.zeros_like(lower)
        return LinearRelaxation(zero, torch.trunc(lower), zero, torch.trunc(upper))


class NonZero(ElementwiseNonlinear):
    """ONNX ``Cast`` to bool: ``1`` where ``x != 0`` (see the module docstring)."""

    op_type = "NonZero"

    def forward(self, x: Tensor) -> Tensor:
        return _attach((x != 0).to(x.dtype), x)

    def interval(self, *inputs: Interval) -> Interval:
        (lower, upper), = inputs
        certain = (lower > 0) | (upper < 0)
        possible = (lower != 0) | (upper != 0)
        return certain.to(lower.dtype), possible.to(lower.dtype)

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        low, high = self.interval((lower, upper))
        zero = torch.zeros_like(lower)
        return LinearRelaxation(zero, low, zero, high)


class ConstantOutput(Operator):
    """``y = value`` whatever the input (see the module docstring)."""

    op_type = "ConstantOutput"
    is_affine = True

    def __init__(self, value: Tensor, input_shape: Sequence[int]):
        self.value = value
        self.input_shape = tuple(input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return _attach(self.value.to(x.dtype).unsqueeze(0).expand(x.shape[0], *self.value.shape), x)

    def linear_part(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], *self.value.shape)

    abs_linear_part = linear_part

    def interval(self, bounds: Interval) -> Interval:
        lower = bounds[0]
        value = self.value.to(lower.dtype).unsqueeze(0).expand(lower.shape[0], *self.value.shape)
        return value, value

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        return [None], (A * self.value.to(A.dtype)).flatten(2).sum(-1)


class PowerPerElement(ElementwiseNonlinear):
    """``x ** E`` for a constant exponent tensor with several distinct values (see the module docstring)."""

    op_type = "PowElementwise"

    def __init__(self, exponent: Tensor):
        from verifier.ops.smooth import Power

        self.exponent = exponent
        self.parts = []
        for p in sorted(set(np.asarray(exponent.double()).reshape(-1).tolist())):
            op = None if p in (0.0, 1.0) else Power(p)
            self.parts.append((p, op))

    def forward(self, x: Tensor) -> Tensor:
        return torch.pow(x, self.exponent.to(x.dtype))

    def _masks(self, like: Tensor):
        exponent = self.exponent.to(like.dtype).expand_as(like)
        for p, op in self.parts:
            yield exponent == p, p, op

    def interval(self, *inputs: Interval) -> Interval:
        (lower, upper), = inputs
        out_lower, out_upper = torch.zeros_like(lower), torch.zeros_like(upper)
        for mask, p, op in self._masks(lower):
            if p == 0.0:
                low = high = torch.ones_like(lower)
            elif p == 1.0:
                low, high = lower, upper
            else:
                low, high = op.interval((lower, upper))
            out_lower, out_upper = torch.where(mask, low, out_lower), torch.where(mask, high, out_upper)
        return out_lower, out_upper

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        zero, one = torch.zeros_like(lower), torch.ones_like(lower)
        parts = [zero.clone(), zero.clone(), zero.clone(), zero.clone()]
        for mask, p, op in self._masks(lower):
            if p == 0.0:
                piece = (zero, one, zero, one)
            elif p == 1.0:
                piece = (one, zero, one, zero)
            else:
                r = op.relax(lower, upper)
                piece = (r.lower_slope, zero if r.lower_intercept is None else r.lower_intercept,
                         r.upper_slope, zero if r.upper_intercept is None else r.upper_intercept)
            parts = [torch.where(mask, new, old) for new, old in zip(piece, parts)]
        return LinearRelaxation(*parts)

    def describe(self) -> str:
        return "Pow (per element)"


# -- converters -------------------------------------------------------------------------------------------
def _arguments(node: SourceNode, count: int) -> tuple[list[Tensor | None], list[tuple[int, ...]]]:
    constants, shapes = [], []
    for i in range(count):
        if node.is_const(i):
            constants.append(node.tensor(np.asarray(node.const(i), dtype=np.float64)))
        else:
            constants.append(None)
            shapes.append(node.shape(i))
    return constants, shapes


@onnx_op("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
def _onnx_compare(node: SourceNode) -> Compare:
    constants, shapes = _arguments(node, 2)
    return Compare(node.op_type, constants, shapes, _broadcast_shape(node, 2))


@onnx_op("Where")
def _onnx_where(node: SourceNode) -> Where:
    constants, shapes = _arguments(node, 3)
    return Where(constants, shapes, _broadcast_shape(node, 3))


def _broadcast_shape(node: SourceNode, count: int) -> tuple[int, ...]:
    shapes = [tuple(np.shape(node.const(i))) if node.is_const(i) else node.shape(i) for i in range(count)]
    return tuple(int(d) for d in np.broadcast_shapes(*shapes))


def power_per_element(node: SourceNode, exponent: np.ndarray):
    """The operator of ``Pow(x, E)`` for a constant ``E`` that :class:`verifier.ops.smooth.Power` cannot take:
    every exponent 0 (the constant 1), several distinct exponents, or an ``E`` that broadcasts ``x`` to a
    larger shape; ``None`` for one exponent applied elementwise (the caller's case)."""
    from verifier.ops.indexing import Expand

    shape = tuple(node.shape(0))
    out_shape = tuple(int(d) for d in np.broadcast_shapes(shape, exponent.shape))
    if exponent.size == 1 and out_shape == shape and float(exponent.reshape(-1)[0]) != 0.0:
        return None
    if np.all(exponent == 0):
        return ConstantOutput(node.tensor(np.ones(out_shape)), shape)
    full = np.broadcast_to(exponent, out_shape)
    op = PowerPerElement(node.tensor(np.ascontiguousarray(full)))
    return [Expand(shape, out_shape), op] if out_shape != shape else op
