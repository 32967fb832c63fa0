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
``log_softmax(x)_i = -log(S_i)`` reuses the chain with ``Log`` and a negation.

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
from verifier.ops.smooth import Exp, Log, Reciprocal


class PairwiseDifference(Operator):
    """``D[..., i, ..., j] = x[..., j, ...] - x[..., i, ...]`` along ``axis`` (``i`` stays at ``axis``, ``j`` is
    a new last axis). Linear: IBP is ``[l_j - u_i, u_j - l_i]`` (0 on the diagonal), CROWN is exact."""

    op_type = "PairwiseDifference"

    def __init__(self, axis: int, input_shape: Sequence[int]):
        self.axis = axis
        self.input_shape = tuple(input_shape)

    def _j(self, x: Tensor) -> Tensor:
        return x.movedim(self.axis + 1, -1).unsqueeze(self.axis + 1)

    def forward(self, x: Tensor) -> Tensor:
        return self._j(x) - x.unsqueeze(-1)

    def interval(self, bounds: Interval) -> Interval:
        lower, upper = bounds
        n = self.input_shape[self.axis]
        diagonal = torch.eye(n, dtype=torch.bool).reshape(n, *[1] * (len(self.input_shape) - self.axis - 1), n)
        out_lower = torch.where(diagonal, 0.0, self._j(lower) - upper.unsqueeze(-1))
        out_upper = torch.where(diagonal, 0.0, self._j(upper) - lower.unsqueeze(-1))
        return out_lower, out_upper

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        to_j = A.sum(dim=self.axis + 2).movedim(-1, self.axis + 2)
        return [to_j - A.sum(-1)], None

    def describe(self) -> str:
        return f"PairwiseDifference axis={self.axis}"


def softmax_chain(axis: int, shape: Sequence[int], dtype: torch.dtype, log: bool = False) -> list[Operator]:
    """The operators of softmax (or log-softmax) along per-sample ``axis`` of a tensor of ``shape``."""
    shape = tuple(shape)
    diff = PairwiseDifference(axis, shape)
    total = ReduceSum([len(shape)], False, 1.0, (*shape, shape[axis]))
    if log:
        return [diff, Exp(), total, Log(), Affine(torch.tensor(-1.0, dtype=dtype), None, shape)]
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
