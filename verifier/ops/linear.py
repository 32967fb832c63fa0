"""Dense affine layers: ONNX Gemm and MatMul with a constant weight, ``torch.nn.Linear``.

The layer ``y = x W^T + b`` acts on the last axis of its input.

* IBP: ``y_c = c W^T + b``, ``y_r = r |W|^T`` with ``c``, ``r`` the centre and radius of the input box.
* CROWN: the relaxation is exact: ``A . y = (A W) . x + A . b``. Columns of ``A`` that are zero (the
  neurons a ReLU above this layer has found dead, often most of them at the first layer) are left out of
  the product: see :func:`backward_matmul`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.kernels import interval_linear
from verifier.ops.base import Interval, Operator
from verifier.ops.bilinear import MatMulVariables
from verifier.ops.registry import SourceNode, onnx_op, torch_op
from verifier.primitives import center_radius


class Linear(Operator):
    """``y = x @ weight.T + bias`` over the last axis; ``weight`` is ``[out, in]``."""

    op_type = "Linear"
    is_affine = True

    def __init__(self, weight: Tensor, bias: Tensor | None):
        self.weight = weight
        self.bias = bias
        self.weight_abs = weight.abs()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def linear_part(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)

    def abs_linear_part(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_abs)

    def interval(self, bounds: Interval) -> Interval:
        return interval_linear(*bounds, self.weight, self.weight_abs, self.bias)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        A_in, bias = backward_matmul(A, self.weight, self.bias)
        if bias is not None:
            bias = bias.reshape(*A.shape[:2], -1).sum(-1)
        return [A_in], bias

    def describe(self) -> str:
        return f"Linear {self.weight.shape[1]}->{self.weight.shape[0]}"


class SharedLinear(Linear):
    """:class:`Linear` whose weight and bias are read from live tensors at each use (a torch module's
    parameters, with any BatchNorm folded after them: :class:`verifier.ops.shared.LiveAffine`), so bounds are
    differentiable in them; ``|W|`` is recomputed each time instead of stored."""

    op_type = "SharedLinear"

    def __init__(self, source):
        self.source = source

    @property
    def weight(self) -> Tensor:
        return self.source.weight()

    @property
    def bias(self) -> Tensor | None:
        return self.source.bias()

    @property
    def weight_abs(self) -> Tensor:
        return self.source.weight().abs()

    def interval(self, bounds: Interval) -> Interval:
        weight = self.weight
        return interval_linear(*bounds, weight, weight.abs(), self.bias)

    def constants(self) -> dict[str, Tensor]:
        return self.source.tensors()

    def to(self, dtype: torch.dtype | None = None, device: torch.device | None = None) -> Operator:
        from verifier.ops.shared import check_shared_placement

        check_shared_placement(self, self.constants(), dtype, device)
        return self

    def describe(self) -> str:
        return super().describe() + " (shared)"


# A zero column is left out of the product when at least this share of the columns is zero, in products
# of at least SPARSE_MIN_PRODUCT multiply-adds onto at least SPARSE_MIN_WIDTH input features. Below those,
# finding and gathering the columns (three passes over A) costs more than the multiply-adds it saves: on
# ACAS Xu's 50-wide layers with 38 % zero columns the sparse product took 1.35x the dense one's time.
SPARSE_COLUMN_SHARE = 0.125
SPARSE_MIN_PRODUCT = 1 << 22
SPARSE_MIN_WIDTH = 128


def backward_matmul(A: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``A @ weight`` and ``A @ bias`` (the backward step of ``y = x W^T + b``), skipping zero columns of A.

    A ReLU's backward step zeroes the columns of the neurons that are dead (upper bound <= 0) in every
    sub-domain; on the shared MNIST networks that is 40-90 % of them. When at least
    :data:`SPARSE_COLUMN_SHARE` of the columns are zero, only the others (and the matching rows of
    ``weight``) enter the matrix product, which gives the same result with fewer operations. A column
    holding a NaN counts as non-zero. The gradient with respect to ``A`` is the dense one, ``grad @ W^T``
    in every column: a column that is zero at this iterate (an optimised slope at 0) still has a gradient.
    """
    n, width = A.shape[-1], weight.shape[1]
    # on a GPU the dense product is cheap and counting the columns would stop the queue (a host sync): CPU only
    sparse_worth_it = A.device.type == "cpu" and n >= 16 and width >= SPARSE_MIN_WIDTH
    if sparse_worth_it and A.numel() * width >= SPARSE_MIN_PRODUCT and not weight.requires_grad:
        with torch.no_grad():  # two reductions without a temporary of A's size (a NaN compares non-zero)
            lead = tuple(range(A.dim() - 1))
            nonzero = (A.amax(dim=lead) != 0) | (A.amin(dim=lead) != 0)
            kept = int(nonzero.sum())
        if kept <= n * (1 - SPARSE_COLUMN_SHARE):
            return _ColumnSparseMatmul.apply(A, nonzero.nonzero().squeeze(1), weight, bias)
    return torch.matmul(A, weight), None if bias is None else torch.matmul(A, bias)


