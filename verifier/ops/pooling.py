"""Pooling and reductions: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceSum, ReduceMean.

* ``ReduceSum``/``ReduceMean``/``GlobalAveragePool`` are linear: IBP sums the bounds, CROWN copies each
  output coefficient (times the averaging weight) to every element it sums.
* ``AveragePool`` is a depthwise convolution with a kernel of ones followed by the division by the
  window's element count (which varies at the borders without ``count_include_pad``); both are exact
  linear steps (:class:`verifier.ops.conv.Conv` and :class:`verifier.ops.elementwise.Affine`).
* ``MaxPool`` (any kernel, stride, dilation and padding, kernel != stride included; ``ceil_mode``):
  each output is ``max_j x_j`` over its window. IBP: the max of the lower and of the upper bounds.
  CROWN (the DeepPoly/CROWN max relaxation): the lower line is ``x_k``, ``k`` the input with the largest
  box midpoint; the upper line is the better, at the box centre, of the constant ``max_j u_j`` and the
  plane ``L + sum_j a_j (x_j - l_j)`` with ``L = max_j l_j`` and ``a_j = clip((u_j - L) / (u_j - l_j), 0, 1)``.
  The plane is sound: at every vertex of the box it is at least ``L`` and at least every ``u_j`` that
  is at its upper end, and a plane above a convex function at all vertices is above it on the box.
  When one input dominates its window (``l_k >= u_j`` for all ``j != k``) both lines are ``x_k``: exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.ops.base import Interval, Operator
from verifier.ops.conv import Conv, same_padding
from verifier.ops.elementwise import Affine
from verifier.ops.registry import SourceNode, normalize_axis, onnx_op, torch_op


class ReduceSum(Operator):
    """``scale * sum of x over axes`` (per-sample axes), ``scale > 0`` (``1 / count`` for a mean)."""

    op_type = "ReduceSum"
    is_affine = True

    def __init__(self, axes: Sequence[int], keepdims: bool, scale: float, input_shape: Sequence[int]):
        self.axes = tuple(sorted(axes))
        self.keepdims = keepdims
        self.scale = float(scale)
        self.input_shape = tuple(input_shape)

    def forward(self, x: Tensor) -> Tensor:
        if not self.axes:
            return x * self.scale
        return x.sum(dim=tuple(a + 1 for a in self.axes), keepdim=self.keepdims) * self.scale

    linear_part = abs_linear_part = forward

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        if not self.keepdims:
            for axis in self.axes:
                A = A.unsqueeze(axis + 2)
        return [(A * self.scale).expand(*A.shape[:2], *self.input_shape)], None

    def describe(self) -> str:
        return f"Reduce{'Mean' if self.scale != 1 else 'Sum'} axes={self.axes}"


class MaxPool(Operator):
    """Max over (possibly overlapping, padded) windows of a ``[N, C, *spatial]`` per-sample tensor.

    ``index`` (``[P, m]``) lists for each of the ``P`` output positions the flat spatial positions of its
    ``m`` window elements, ``S`` (one past the last position) for padding, which is never the max.
    """

    op_type = "MaxPool"
    needs_input_bounds = True

    def __init__(self, input_shape: Sequence[int], output_shape: Sequence[int], index: Tensor):
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.index = index
        self.spatial_size = math.prod(self.input_shape[2:])

    def _windows(self, x: Tensor, fill: float) -> Tensor:
        """``[B, N*C, P, m]`` window elements, padding as ``fill``."""
        flat = x.reshape(x.shape[0], -1, self.spatial_size)
        flat = torch.cat([flat, flat.new_full((*flat.shape[:2], 1), fill)], -1)
        return flat[..., self.index]

    def forward(self, x: Tensor) -> Tensor:
        return self._windows(x, -torch.inf).amax(-1).reshape(x.shape[0], *self.output_shape)

    def interval(self, bounds: Interval) -> Interval:
        return self.forward(bounds[0]), self.forward(bounds[1])

    def relax(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Window relaxation: one-hot lower weights ``[B, NC, P, m]``, upper weights ``[B, NC, P, m]`` and
        upper bias ``[B, NC, P]`` (``y <= sum_j a_j x_j + bias``)."""
        valid = (self.index < self.spatial_size).expand(lower.shape[0], 1, -1, -1)
        lo = self._windows(lower, 0.0)
        hi = self._windows(upper, 0.0)
        centre = torch.where(valid, (lo + hi) / 2, -torch.inf)
        lower_weights = F.one_hot(centre.argmax(-1), centre.shape[-1]).to(lower.dtype)
        L = torch.where(valid, lo, -torch.inf).amax(-1, keepdim=True)
        U = torch.where(valid, hi, -torch.inf).amax(-1)
        width = hi - lo
        a = torch.where(width > 0, (hi - L) / torch.where(width > 0, width, 1.0), 0.0).clamp(0, 1)
        a = torch.where(valid, a, 0.0)
        plane_bias = L.squeeze(-1) - (a * lo).sum(-1)
        use_plane = plane_bias + (a * (lo + hi) / 2).sum(-1) < U
        upper_weights = torch.where(use_plane.unsqueeze(-1), a, 0.0)
        upper_bias = torch.where(use_plane, plane_bias, U)
        return lower_weights, upper_weights, upper_bias

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        lower_weights, upper_weights, upper_bias = self.relax(*inputs[0])
        A = A.reshape(*A.shape[:2], lower_weights.shape[1], -1)  # [b, K, NC, P]
        A_pos, A_neg = A.clamp(min=0), A.clamp(max=0)
        batch = max(A.shape[0], lower_weights.shape[0])
        A_in = A.new_zeros(batch, A.shape[1], A.shape[2], self.spatial_size + 1)
        for offset in range(self.index.shape[1]):
            coeff = A_pos * lower_weights[..., offset].unsqueeze(1) + A_neg * upper_weights[..., offset].unsqueeze(1)
            A_in.index_add_(-1, self.index[:, offset], coeff.expand(batch, *coeff.shape[1:]))
        bias = (A_neg * upper_bias.unsqueeze(1)).flatten(2).sum(-1)
        return [A_in[..., : self.spatial_size].reshape(batch, A.shape[1], *self.input_shape)], bias

    def describe(self) -> str:
        return f"MaxPool {self.input_shape}->{self.output_shape}"


