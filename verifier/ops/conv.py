"""Convolutions (1-D, 2-D and 3-D): ONNX Conv and ConvTranspose, ``torch.nn.Conv1d/2d/3d`` and
``torch.nn.ConvTranspose1d/2d/3d``.

* IBP: ``y_c = conv(c, W) + b``, ``y_r = conv(r, |W|)`` (the same with the transposed convolution).
* CROWN: exact; the coefficients go back through the adjoint operator. For Conv that is the transposed
  convolution, ``A . conv(x) = conv_transpose(A, W) . x``, with ``output_padding`` chosen so the result
  has the input's spatial size, and asymmetric zero padding handled by cropping. For ConvTranspose it
  is the convolution with the same weight, ``A . conv_transpose(x) = conv(A, W) . x``, after undoing
  the transposed convolution's cropping (``pads``) and ``output_padding``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.ops.base import Interval, Operator
from verifier.ops.registry import SourceNode, onnx_op, torch_op
from verifier.primitives import center_radius

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class _WeightedMap(Operator):
    """An affine operator ``x -> map(x, W) + b`` whose interval rule is the same map applied to the centre
    (with ``W`` and ``b``) and to the radius (with ``|W|``); subclasses define ``_apply(x, weight, bias)``."""

    is_affine = True
    weight: Tensor
    weight_abs: Tensor
    bias: Tensor | None

    def _apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(x, self.weight, self.bias)

    def linear_part(self, x: Tensor) -> Tensor:
        return self._apply(x, self.weight, None)

    def abs_linear_part(self, x: Tensor) -> Tensor:
        return self._apply(x, self.weight_abs, None)

    def interval(self, bounds: Interval) -> Interval:
        center, radius = center_radius(*bounds)
        out_center = self._apply(center, self.weight, self.bias)
        out_radius = self._apply(radius, self.weight_abs, None)
        return out_center - out_radius, out_center + out_radius


class Conv(_WeightedMap):
    """N-d convolution of a per-sample tensor ``[N, C_in, *spatial]``; ``weight`` is ``[C_out, C_in/groups, *k]``.

    ``pads`` gives ``(begin, end)`` zero padding per spatial axis.
    """

    op_type = "Conv"

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        strides: Sequence[int],
        pads: Sequence[tuple[int, int]],
        dilations: Sequence[int],
        groups: int,
        input_shape: Sequence[int],
    ):
        self.weight = weight
        self.bias = bias
        self.weight_abs = weight.abs()
        self.dims = weight.dim() - 2
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.groups = groups
        self.pads = tuple(tuple(p) for p in pads)
        self.symmetric = all(b == e for b, e in self.pads)
        self.input_shape = tuple(input_shape)
        spatial = self.input_shape[2:]
        kernel = weight.shape[2:]
        self.output_spatial = tuple(
            (s + b + e - d * (k - 1) - 1) // st + 1
            for s, (b, e), d, k, st in zip(spatial, self.pads, self.dilations, kernel, self.strides)
        )
        self.output_shape = (self.input_shape[0], weight.shape[0], *self.output_spatial)
        conv_padding = [b for b, _ in self.pads] if self.symmetric else [0] * self.dims
        self._conv_padding = tuple(conv_padding)
        padded = [s + (0 if self.symmetric else b + e) for s, (b, e) in zip(spatial, self.pads)]
        self._output_padding = tuple(
            p - ((o - 1) * st - 2 * cp + d * (k - 1) + 1)
            for p, o, st, cp, d, k in zip(
                padded, self.output_spatial, self.strides, conv_padding, self.dilations, kernel
            )
        )

    def _apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        lead = x.shape[:2]
        x = x.reshape(-1, *x.shape[2:])
        if not self.symmetric:
            x = F.pad(x, [p for b, e in reversed(self.pads) for p in (b, e)])
        y = _CONV[self.dims](x, weight, bias, self.strides, self._conv_padding, self.dilations, self.groups)
        return y.reshape(*lead, *y.shape[1:])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        lead = A.shape[:3]  # b, K, N
        flat = A.reshape(-1, *A.shape[3:])
        A_in = _CONV_T[self.dims](
            flat,
            self.weight,
            None,
            self.strides,
            self._conv_padding,
            self._output_padding,
            self.groups,
            self.dilations,
        )
        if not self.symmetric:
            crop = tuple(slice(b, b + s) for (b, _), s in zip(self.pads, self.input_shape[2:]))
            A_in = A_in[(slice(None), slice(None), *crop)]
        A_in = A_in.reshape(*lead, *A_in.shape[1:])
        bias = None
        if self.bias is not None:
            per_channel = A.flatten(4).sum(-1) if A.dim() > 4 else A
            bias = torch.matmul(per_channel, self.bias).sum(-1)
        return [A_in], bias

    def describe(self) -> str:
        channels = f"{self.weight.shape[1] * self.groups}->{self.weight.shape[0]}"
        return f"Conv{self.dims}d {channels} k={tuple(self.weight.shape[2:])}"


def same_padding(
    spatial: Sequence[int], kernel: Sequence[int], strides, dilations, upper: bool
) -> list[tuple[int, int]]:
    """ONNX ``auto_pad = SAME_UPPER / SAME_LOWER``: output size ``ceil(input / stride)``."""
    pads = []
    for s, k, st, d in zip(spatial, kernel, strides, dilations):
        total = max((math.ceil(s / st) - 1) * st + (k - 1) * d + 1 - s, 0)
        small, large = total // 2, total - total // 2
        pads.append((small, large) if upper else (large, small))
    return pads


@onnx_op("Conv")
def _onnx_conv(node: SourceNode) -> Conv:
    if node.is_const(0) or not node.is_const(1) or (node.has_input(2) and not node.is_const(2)):
        raise node.unsupported("only Conv(variable, constant weight, constant bias) is supported")
    weight = node.const(1)
    dims = weight.ndim - 2
    if dims not in _CONV:
        raise node.unsupported(f"{dims}-D convolution")
    shape = node.shape(0)
    if len(shape) != dims + 2:
        raise node.unsupported(f"input of shape {shape} does not fit a {dims}-D convolution")
    kernel = weight.shape[2:]
    strides = node.attr("strides", [1] * dims)
    dilations = node.attr("dilations", [1] * dims)
    auto_pad = node.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_padding(shape[2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = [(0, 0)] * dims
    else:
        flat = node.attr("pads", [0] * (2 * dims))
        pads = list(zip(flat[:dims], flat[dims:]))
    groups = node.attr("group", 1)
    if shape[1] != weight.shape[1] * groups:
        raise node.unsupported(f"input has {shape[1]} channels, the weight expects {weight.shape[1] * groups}")
    bias = node.const(2)
    return Conv(
        node.tensor(weight),
        None if bias is None else node.tensor(np.asarray(bias).reshape(-1)),
        strides,
        pads,
        dilations,
        groups,
        shape,
    )


@torch_op(torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
def _torch_conv(node: SourceNode) -> Conv:
    module = node.module
    if module.padding_mode != "zeros":
        raise node.unsupported(f"padding_mode={module.padding_mode!r}")
    shape = node.shape(0)
    dims = module.weight.dim() - 2
    if isinstance(module.padding, str):
        if module.padding == "valid":
            pads = [(0, 0)] * dims
        else:  # 'same' (stride 1): PyTorch puts the odd extra padding at the end
            pads = same_padding(shape[2:], module.kernel_size, module.stride, module.dilation, upper=True)
    else:
        pads = [(p, p) for p in module.padding]
    weight = module.weight.detach().clone().to(node.dtype)
    bias = None if module.bias is None else module.bias.detach().clone().to(node.dtype)
    return Conv(weight, bias, module.stride, pads, module.dilation, module.groups, shape)


class ConvTranspose(_WeightedMap):
    """N-d transposed convolution; ``weight`` is ``[C_in, C_out/groups, *k]``.

    Computed as the full transposed convolution (no padding), extended by ``output_padding`` zeros at
    the end and cropped by ``pads`` (``(begin, end)`` per spatial axis; negative values extend).
    """

    op_type = "ConvTranspose"

    def __init__(self, weight: Tensor, bias: Tensor | None, strides, pads, output_padding, dilations, groups: int):
        self.weight = weight
        self.bias = bias
        self.weight_abs = weight.abs()
        self.dims = weight.dim() - 2
        self.strides = tuple(strides)
        self.pads = [tuple(p) for p in pads]
        self.output_padding = tuple(output_padding)
        self.dilations = tuple(dilations)
        self.groups = groups
        # F.pad order: last axis first; (-begin, output_padding - end) turns the full result into the output
        self._crop = [v for (b, e), op in zip(reversed(self.pads), reversed(self.output_padding)) for v in (-b, op - e)]

    def _apply(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        lead = x.shape[:2]
        x = x.reshape(-1, *x.shape[2:])
        y = _CONV_T[self.dims](x, weight, None, self.strides, 0, 0, self.groups, self.dilations)
        y = F.pad(y, self._crop)
        if bias is not None:
            y = y + bias.reshape(-1, *[1] * self.dims)
        return y.reshape(*lead, *y.shape[1:])

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        lead = A.shape[:3]
        flat = F.pad(A.reshape(-1, *A.shape[3:]), [-v for v in self._crop])
        A_in = _CONV[self.dims](flat, self.weight, None, self.strides, 0, self.dilations, self.groups)
        A_in = A_in.reshape(*lead, *A_in.shape[1:])
        bias = None
        if self.bias is not None:
            per_channel = A.flatten(4).sum(-1) if A.dim() > 4 else A
            bias = torch.matmul(per_channel, self.bias).sum(-1)
        return [A_in], bias

    def describe(self) -> str:
        return f"ConvTranspose{self.dims}d {self.weight.shape[0]}->{self.weight.shape[1] * self.groups}"


class _SharedWeights:
    """Mixin for :class:`Conv` / :class:`ConvTranspose`: weight and bias read from live tensors at each use (a
    torch module's parameters, with any BatchNorm folded after them: :class:`verifier.ops.shared.LiveAffine`),
    so bounds are differentiable in them; ``|W|`` is recomputed each time instead of stored."""

    source = None  # a LiveAffine

    @classmethod
    def from_conv(cls, op, source):
        """The shared version of ``op`` (its geometry, ``source``'s weights)."""
        shared = cls.__new__(cls)
        vars(shared).update({k: v for k, v in vars(op).items() if not isinstance(v, Tensor)})
        shared.source = source
        return shared

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
        center, radius = center_radius(*bounds)
        out_center = self._apply(center, weight, self.bias)
        out_radius = self._apply(radius, weight.abs(), None)
        return out_center - out_radius, out_center + out_radius

    def constants(self) -> dict[str, Tensor]:
        return self.source.tensors()

    def to(self, dtype: torch.dtype | None = None, device: torch.device | None = None):
        from verifier.ops.shared import check_shared_placement

        check_shared_placement(self, self.constants(), dtype, device)
        return self

    def describe(self) -> str:
        return super().describe() + " (shared)"


class SharedConv(_SharedWeights, Conv):
    """:class:`Conv` holding a torch module's live parameters (``from_torch(..., share_parameters=True)``)."""

    op_type = "SharedConv"


class SharedConvTranspose(_SharedWeights, ConvTranspose):
    """:class:`ConvTranspose` holding a torch module's live parameters."""

    op_type = "SharedConvTranspose"


@onnx_op("ConvTranspose")
def _onnx_conv_transpose(node: SourceNode) -> ConvTranspose:
    if node.is_const(0) or not node.is_const(1) or (node.has_input(2) and not node.is_const(2)):
        raise node.unsupported("only ConvTranspose(variable, constant weight, constant bias) is supported")
    weight = node.const(1)
    dims = weight.ndim - 2
    shape = node.shape(0)
    if dims not in _CONV_T or len(shape) != dims + 2:
        raise node.unsupported(f"input of shape {shape} does not fit a {dims}-D transposed convolution")
    groups = node.attr("group", 1)
    if shape[1] != weight.shape[0]:
        raise node.unsupported(f"input has {shape[1]} channels, the weight expects {weight.shape[0]}")
    kernel = weight.shape[2:]
    strides = node.attr("strides", [1] * dims)
    dilations = node.attr("dilations", [1] * dims)
    output_padding = list(node.attr("output_padding", [0] * dims))
    auto_pad = node.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    full = [st * (s - 1) + op + (k - 1) * d + 1
            for s, st, op, k, d in zip(shape[2:], strides, output_padding, kernel, dilations)]
    output_shape = node.attr("output_shape")
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = [s * st for s, st in zip(shape[2:], strides)]
    if output_shape is not None:
        output_shape = list(output_shape)[-dims:]
        totals = [f - o for f, o in zip(full, output_shape)]
        if auto_pad == "SAME_UPPER":
            pads = [(t // 2, t - t // 2) for t in totals]
        else:
            pads = [(t - t // 2, t // 2) for t in totals]
    elif auto_pad == "VALID":
        pads = [(0, 0)] * dims
    else:
        flat = node.attr("pads", [0] * (2 * dims))
        pads = list(zip(flat[:dims], flat[dims:]))
    bias = node.const(2)
    return ConvTranspose(node.tensor(weight), None if bias is None else node.tensor(np.asarray(bias).reshape(-1)),
                         strides, pads, output_padding, dilations, groups)


@torch_op(torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
def _torch_conv_transpose(node: SourceNode) -> ConvTranspose:
    module = node.module
    if module.padding_mode != "zeros":
        raise node.unsupported(f"padding_mode={module.padding_mode!r}")
    weight = module.weight.detach().clone().to(node.dtype)
    bias = None if module.bias is None else module.bias.detach().clone().to(node.dtype)
    return ConvTranspose(weight, bias, module.stride, [(p, p) for p in module.padding], module.output_padding,
                         module.dilation, module.groups)
