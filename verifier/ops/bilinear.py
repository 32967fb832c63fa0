"""Products of two variables: Mul, Div and MatMul of two variable tensors (attention blocks, gating).

For ``z = x y`` with ``x in [l_x, u_x]`` and ``y in [l_y, u_y]`` the **McCormick envelope** gives

    lower plane  z >= l_y x + l_x y - l_x l_y      (since (x - l_x)(y - l_y) >= 0)
    upper plane  z <= u_y x + l_x y - l_x u_y      (since (x - l_x)(u_y - y) >= 0)

(the other two McCormick planes, through ``(u_x, u_y)`` and ``(u_x, l_y)``, are as tight at the centre
of the box; the pair above is the one CROWN implementations use). The backward step picks the lower
plane for non-negative coefficients and the upper one for negative coefficients. IBP takes the
smallest and largest of the four corner products.

* ``MatMul`` of two variables applies the envelope to every product ``x_ij y_jk`` of the sum
  ``z_ik = sum_j x_ij y_jk``; the coefficients stay matrix products (``A+ L_y^T + A- U_y^T`` on ``x``,
  ``L_x^T A`` on ``y``), so no ``n x d x m`` tensor is built in the backward pass.
* ``Div`` of two variables is ``x * r`` with ``r = 1 / y``: the envelope of the product with the exact
  range of ``r``, then the reciprocal's relaxation (:class:`verifier.ops.smooth.Reciprocal`). A
  denominator whose box contains 0 makes the bounds infinite.
* ``x * x`` (one tensor read twice) is not a product of independent factors: it is converted to the
  convex square ``Pow(x, 2)`` instead, which is much tighter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from verifier.ops.base import Interval, Operator, unbroadcast
from verifier.ops.envelope import guarded_backward
from verifier.ops.smooth import Power, Reciprocal


def align(t: Tensor, rank: int) -> Tensor:
    """``[B, *shape]`` viewed with per-sample rank ``rank`` (numpy broadcasting adds leading unit axes,
    which go after the batch axis here)."""
    missing = rank - (t.dim() - 1)
    return t.reshape(t.shape[0], *([1] * missing), *t.shape[1:]) if missing > 0 else t


def to_output(t: Tensor, out_shape: Sequence[int]) -> Tensor:
    """``[B, *shape]`` broadcast to ``[B, *out_shape]``."""
    return align(t, len(out_shape)).expand(t.shape[0], *out_shape)


def product_interval(first: Interval, second: Interval) -> Interval:
    """Elementwise bounds of ``x * y`` for ``x``, ``y`` in boxes (the extreme corner products)."""
    rank = max(t.dim() for t in (*first, *second)) - 1
    (lx, ux), (ly, uy) = ((align(a, rank), align(b, rank)) for a, b in (first, second))
    corners = torch.stack(torch.broadcast_tensors(lx * ly, lx * uy, ux * ly, ux * uy))
    corners = torch.nan_to_num(corners, nan=0.0)  # 0 * inf: the factor is exactly 0 there
    return corners.amin(0), corners.amax(0)


def mccormick_backward(
    A: Tensor, first: Interval, second: Interval
) -> tuple[Tensor, Tensor, Tensor]:
    """Coefficients on ``x`` and ``y`` and the bias of a lower bound of ``A . (x * y)``, elementwise
    McCormick planes; ``A`` is ``[b, K, *out]``, the bounds broadcast to ``[B, *out]``."""
    out_shape = A.shape[2:]
    lx, ly, uy = (to_output(t, out_shape).unsqueeze(1) for t in (first[0], second[0], second[1]))
    A_pos, A_neg = A.clamp(min=0), A.clamp(max=0)
    A_x = A_pos * ly + A_neg * uy
    A_y = A * lx
    bias = -(A_pos * (lx * ly) + A_neg * (lx * uy)).flatten(2).sum(-1)
    return A_x, A_y, bias


class MulVariables(Operator):
    """``z = x * y`` of two variable tensors (numpy broadcasting)."""

    op_type = "MulVariables"
    needs_input_bounds = True

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        rank = max(len(s) for s in self.shapes)
        return align(x, rank) * align(y, rank)

    def interval(self, first: Interval, second: Interval) -> Interval:
        return product_interval(first, second)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        A_x, A_y, bias = mccormick_backward(A, inputs[0], inputs[1])
        return [unbroadcast(A_x, self.shapes[0]), unbroadcast(A_y, self.shapes[1])], bias


class SelfProduct(Operator):
    """``x * x`` written as a product of one tensor with itself: the convex square ``Pow(x, 2)``
    (chord above, tangent below) instead of a McCormick product; the node keeps both (equal) inputs."""

    op_type = "SelfProduct"
    needs_input_bounds = True

    def __init__(self) -> None:
        self.square = Power(2.0)

    def forward(self, x: Tensor, _: Tensor) -> Tensor:
        return self.square.forward(x)

    def interval(self, first: Interval, _: Interval) -> Interval:
        return self.square.interval(first)

    def relax(self, lower: Tensor, upper: Tensor):
        return self.square.relax(lower, upper)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        (A_in,), bias = self.square.backward(A, inputs[:1])
        return [A_in, None], bias


class DivVariables(Operator):
    """``z = x / y`` of two variable tensors, as ``x * (1 / y)``."""

    op_type = "DivVariables"
    needs_input_bounds = True

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = [tuple(s) for s in shapes]
        self.reciprocal = Reciprocal()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        rank = max(len(s) for s in self.shapes)
        return align(x, rank) / align(y, rank)

    def interval(self, first: Interval, second: Interval) -> Interval:
        r = self.reciprocal.interval(second)
        lower, upper = product_interval(first, r)
        pole = align((second[0] <= 0) & (second[1] >= 0), lower.dim() - 1)
        return torch.where(pole, -torch.inf, lower), torch.where(pole, torch.inf, upper)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        first, second = inputs
        pole = (second[0] <= 0) & (second[1] >= 0)
        # on a box across 0 the product bounds are meaningless; use a harmless box and void the rows below
        safe = (torch.where(pole, 1.0, second[0]), torch.where(pole, 2.0, second[1]))
        r_lower, r_upper = self.reciprocal.interval(safe)
        A_x, A_r, bias = mccormick_backward(A, first, (r_lower, r_upper))
        out_shape = A.shape[2:]
        A_r = unbroadcast(A_r, self.shapes[1])
        A_y, bias_r = guarded_backward(A_r, self.reciprocal.relax(*safe))
        if bias_r is not None:
            bias = bias + bias_r
        hit = ((A != 0) & to_output(pole, out_shape).unsqueeze(1)).flatten(2).any(-1)
        bias = torch.where(hit, -torch.inf, bias)
        return [unbroadcast(A_x, self.shapes[0]), A_y], bias


class MatMulVariables(Operator):
    """``z = x @ y`` of two variable tensors (``torch.matmul`` semantics, both at least 2-D)."""

    op_type = "MatMulVariables"
    needs_input_bounds = True

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        rank = max(len(s) for s in self.shapes)
        return torch.matmul(align(x, rank), align(y, rank))

    def interval(self, first: Interval, second: Interval) -> Interval:
        rank = max(len(s) for s in self.shapes)
        first, second = ((align(a, rank), align(b, rank)) for a, b in (first, second))
        # exact bounds of each product x_ij y_jk, summed over j; chunked over rows i to bound memory
        lower_parts, upper_parts = [], []
        rows = first[0].shape[-2]
        step = max(1, 2**22 // max(1, first[0][..., :1, :].numel() * second[0].shape[-1]))
        for i in range(0, rows, step):
            x_part = tuple(t[..., i : i + step, :].unsqueeze(-1) for t in first)
            lower, upper = product_interval(x_part, tuple(t.unsqueeze(-3) for t in second))
            lower_parts.append(lower.sum(-2))
            upper_parts.append(upper.sum(-2))
        return torch.cat(lower_parts, -2), torch.cat(upper_parts, -2)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        rank = max(len(s) for s in self.shapes)
        (lx, _), (ly, uy) = ((align(a, rank).unsqueeze(1), align(b, rank).unsqueeze(1)) for a, b in inputs)
        A_pos, A_neg = A.clamp(min=0), A.clamp(max=0)
        A_x = torch.matmul(A_pos, ly.transpose(-1, -2)) + torch.matmul(A_neg, uy.transpose(-1, -2))
        A_y = torch.matmul(lx.transpose(-1, -2), A)
        bias = -(A_pos * torch.matmul(lx, ly) + A_neg * torch.matmul(lx, uy)).flatten(2).sum(-1)
        return [unbroadcast(A_x, self.shapes[0]), unbroadcast(A_y, self.shapes[1])], bias
