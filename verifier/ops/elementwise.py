"""Elementwise arithmetic: Add, Sub, Mul, Div, Neg with constants; Add and Sub of two variables;
BatchNormalization in inference mode. (Mul and Div of two variables are converted to the McCormick
operators of :mod:`verifier.ops.bilinear`, ``c / x`` to a reciprocal.)

* ``Affine``: ``y = x * scale + shift`` with constant, numpy-broadcastable ``scale``/``shift``. IBP:
  ``y_c = c * scale + shift``, ``y_r = r * |scale|``. CROWN: exact, ``A . y = (A * scale) . x + A . shift``,
  summed back over broadcast axes.
* ``AddVariables`` / ``SubVariables``: ``y = x1 +/- x2`` of two variables (residual connections).
  IBP adds the boxes; CROWN passes ``A`` (and ``-A``) to both branches.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from verifier.ops.base import Interval, Operator, unbroadcast
from verifier.ops.registry import SourceNode, onnx_op, torch_op
from verifier.primitives import center_radius


class Affine(Operator):
    """``y = x * scale + shift`` elementwise; ``scale`` or ``shift`` may be ``None`` (1 or 0)."""

    op_type = "Affine"
    is_affine = True

    def __init__(self, scale: Tensor | None, shift: Tensor | None, input_shape: Sequence[int]):
        self.scale = scale
        self.shift = shift
        self.input_shape = tuple(input_shape)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear_part(x)
        return y if self.shift is None else y + self.shift

    def linear_part(self, x: Tensor) -> Tensor:
        return self._broadcast(x if self.scale is None else x * self.scale)

    def abs_linear_part(self, x: Tensor) -> Tensor:
        return self._broadcast(x if self.scale is None else x * self.scale.abs())

    def _broadcast(self, y: Tensor) -> Tensor:
        """``y`` expanded to the output shape where the shift broadcasts it to a larger one."""
        if self.shift is None:
            return y
        shape = torch.broadcast_shapes(y.shape[1:], self.shift.shape)
        return y if shape == y.shape[1:] else y.expand(y.shape[0], *shape)

    def interval(self, bounds: Interval) -> Interval:
        if self.scale is None:
            lower, upper = bounds
        elif torch.isfinite(bounds[0]).all() and torch.isfinite(bounds[1]).all():
            center, radius = center_radius(*bounds)
            center, radius = center * self.scale, radius * self.scale.abs()
            lower, upper = center - radius, center + radius
        else:  # infinite bounds (after a pole): scale the ends, a zero scale gives exactly 0
            ends = torch.stack(torch.broadcast_tensors(bounds[0] * self.scale, bounds[1] * self.scale))
            ends = torch.where(self.scale == 0, 0.0, ends)
            lower, upper = ends.amin(0), ends.amax(0)
        if self.shift is not None:
            lower, upper = lower + self.shift, upper + self.shift
        return lower, upper

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        bias = None
        if self.shift is not None:
            bias = (A * self.shift).flatten(2).sum(-1)
        A_in = A if self.scale is None else A * self.scale
        return [unbroadcast(A_in, self.input_shape)], bias

    def describe(self) -> str:
        return "Affine" + ("" if self.scale is None else " *") + ("" if self.shift is None else " +")


class AddVariables(Operator):
    """``y = x1 + x2`` of two variable tensors (numpy broadcasting)."""

    op_type = "AddVariables"
    is_affine = True
    sign = 1.0

    def __init__(self, shapes: Sequence[Sequence[int]]):
        self.shapes = [tuple(s) for s in shapes]

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return x1 + self.sign * x2

    linear_part = forward

    def abs_linear_part(self, x1: Tensor, x2: Tensor) -> Tensor:
        return x1 + x2

    def interval(self, first: Interval, second: Interval) -> Interval:
        if self.sign > 0:
            return first[0] + second[0], first[1] + second[1]
        return first[0] - second[1], first[1] - second[0]

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        second = A if self.sign > 0 else -A
        return [unbroadcast(A, self.shapes[0]), unbroadcast(second, self.shapes[1])], None


class SubVariables(AddVariables):
    """``y = x1 - x2`` of two variable tensors."""

    op_type = "SubVariables"
    sign = -1.0


def _affine(node: SourceNode, var_index: int, scale, shift) -> Affine:
    scale = None if scale is None else node.tensor(scale)
    shift = None if shift is None else node.tensor(shift)
    return Affine(scale, shift, node.shape(var_index))


@onnx_op("Add", "Sub", "Mul", "Div")
def _onnx_arith(node: SourceNode) -> Operator:
    op = node.op_type
    variables = node.variable_inputs
    if len(variables) == 2:
        if op == "Add":
            return AddVariables([node.shape(0), node.shape(1)])
        if op == "Sub":
            return SubVariables([node.shape(0), node.shape(1)])
        from verifier.ops.bilinear import DivVariables, MulVariables, SelfProduct

        if op == "Mul" and variables[0] == variables[1]:
            return SelfProduct()  # x * x: the convex square, much tighter than a McCormick product
        return (MulVariables if op == "Mul" else DivVariables)([node.shape(0), node.shape(1)])
    var_index = 0 if not node.is_const(0) else 1
    const = np.asarray(node.const(1 - var_index), dtype=np.float64)
    if op == "Add":
        return _affine(node, var_index, None, const)
    if op == "Sub":
        if var_index == 0:
            return _affine(node, 0, None, -const)
        return _affine(node, 1, -np.ones_like(const), const)
    if op == "Mul":
        return _affine(node, var_index, const, None)
    if var_index == 1:  # c / x = c * (1 / x)
        from verifier.ops.smooth import Reciprocal

        return [Reciprocal(), _affine(node, 1, const, None)]
    if np.any(const == 0):
        raise node.unsupported("division by a constant that contains zero")
    return _affine(node, 0, 1.0 / const, None)


@onnx_op("Neg")
def _onnx_neg(node: SourceNode) -> Affine:
    return _affine(node, 0, -np.ones(()), None)


@onnx_op("BatchNormalization")
def _onnx_batchnorm(node: SourceNode) -> Affine:
    """Inference-mode BatchNorm: ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` per channel (axis 1)."""
    if not all(node.is_const(i) for i in range(1, 5)):
        raise node.unsupported("BatchNormalization needs constant scale, bias, mean and variance")
    if node.attr("training_mode", 0):
        raise node.unsupported("training_mode=1")
    gamma, beta, mean, var = (np.asarray(node.const(i), dtype=np.float64) for i in range(1, 5))
    scale = gamma / np.sqrt(var + node.attr("epsilon", 1e-5))
    shift = beta - mean * scale
    return _channel_affine(node, scale, shift)


def _channel_affine(node: SourceNode, scale: np.ndarray, shift: np.ndarray) -> Affine:
    shape = node.shape(0)
    if len(shape) < 2 or shape[1] != scale.shape[0]:
        raise node.unsupported(f"{scale.shape[0]} channels do not fit an input of shape {shape}")
    trailing = (1,) * (len(shape) - 2)
    return _affine(node, 0, scale.reshape(-1, *trailing), shift.reshape(-1, *trailing))


@torch_op(torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
def _torch_batchnorm(node: SourceNode) -> Affine:
    bn = node.module
    if bn.running_mean is None:
        raise node.unsupported("BatchNorm without running statistics")
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones_like(var)
    beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros_like(var)
    scale = gamma / np.sqrt(var + bn.eps)
    return _channel_affine(node, scale, beta - mean * scale)


@torch_op(operator.add, torch.add, "add", operator.sub, torch.sub, "sub", operator.mul, torch.mul, "mul",
          operator.truediv, torch.div, "div", operator.neg, torch.neg, "neg")
def _torch_arith(node: SourceNode) -> Operator:
    names = {"add": "Add", "sub": "Sub", "mul": "Mul", "truediv": "Div", "div": "Div", "neg": "Neg"}
    node.op_type = names[node.op_type]
    return _onnx_neg(node) if node.op_type == "Neg" else _onnx_arith(node)
