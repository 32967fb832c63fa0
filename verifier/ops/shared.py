"""Operators that share a torch module's parameters instead of copying them (certified training).

A network built with ``from_torch(module, example, share_parameters=True)`` holds the module's live
``nn.Parameter`` tensors: no copy, no detach. Everything derived from them (``|W|``, a BatchNorm folded into
the layer before it) is recomputed from them at each use, so IBP and CROWN bounds are differentiable
functions of the parameters and ``loss.backward()`` reaches the module, and an optimiser step is seen by
the next bound computation.

* :class:`LiveAffine`: the weight and bias of a dense or convolutional layer as functions of live tensors:
  the layer's own, then every per-channel scale and shift folded after it.
* :class:`SharedBatchNorm`: an inference-mode BatchNorm (running statistics, the function the module
  computes in ``eval()`` mode and the one exported to ONNX) whose scale ``gamma / sqrt(var + eps)`` and shift
  ``beta - mean * scale`` are recomputed from the module at each use.
* :func:`share_module_parameters`: the shared version of the operator a torch converter made for a module.
* :func:`fold_shared`: BatchNorm folding (:mod:`verifier.frontend.simplify`) when either side is shared.

ONNX-loaded networks and the default ``from_torch`` copy their weights and are not affected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.errors import ModelLoadError, VerifierError
from verifier.ops.base import Operator
from verifier.ops.elementwise import Affine

#: modules whose parameters a shared network can hold (others with trainable parameters are refused)
SHARED_MODULES = "Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, BatchNorm1d/2d/3d"


@dataclass(frozen=True)
class ChannelAffine:
    """A per-channel ``y = x * scale + shift`` folded after a layer; each is a function returning a vector
    over the layer's output channels (or ``None`` for 1 and 0), evaluated at each use."""

    scale: Callable[[], Tensor | None]
    shift: Callable[[], Tensor | None]


class LiveAffine:
    """Weight and bias of an affine layer computed from live tensors at each use.

    ``weight`` (``[out, ...]``) and ``bias`` (``[out]`` or None) are held as given (for a shared module, its
    ``nn.Parameter`` objects); ``folds`` are applied in order: ``W <- W * scale[:, None...]``,
    ``b <- b * scale + shift``.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, folds: Sequence[ChannelAffine] = ()):
        self.raw_weight = weight
        self.raw_bias = bias
        self.folds = tuple(folds)

    def weight(self) -> Tensor:
        """The layer's effective weight (the raw tensor itself when nothing is folded)."""
        weight = self.raw_weight
        for fold in self.folds:
            scale = fold.scale()
            if scale is not None:
                weight = weight * scale.reshape(-1, *[1] * (weight.dim() - 1))
        return weight

    def bias(self) -> Tensor | None:
        """The layer's effective bias (None when it has none and nothing is folded)."""
        bias = self.raw_bias
        for fold in self.folds:
            scale, shift = fold.scale(), fold.shift()
            if scale is not None and bias is not None:
                bias = bias * scale
            if shift is not None:
                bias = shift if bias is None else bias + shift
        return bias

    def folded(self, fold: ChannelAffine) -> LiveAffine:
        """The same layer followed by the per-channel affine map ``fold``."""
        return LiveAffine(self.raw_weight, self.raw_bias, (*self.folds, fold))

    def tensors(self) -> dict[str, Tensor]:
        """The raw tensors (for dtype and device checks; the folded ones are computed, never stored)."""
        found = {"weight": self.raw_weight}
        if self.raw_bias is not None:
            found["bias"] = self.raw_bias
        for i, fold in enumerate(self.folds):
            for key, value in (("scale", fold.scale()), ("shift", fold.shift())):
                if value is not None:
                    found[f"fold{i}_{key}"] = value
        return found


def check_shared_placement(op: Operator, tensors: dict[str, Tensor], dtype, device) -> None:
    """Raise if ``Operator.to(dtype, device)`` would have to copy shared parameters (which would break the
    sharing); moving the module itself moves them (``module.to(...)`` keeps the parameter objects)."""
    for value in tensors.values():
        if not value.is_floating_point():
            continue
        moved = device is not None and value.device != torch.device(device)
        if (dtype is not None and value.dtype != dtype) or moved:
            raise VerifierError(
                f"{op.describe()} shares the parameters of a torch module ({value.dtype}, {value.device}); "
                "it cannot be cast or moved on its own: move the module (module.to(...)) and keep using the "
                "network, or build it with share_parameters=False for a copy"
            )


