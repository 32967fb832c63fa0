"""Softmax and LogSoftmax, as a chain of operators the engine already bounds.

``softmax(x)_i = 1 / sum_j exp(x_j - x_i)``: the converter emits

    D = PairwiseDifference(x)     D[..., i, j] = x_j - x_i              (linear, exact)
    E = Exp(D)                                                         (convex: chord / tangent)
    S = ReduceSum_j(E)            S_i = sum_j exp(x_j - x_i) >= 1      (linear, exact)
    Y = Reciprocal(S)                                                  (convex on S > 0)

This is the "exponential-reciprocal" form of softmax (studied by Wei et al. 2023, "Convex Bounds on
the Softmax Function"). Unlike ``exp(x_i) * (1 / sum_j exp(x_j))`` (Shi et al. 2020) it needs no
McCormick product of two relaxed factors, and since ``D`` and ``S`` are tensors of the graph, CROWN
bounds the differences ``x_j - x_i`` directly (with their cancellation through the network) before
relaxing ``exp``. ``D_ii = 0`` exactly, so ``S >= 1`` and ``0 < Y <= 1`` by IBP.
``log_softmax(x)_i = -log(S_i) = -LSE_j(D_ij)`` uses :class:`LogSumExp` on ``D`` instead of ``exp`` and
``log``, so that wide boxes do not overflow ``S``.

The chain costs a tensor ``n`` times the size of the input (``n`` the softmax axis length): fine for
classifier outputs and attention maps over short sequences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.ops.base import Interval, Operator
from verifier.ops.elementwise import Affine
from verifier.ops.pooling import ReduceSum
from verifier.ops.registry import SourceNode, normalize_axis, onnx_op, torch_op
from verifier.ops.shape import Reshape
from verifier.ops.smooth import Exp, Reciprocal


class PairwiseDifference(Operator):
    """``D[..., i, ..., j] = x[..., j, ...] - x[..., i, ...]`` along ``axis`` (``i`` stays at ``axis``, ``j`` is
    a new last axis). Linear: IBP is ``[l_j - u_i, u_j - l_i]`` (0 on the diagonal), CROWN is exact."""

    op_type = "PairwiseDifference"
    is_affine = True

    def __init__(self, axis: int, input_shape: Sequence[int]):
        self.axis = axis
        self.input_shape = tuple(input_shape)

    def _j(self, x: Tensor) -> Tensor:
        return x.movedim(self.axis + 1, -1).unsqueeze(self.axis + 1)

    def forward(self, x: Tensor) -> Tensor:
        return self._j(x) - x.unsqueeze(-1)

    linear_part = forward

    def abs_linear_part(self, x: Tensor) -> Tensor:
        # |coefficients| of x_j - x_i; on the diagonal the two cancel exactly
        return torch.where(self._diagonal(x), 0.0, self._j(x) + x.unsqueeze(-1))

    def _diagonal(self, like: Tensor) -> Tensor:
        """Mask of the ``i == j`` entries, broadcastable against the output, on the device of ``like``."""
        n = self.input_shape[self.axis]
        eye = torch.eye(n, dtype=torch.bool, device=like.device)
        return eye.reshape(n, *[1] * (len(self.input_shape) - self.axis - 1), n)

    def interval(self, bounds: Interval) -> Interval:
        lower, upper = bounds
        diagonal = self._diagonal(lower)
        out_lower = torch.where(diagonal, 0.0, self._j(lower) - upper.unsqueeze(-1))
        out_upper = torch.where(diagonal, 0.0, self._j(upper) - lower.unsqueeze(-1))
        return out_lower, out_upper

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        to_j = A.sum(dim=self.axis + 2).movedim(-1, self.axis + 2)
        return [to_j - A.sum(-1)], None

    def describe(self) -> str:
        return f"PairwiseDifference axis={self.axis}"


class LogSumExp(Operator):
    """``y = log sum_j exp(x_j)`` over the last axis: convex, increasing, and submodular.

    IBP: ``[LSE(l), LSE(u)]`` (computed stably). Relaxation: below, the tangent plane at the box
    centre, ``LSE(c) + softmax(c) . (x - c)`` (valid everywhere by convexity); above, the better at the
    centre of the constant ``LSE(u)`` and the plane ``LSE(l) + sum_j a_j (x_j - l_j)`` with
    ``a_j = (LSE(l + (u_j - l_j) e_j) - LSE(l)) / (u_j - l_j)``. The plane is sound: submodularity
    (``d^2 LSE / dx_i dx_j <= 0``) makes the increase from ``l`` to any vertex at most the sum of the single
    coordinate increases, so the plane is above LSE at every vertex, hence on the box by convexity.
    """

    op_type = "LogSumExp"
    needs_input_bounds = True

    def forward(self, x: Tensor) -> Tensor:
        return torch.logsumexp(x, -1)

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def relax(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Lower plane (weights, bias) and upper plane (weights, bias); weights over the last axis."""
        dtype = lower.dtype
        lower, upper = lower.double(), upper.double()
        center = (lower + upper) / 2
        lower_weights = torch.softmax(center, -1)
        lower_bias = torch.logsumexp(center, -1) - (lower_weights * center).sum(-1)
        base = torch.logsumexp(lower, -1)
        width = upper - lower
        n = lower.shape[-1]
        raised = lower.unsqueeze(-2) + torch.diag_embed(width)  # row j: l with coordinate j at u_j
        gain = torch.logsumexp(raised, -1) - base.unsqueeze(-1)
        a = torch.where(width > 0, gain / torch.where(width > 0, width, 1.0), 0.0).clamp(0, 1)
        plane_bias = base - (a * lower).sum(-1)
        top = torch.logsumexp(upper, -1)
        use_plane = plane_bias + (a * center).sum(-1) < top
        upper_weights = torch.where(use_plane.unsqueeze(-1), a, 0.0)
        upper_bias = torch.where(use_plane, plane_bias, top)
        eps = 4 * torch.finfo(dtype).eps * (1 + n)  # rounding of the float64 planes cast to the engine type
        lower_bias = lower_bias - eps * (1 + lower_bias.abs() + (lower_weights * center).abs().sum(-1))
        upper_bias = upper_bias + eps * (1 + upper_bias.abs() + (upper_weights * lower).abs().sum(-1))
        return lower_weights.to(dtype), lower_bias.to(dtype), upper_weights.to(dtype), upper_bias.to(dtype)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        lower_weights, lower_bias, upper_weights, upper_bias = self.relax(*inputs[0])
        A_pos, A_neg = A.clamp(min=0), A.clamp(max=0)
        A_in = A_pos.unsqueeze(-1) * lower_weights.unsqueeze(1) + A_neg.unsqueeze(-1) * upper_weights.unsqueeze(1)
        bias = (A_pos * lower_bias.unsqueeze(1) + A_neg * upper_bias.unsqueeze(1)).flatten(2).sum(-1)
        return [A_in], bias