class _ColumnSparseMatmul(torch.autograd.Function):
    """``(A @ weight, A @ bias)`` from the listed columns of ``A`` (the others are zero), gathered once;
    ``bias`` may be None (then so is the second result). The gradient for ``A`` is the dense one."""

    @staticmethod
    def forward(A: Tensor, columns: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        kept = A.index_select(-1, columns)
        A_in = torch.matmul(kept, weight.index_select(0, columns))
        return A_in, None if bias is None else torch.matmul(kept, bias.index_select(0, columns))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[2], inputs[3])

    @staticmethod
    def backward(ctx, grad: Tensor, grad_bias: Tensor | None):
        weight, bias = ctx.saved_tensors
        grad_A = torch.matmul(grad, weight.T)
        if bias is not None and grad_bias is not None:
            grad_A = grad_A + grad_bias.unsqueeze(-1) * bias
        return grad_A, None, None, None


@onnx_op("Gemm")
def _gemm(node: SourceNode) -> Linear:
    """Gemm ``Y = alpha * A' B' + beta * C`` with a variable ``A`` and constant ``B`` and ``C``."""
    if not node.is_const(1) or (node.has_input(2) and not node.is_const(2)) or node.is_const(0):
        raise node.unsupported("only Gemm(variable, constant weight, constant bias) is supported")
    if node.attr("transA", 0):
        raise node.unsupported("transA=1 on the variable input is not supported")
    weight = node.const(1).astype(np.float64) * node.attr("alpha", 1.0)
    weight = weight if node.attr("transB", 0) else weight.T  # -> [out, in]
    bias = node.const(2)
    if bias is not None:
        out = weight.shape[0]
        bias = np.broadcast_to(bias.astype(np.float64) * node.attr("beta", 1.0), (1, out)).reshape(out)
    if len(node.shape(0)) != 2 or node.shape(0)[-1] != weight.shape[1]:
        raise node.unsupported(f"input of shape {node.shape(0)} does not fit a weight of shape {weight.shape}")
    return _linear(weight, bias, node)


@onnx_op("MatMul")
@torch_op(torch.matmul, operator.matmul, "matmul")
def _matmul(node: SourceNode) -> Operator:
    """MatMul ``x @ W`` (or ``W @ x``) with a variable ``x`` and a constant 2-D ``W``; of two variables, the
    McCormick product of :mod:`verifier.ops.bilinear`."""
    if node.is_const(0) and not node.is_const(1):
        return _left_matmul(node)
    if not node.is_const(0) and not node.is_const(1):
        shapes = [node.shape(0), node.shape(1)]
        if min(len(s) for s in shapes) < 2:
            raise node.unsupported("a product of two variables needs both to be at least 2-D")
        return MatMulVariables(shapes)
    weight = node.const(1)
    if weight is None or node.is_const(0):
        raise node.unsupported("only products of a variable and a constant matrix are supported")
    if weight.ndim != 2:
        raise node.unsupported(f"the constant operand must be a matrix, got shape {weight.shape}")
    shape = node.shape(0)
    if len(shape) == 0 or shape[-1] != weight.shape[0]:
        raise node.unsupported(f"input of shape {shape} does not fit a weight of shape {weight.shape}")
    return _linear(weight.T, None, node)


class LeftLinear(Operator):
    """``y = weight @ x`` acting on the second-to-last axis of ``x`` (ONNX ``MatMul(constant, variable)``)."""

    op_type = "LeftLinear"
    is_affine = True

    def __init__(self, weight: Tensor):
        self.weight = weight
        self.weight_abs = weight.abs()

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(self.weight, x)

    linear_part = forward

    def abs_linear_part(self, x: Tensor) -> Tensor:
        return torch.matmul(self.weight_abs, x)

    def interval(self, bounds: Interval) -> Interval:
        center, radius = center_radius(*bounds)
        out_center = torch.matmul(self.weight, center)
        out_radius = torch.matmul(self.weight_abs, radius)
        return out_center - out_radius, out_center + out_radius

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        return [torch.matmul(self.weight.T, A)], None

    def describe(self) -> str:
        return f"LeftLinear {self.weight.shape[1]}->{self.weight.shape[0]}"


def _left_matmul(node: SourceNode) -> Operator:
    weight = node.const(0)
    shape = node.shape(1)
    if weight.ndim != 2 or len(shape) == 0 or shape[0 if len(shape) == 1 else -2] != weight.shape[1]:
        raise node.unsupported(f"constant of shape {weight.shape} cannot multiply a variable of shape {shape}")
    if len(shape) == 1:  # matrix-vector product: an ordinary dense layer
        return _linear(weight, None, node)
    return LeftLinear(node.tensor(weight))


def _linear(weight: np.ndarray, bias: np.ndarray | None, node: SourceNode) -> Linear:
    return Linear(node.tensor(weight), None if bias is None else node.tensor(bias))


@torch_op(torch.nn.Linear)
def _torch_linear(node: SourceNode) -> Linear:
    module = node.module
    weight = module.weight.detach().clone().to(node.dtype)
    bias = None if module.bias is None else module.bias.detach().clone().to(node.dtype)
    return Linear(weight, bias)