class SharedBatchNorm(Affine):
    """Inference-mode BatchNorm over axis 1 with scale and shift read from a live ``nn.BatchNorm*d`` module at
    each use: ``scale = gamma / sqrt(running_var + eps)``, ``shift = beta - running_mean * scale``."""

    op_type = "SharedBatchNorm"

    def __init__(self, module: torch.nn.modules.batchnorm._BatchNorm, input_shape: Sequence[int]):
        self.module = module
        self.input_shape = tuple(input_shape)
        self._trailing = (1,) * (len(self.input_shape) - 2)

    def channel_scale(self) -> Tensor:
        bn = self.module
        scale = torch.rsqrt(bn.running_var + bn.eps)
        return scale * bn.weight if bn.affine else scale

    def channel_shift(self) -> Tensor:
        bn = self.module
        shift = -bn.running_mean * self.channel_scale()
        return shift + bn.bias if bn.affine else shift

    @property
    def scale(self) -> Tensor:
        return self.channel_scale().reshape(-1, *self._trailing)

    @property
    def shift(self) -> Tensor:
        return self.channel_shift().reshape(-1, *self._trailing)

    def as_fold(self) -> ChannelAffine:
        return ChannelAffine(self.channel_scale, self.channel_shift)

    def constants(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.module.named_parameters()} | {k: v for k, v in self.module.named_buffers()
                                                                       if v.is_floating_point()}

    def to(self, dtype=None, device=None) -> Operator:
        check_shared_placement(self, self.constants(), dtype, device)
        return self

    def describe(self) -> str:
        return "BatchNorm (shared)"


def share_module_parameters(op: Operator, module: torch.nn.Module, node_name: str) -> Operator:
    """The operator a torch converter made from ``module`` (with copied weights), rebuilt to hold the
    module's live parameters; modules without trainable parameters keep their operator."""
    from verifier.ops.conv import Conv, ConvTranspose, SharedConv, SharedConvTranspose
    from verifier.ops.linear import Linear, SharedLinear

    if isinstance(module, torch.nn.Linear) and type(op) is Linear:
        return SharedLinear(LiveAffine(module.weight, module.bias))
    if isinstance(module, torch.nn.modules.conv._ConvNd) and not module.transposed and type(op) is Conv:
        return SharedConv.from_conv(op, LiveAffine(module.weight, module.bias))
    if isinstance(module, torch.nn.modules.conv._ConvTransposeNd) and type(op) is ConvTranspose:
        return SharedConvTranspose.from_conv(op, LiveAffine(module.weight, module.bias))
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and type(op) is Affine:
        return SharedBatchNorm(module, op.input_shape)
    if any(p.requires_grad for p in module.parameters()):
        raise ModelLoadError(
            f"share_parameters=True: cannot share the parameters of {type(module).__name__} at node "
            f"{node_name!r}; shared parameters are supported for {SHARED_MODULES}"
        )
    return op


class _Constant:
    """A function returning a fixed value (a picklable ``lambda: value``)."""

    def __init__(self, value: Tensor | None):
        self.value = value

    def __call__(self) -> Tensor | None:
        return self.value


def _constant_fold(scale: Tensor | None, shift: Tensor | None) -> ChannelAffine:
    return ChannelAffine(_Constant(scale), _Constant(shift))


def is_shared(op: Operator) -> bool:
    """Whether ``op`` reads live module parameters."""
    return isinstance(getattr(op, "source", None), LiveAffine) or isinstance(op, SharedBatchNorm)


def fold_shared(op: Operator, affine: Affine, scale: Tensor | None | bool, shift: Tensor | None | bool):
    """Fold ``affine`` (after the Linear or Conv ``op``) into one layer when either is shared; ``scale`` and
    ``shift`` are the constant per-channel vectors of a constant ``affine`` (``False``: not per channel).
    Returns the shared layer, or None when the fold does not apply."""
    from verifier.ops.conv import Conv, SharedConv
    from verifier.ops.linear import Linear, SharedLinear

    if isinstance(affine, SharedBatchNorm):
        fold = affine.as_fold()
    elif scale is False or shift is False:
        return None
    else:
        fold = _constant_fold(scale, shift)
    source = op.source if is_shared(op) else LiveAffine(op.weight, op.bias)
    source = source.folded(fold)
    if isinstance(op, Linear):
        return SharedLinear(source)
    if isinstance(op, Conv):
        return SharedConv.from_conv(op, source)
    return None