def softmax_chain(axis: int, shape: Sequence[int], dtype: torch.dtype, log: bool = False) -> list[Operator]:
    """The operators of softmax (or log-softmax) along per-sample ``axis`` of a tensor of ``shape``."""
    shape = tuple(shape)
    diff = PairwiseDifference(axis, shape)
    total = ReduceSum([len(shape)], False, 1.0, (*shape, shape[axis]))
    if log:
        return [diff, LogSumExp(), Affine(torch.tensor(-1.0, dtype=dtype), None, shape)]
    return [diff, Exp(), total, Reciprocal()]


def _softmax(node: SourceNode, axis: int | None, log: bool) -> list[Operator]:
    shape = node.shape(0)
    if node.opset < 13:
        # opset < 13: softmax over the input coerced to 2-D at `axis` (default 1)
        axis = normalize_axis(1 if axis is None else axis, len(shape))
        flat = (*shape[:axis], math.prod(shape[axis:]))
        if flat != tuple(shape):
            chain = softmax_chain(len(flat) - 1, flat, node.dtype, log)
            return [Reshape(shape, flat), *chain, Reshape(flat, shape)]
        return softmax_chain(axis, shape, node.dtype, log)
    axis = normalize_axis(-1 if axis is None else axis, len(shape))
    return softmax_chain(axis, shape, node.dtype, log)


@onnx_op("Softmax", "LogSoftmax")
def _onnx_softmax(node: SourceNode) -> list[Operator]:
    return _softmax(node, node.attr("axis"), node.op_type == "LogSoftmax")


@torch_op(torch.nn.Softmax, torch.nn.LogSoftmax, torch.softmax, torch.log_softmax, F.softmax, F.log_softmax,
          "softmax", "log_softmax")
def _torch_softmax(node: SourceNode) -> list[Operator]:
    log = "log" in node.op_type.lower()
    if node.module is not None:
        dim = node.module.dim
    else:
        args, kwargs = node.attr("args", []), node.attr("kwargs", {})
        dim = args[0] if args else kwargs.get("dim")
    if dim is None:
        raise node.unsupported("softmax without an explicit dim")
    shape = node.shape(0)
    return softmax_chain(normalize_axis(dim, len(shape)), shape, node.dtype, log)
