"""Shape operators: Flatten, Reshape, Squeeze, Unsqueeze, Transpose (ONNX); ``nn.Flatten``,
``torch.flatten``, ``Tensor.view/reshape/flatten/permute`` (torch).

They only move elements, so every rule is the same rearrangement: IBP rearranges both bounds, and
CROWN rearranges the coefficients back (``A . reshape(x) = reshape^-1(A) . x``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from verifier.ops.base import Interval, Operator
from verifier.ops.registry import SourceNode, normalize_axis, onnx_op, torch_op


class Reshape(Operator):
    """Per-sample reshape from ``input_shape`` to ``output_shape`` (row-major element order)."""

    op_type = "Reshape"
    is_affine = True

    def __init__(self, input_shape: Sequence[int], output_shape: Sequence[int]):
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.output_shape)

    linear_part = abs_linear_part = forward

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        return [A.reshape(*A.shape[:2], *self.input_shape)], None

    def describe(self) -> str:
        return f"Reshape {self.input_shape}->{self.output_shape}"


class Transpose(Operator):
    """Per-sample permutation of axes: ``y = x.permute(perm)``."""

    op_type = "Transpose"
    is_affine = True

    def __init__(self, perm: Sequence[int]):
        self.perm = tuple(perm)
        self.inverse = tuple(int(i) for i in np.argsort(self.perm))

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, *(p + 1 for p in self.perm))

    linear_part = abs_linear_part = forward

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        return [A.permute(0, 1, *(p + 2 for p in self.inverse))], None


def resolve_reshape(input_shape: Sequence[int], target: Sequence[int], allowzero: bool = False) -> tuple[int, ...]:
    """The output shape of ONNX Reshape: ``0`` copies the input dimension (unless ``allowzero``), ``-1`` is inferred."""
    shape = [int(d) for d in target]
    if not allowzero:
        shape = [input_shape[i] if d == 0 else d for i, d in enumerate(shape)]
    total = math.prod(input_shape)
    if shape.count(-1) > 1:
        raise ValueError(f"more than one -1 in reshape target {tuple(target)}")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {tuple(input_shape)} to {tuple(target)}")
        shape[shape.index(-1)] = total // known
    if math.prod(shape) != total:
        raise ValueError(f"cannot reshape {tuple(input_shape)} to {tuple(target)}")
    return tuple(shape)


def _reshape(node: SourceNode, output_shape: Sequence[int]) -> Reshape:
    return Reshape(node.shape(0), output_shape)


@onnx_op("Reshape")
def _onnx_reshape(node: SourceNode) -> Reshape:
    target = node.const(1)
    if target is None:
        raise node.unsupported("the target shape must be a constant (or computable from shapes)")
    try:
        return _reshape(node, resolve_reshape(node.shape(0), target.tolist(), bool(node.attr("allowzero", 0))))
    except ValueError as error:
        raise node.unsupported(str(error)) from None


@onnx_op("Flatten")
def _onnx_flatten(node: SourceNode) -> Reshape:
    shape = node.shape(0)
    axis = node.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    return _reshape(node, (math.prod(shape[:axis]), math.prod(shape[axis:])))


def _axes(node: SourceNode) -> list[int] | None:
    if node.has_input(1):
        value = node.const(1)
        if value is None:
            raise node.unsupported("axes must be constant")
        return [int(a) for a in np.asarray(value).reshape(-1)]
    axes = node.attr("axes")
    return None if axes is None else [int(a) for a in axes]


@onnx_op("Squeeze")
def _onnx_squeeze(node: SourceNode) -> Reshape:
    shape = node.shape(0)
    axes = _axes(node)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = {normalize_axis(a, len(shape)) for a in axes}
    if any(shape[a] != 1 for a in axes):
        raise node.unsupported(f"cannot squeeze axes {sorted(axes)} of shape {shape}")
    return _reshape(node, [d for i, d in enumerate(shape) if i not in axes])


@onnx_op("Unsqueeze")
def _onnx_unsqueeze(node: SourceNode) -> Reshape:
    shape = list(node.shape(0))
    axes = _axes(node)
    if axes is None:
        raise node.unsupported("Unsqueeze without axes")
    rank = len(shape) + len(axes)
    for axis in sorted(normalize_axis(a, rank) for a in axes):
        shape.insert(axis, 1)
    return _reshape(node, shape)


@onnx_op("Transpose")
def _onnx_transpose(node: SourceNode) -> Transpose:
    rank = len(node.shape(0))
    perm = node.attr("perm") or list(reversed(range(rank)))
    return Transpose([int(p) for p in perm])


# -- torch ------------------------------------------------------------------------------------------------
@torch_op(torch.nn.Flatten, torch.flatten, "flatten")
def _torch_flatten(node: SourceNode) -> Reshape:
    shape = node.shape(0)
    start = normalize_axis(node.attrs["start_dim"], len(shape))
    end = normalize_axis(node.attrs["end_dim"], len(shape))
    return _reshape(node, (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :]))


@torch_op("view", "reshape", torch.reshape)
def _torch_view(node: SourceNode) -> Reshape:
    try:
        return _reshape(node, resolve_reshape(node.shape(0), node.attrs["shape"], allowzero=True))
    except ValueError as error:
        raise node.unsupported(str(error)) from None


@torch_op("permute", torch.permute)
def _torch_permute(node: SourceNode) -> Transpose:
    return Transpose(node.attrs["dims"])


@torch_op("transpose", torch.transpose, torch.swapaxes, "swapaxes")
def _torch_transpose(node: SourceNode) -> Transpose:
    """``x.transpose(a, b)``: the permutation swapping two axes."""
    args = node.attr("args", [])
    rank = len(node.shape(0))
    a, b = (normalize_axis(int(d), rank) for d in args[:2])
    perm = list(range(rank))
    perm[a], perm[b] = perm[b], perm[a]
    return Transpose(perm)


@torch_op("unsqueeze", torch.unsqueeze)
def _torch_unsqueeze(node: SourceNode) -> Reshape:
    shape = list(node.shape(0))
    args = node.attr("args", [])
    dim = args[0] if args else node.attr("kwargs", {})["dim"]
    shape.insert(normalize_axis(int(dim), len(shape) + 1), 1)
    return _reshape(node, shape)


@torch_op("squeeze", torch.squeeze)
def _torch_squeeze(node: SourceNode) -> Reshape:
    shape = node.shape(0)
    args = node.attr("args", [])
    dims = args[0] if args else node.attr("kwargs", {}).get("dim")
    if dims is None:
        axes = {i for i, d in enumerate(shape) if d == 1}
    else:
        axes = {normalize_axis(int(d), len(shape)) for d in (dims if isinstance(dims, (tuple, list)) else [dims])}
        axes = {a for a in axes if shape[a] == 1}  # torch ignores axes that are not of size 1
    return _reshape(node, [d for i, d in enumerate(shape) if i not in axes])