def pool_geometry(node: SourceNode, shape: Sequence[int]) -> tuple[list[int], list[int], list[tuple[int, int]], list]:
    """Kernel, strides, ``(begin, end)`` pads (``auto_pad`` and ``ceil_mode`` resolved) and dilations."""
    dims = len(shape) - 2
    kernel = list(node.attr("kernel_shape"))
    strides = list(node.attr("strides", [1] * dims))
    dilations = list(node.attr("dilations", [1] * dims))
    auto_pad = node.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_padding(shape[2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = [(0, 0)] * dims
    else:
        flat = node.attr("pads", [0] * (2 * dims))
        pads = list(zip(flat[:dims], flat[dims:]))
    if node.attr("ceil_mode", 0):  # extra end padding so that the floor formula gives the ceil size
        for i, (s, (b, e), k, st, d) in enumerate(zip(shape[2:], pads, kernel, strides, dilations)):
            span = s + b + e - d * (k - 1) - 1
            out = -(-span // st) + 1
            if (out - 1) * st >= s + b:  # the last window would start in the end padding: dropped
                out -= 1
            pads[i] = (b, e + max(0, (out - 1) * st - span))
    return kernel, strides, pads, dilations


def window_index(spatial: Sequence[int], kernel, strides, pads, dilations) -> tuple[Tensor, list[int]]:
    """``[P, m]`` flat input positions of every window (``prod(spatial)`` for padding) and the output size."""
    out = [(s + b + e - d * (k - 1) - 1) // st + 1
           for s, (b, e), k, st, d in zip(spatial, pads, kernel, strides, dilations)]
    strides_flat = np.cumprod([1, *spatial[::-1]])[:-1][::-1]
    rows = []
    for position in itertools.product(*(range(o) for o in out)):
        row = []
        for offset in itertools.product(*(range(k) for k in kernel)):
            coords = [p * st - b + o * d for p, st, (b, _), o, d in zip(position, strides, pads, offset, dilations)]
            inside = all(0 <= c < s for c, s in zip(coords, spatial))
            row.append(int(np.dot(coords, strides_flat)) if inside else math.prod(spatial))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long), out


@onnx_op("MaxPool")
def _onnx_maxpool(node: SourceNode) -> MaxPool:
    shape = node.shape(0)
    if len(shape) < 3:
        raise node.unsupported(f"input of shape {shape} has no spatial axes")
    kernel, strides, pads, dilations = pool_geometry(node, shape)
    index, out = window_index(shape[2:], kernel, strides, pads, dilations)
    return MaxPool(shape, (*shape[:2], *out), index)


@onnx_op("AveragePool")
def _onnx_avgpool(node: SourceNode) -> list[Operator]:
    shape = node.shape(0)
    if len(shape) < 3:
        raise node.unsupported(f"input of shape {shape} has no spatial axes")
    kernel, strides, pads, dilations = pool_geometry(node, shape)
    explicit = [tuple(p) for p in pool_geometry(_without_ceil(node), shape)[2]]
    include = bool(node.attr("count_include_pad", 0))
    return average_pool(node, shape, kernel, strides, pads, dilations, explicit, include)


def _without_ceil(node: SourceNode) -> SourceNode:
    attrs = dict(node.attrs, ceil_mode=0)
    return SourceNode(node.op_type, node.name, node.inputs, attrs, node.constants, node.shapes, node.module, node.dtype)


def average_pool(node, shape, kernel, strides, pads, dilations, explicit_pads, count_include_pad) -> list[Operator]:
    """Depthwise ones-kernel Conv, then division by the element count of each window (a constant map)."""
    channels, dims = shape[1], len(shape) - 2
    weight = torch.ones(channels, 1, *kernel, dtype=node.dtype)
    conv = Conv(weight, None, strides, pads, dilations, channels, shape)
    # count: ones on the input (and on the explicit padding with count_include_pad), zero elsewhere
    ones = torch.ones(1, 1, *shape[2:], dtype=torch.float64)
    if count_include_pad:
        ones = F.pad(ones, [p for b, e in reversed(explicit_pads) for p in (b, e)], value=1.0)
        extra = [(0, e - e0) for (_, e), (_, e0) in zip(pads, explicit_pads)]
        ones = F.pad(ones, [p for b, e in reversed(extra) for p in (b, e)], value=0.0)
        count_pads = [(0, 0)] * dims
    else:
        count_pads = pads
    count_conv = Conv(torch.ones(1, 1, *kernel, dtype=torch.float64), None, strides, count_pads, dilations, 1,
                      tuple(ones.shape))
    count = count_conv.forward(ones.unsqueeze(0))[0]  # [1, 1, *out]
    return [conv, Affine((1.0 / count).to(node.dtype), None, conv.output_shape)]


@onnx_op("GlobalAveragePool", "GlobalMaxPool")
def _onnx_global_pool(node: SourceNode) -> Operator:
    shape = node.shape(0)
    spatial = list(range(2, len(shape)))
    if node.op_type == "GlobalAveragePool":
        return ReduceSum(spatial, True, 1.0 / math.prod(shape[2:]), shape)
    index = torch.arange(math.prod(shape[2:])).unsqueeze(0)
    return MaxPool(shape, (*shape[:2], *[1] * len(spatial)), index)


@onnx_op("ReduceSum", "ReduceMean")
def _onnx_reduce(node: SourceNode) -> Operator:
    shape = node.shape(0)
    if node.has_input(1):
        axes = node.const(1)
        if axes is None:
            raise node.unsupported("axes must be constant")
        axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    else:
        axes = node.attr("axes")
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return node.inputs[0]
        axes = list(range(len(shape)))
    axes = sorted({normalize_axis(a, len(shape)) for a in axes})
    count = math.prod(shape[a] for a in axes)
    scale = 1.0 / count if node.op_type in ("ReduceMean", "mean") else 1.0
    return ReduceSum(axes, bool(node.attr("keepdims", 1)), scale, shape)


# -- torch ------------------------------------------------------------------------------------------------
def _pool_node(node: SourceNode, module, kind: str) -> SourceNode:
    dims = len(node.shape(0)) - 2

    def tup(v):
        return list(v) if isinstance(v, (tuple, list)) else [v] * dims

    kernel = tup(module.kernel_size)
    stride = tup(module.stride if module.stride is not None else module.kernel_size)
    padding = tup(module.padding)
    attrs = {"kernel_shape": kernel, "strides": stride, "pads": padding + padding, "ceil_mode": int(module.ceil_mode)}
    if kind == "max":
        attrs["dilations"] = tup(module.dilation)
    else:
        attrs["count_include_pad"] = int(module.count_include_pad)
        if getattr(module, "divisor_override", None):
            raise node.unsupported("divisor_override")
    return SourceNode(node.op_type, node.name, node.inputs, attrs, node.constants, node.shapes, module, node.dtype)


@torch_op(torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.MaxPool3d)
def _torch_maxpool(node: SourceNode) -> MaxPool:
    if node.module.return_indices:
        raise node.unsupported("return_indices=True")
    return _onnx_maxpool(_pool_node(node, node.module, "max"))


@torch_op(torch.nn.AvgPool1d, torch.nn.AvgPool2d, torch.nn.AvgPool3d)
def _torch_avgpool(node: SourceNode) -> list[Operator]:
    return _onnx_avgpool(_pool_node(node, node.module, "avg"))


@torch_op(torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveAvgPool3d)
def _torch_adaptive_avgpool(node: SourceNode) -> ReduceSum:
    size = node.module.output_size
    if any(s not in (1, None) for s in (size if isinstance(size, (tuple, list)) else [size])):
        raise node.unsupported("only output size 1 (global average pooling)")
    node.op_type = "GlobalAveragePool"
    return _onnx_global_pool(node)


@torch_op("mean", torch.mean, "sum", torch.sum)
def _torch_reduce(node: SourceNode) -> Operator:
    args, kwargs = node.attr("args", []), node.attr("kwargs", {})
    dims = args[0] if args else kwargs.get("dim")
    dims = list(range(len(node.shape(0)))) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
    keep = bool(args[1] if len(args) > 1 else kwargs.get("keepdim", False))
    reduce = SourceNode("ReduceMean" if node.op_type == "mean" else "ReduceSum", node.name, node.inputs,
                        {"axes": dims, "keepdims": int(keep)}, node.constants, node.shapes, None, node.dtype)
    return _onnx_reduce(reduce)
