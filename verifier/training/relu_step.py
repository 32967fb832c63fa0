"""The CROWN backward step through a ReLU, differentiable in the pre-activation bounds, for training.

Same numbers as :func:`verifier.kernels.relu_backward` (CROWN's relaxation: the chord above unstable neurons,
the adaptive slope below, exact lines on stable ones; Zhang et al. 2018), with a backward pass written for the
case training needs: gradients for the coefficients *and* for the bounds ``[lower, upper]`` (they depend on
the parameters), in a handful of elementwise passes and one batched product over the ``[B, K, N]``
coefficients. The generic autograd rule of the fused kernel serves alpha-CROWN and branch and bound, where
the bounds are constants; with bounds that need gradients it costs ~10x more here. Used by
:mod:`verifier.training.bounds` through the engine's backward hook, so the bound is the engine's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.activation import Relu
from verifier.ops.base import Interval


def _relaxation(lower: Tensor, upper: Tensor, slope: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(lower_slope, upper_slope, upper_intercept, l-, u+)`` of CROWN's ReLU relaxation (as
    :func:`verifier.primitives.relu_relaxation`; ``slope`` replaces the adaptive lower slope on unstable
    neurons, alpha-CROWN), with ``l- = min(l, 0)`` and ``u+ = max(u, 0)``."""
    l_neg, u_pos = lower.clamp(max=0), upper.clamp(min=0)
    width = u_pos - l_neg
    chord = width > 0
    upper_slope = torch.where(chord, u_pos / width.clamp(min=torch.finfo(width.dtype).tiny), (lower >= 0).to(width))
    lower_slope = ((upper > -lower) & (upper > 0)).to(lower.dtype)
    if slope is not None:
        lower_slope = torch.where((lower < 0) & (upper > 0), slope.to(lower.dtype), lower_slope)
    return lower_slope, upper_slope, -upper_slope * l_neg, l_neg, u_pos


class ReluStep(torch.autograd.Function):
    """``(A_z, bias) = relu_backward(A, lower, upper, slope)`` (``A`` ``[b, K, N]``, bounds ``[B, N]``, optional
    constant lower slopes ``[B, K, N]``), with gradients for ``A`` and the bounds."""

    @staticmethod
    def forward(ctx, A: Tensor, lower: Tensor, upper: Tensor, slope: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lower_slope, upper_slope, upper_intercept, l_neg, u_pos = _relaxation(
            lower.unsqueeze(1), upper.unsqueeze(1), slope)
        # few temporaries of A's size: fresh large buffers cost page faults, often more than the arithmetic
        A_neg = A.clamp(max=0)
        if torch.broadcast_shapes(A.shape, lower_slope.shape) == A.shape:
            A_z = torch.sub(A, A_neg).mul_(lower_slope).addcmul_(A_neg, upper_slope)
        else:  # one A for many boxes
            A_z = (A - A_neg) * lower_slope + A_neg * upper_slope
        bias = torch.matmul(A_neg, upper_intercept.transpose(1, 2)).squeeze(-1)  # sum_n A-[n] * ui[n]
        ctx.save_for_backward(A, A_neg, lower_slope, upper_slope, upper_intercept, l_neg, u_pos, lower, upper)
        return A_z, bias

    @staticmethod
    def backward(ctx, grad_A_z: Tensor, grad_bias: Tensor):
        A, A_neg, lower_slope, upper_slope, upper_intercept, l_neg, u_pos, lower, upper = ctx.saved_tensors
        grad_A = grad_lower = grad_upper = None
        g_bias = grad_bias.unsqueeze(-1)
        if ctx.needs_input_grad[0]:
            # A >= 0 takes the lower line (slope only), A < 0 the upper line (slope and intercept); the mask
            # is -sign(A-) in {0, 1}: comparisons and torch.where on large tensors cost ~10x an arithmetic pass
            sign = torch.sign(A_neg).expand_as(grad_A_z).contiguous()     # -1 where A < 0, else 0
            bias_part = (g_bias * upper_intercept).mul_(sign)              # -[A < 0] * g_bias * ui
            grad_A = sign.mul_(lower_slope - upper_slope).add_(lower_slope).mul_(grad_A_z).sub_(bias_part)
            grad_A = grad_A.sum_to_size(A.shape)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            batch = max(A_neg.shape[0], lower.shape[0])
            A_neg_b = A_neg.expand(batch, *A_neg.shape[1:])
            grad_us = (grad_A_z * A_neg_b).sum(1, keepdim=True)                       # [B, 1, N]
            grad_ui = torch.matmul(grad_bias.unsqueeze(1), A_neg_b)                   # [B, 1, N]
            # chord slope us = u+ / (u+ - l-) and intercept ui = -us * l- on neurons with u+ > l-
            width = u_pos - l_neg
            chord = (width > 0).to(width.dtype)
            square = width * width * chord + (1 - chord)
            dus_dl, dus_du = chord * u_pos / square, -chord * l_neg / square
            grad_l_neg = grad_us * dus_dl - grad_ui * (dus_dl * l_neg + upper_slope)
            grad_u_pos = grad_us * dus_du - grad_ui * dus_du * l_neg
            low, up = lower.unsqueeze(1), upper.unsqueeze(1)
            if ctx.needs_input_grad[1]:
                grad_lower = (grad_l_neg * (low <= 0).to(low.dtype)).sum_to_size(low.shape).squeeze(1)
            if ctx.needs_input_grad[2]:
                grad_upper = (grad_u_pos * (up >= 0).to(up.dtype)).sum_to_size(up.shape).squeeze(1)
        return grad_A, grad_lower, grad_upper, None


def relu_step(A: Tensor, lower: Tensor, upper: Tensor, slope: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The CROWN step through a ReLU for coefficients ``A`` ``[b, K, *shape]`` and pre-activation bounds
    ``[B, *shape]`` (``slope``: constant alpha-CROWN lower slopes ``[B, K, *shape]``):
    ``(A_z [max(b, B), K, *shape], bias [max(b, B), K])``."""
    batch = lower.shape[0]
    flat = A.reshape(A.shape[0], A.shape[1], -1)
    if slope is not None:
        slope = slope.detach().reshape(slope.shape[0], slope.shape[1], -1)
    A_z, bias = ReluStep.apply(flat, lower.reshape(batch, -1), upper.reshape(batch, -1), slope)
    return A_z.reshape(A_z.shape[0], *A.shape[1:]), bias


def relu_hook(slopes: dict[str, Tensor] | None = None, start: str | None = None):
    """A CROWN backward hook taking the ReLU nodes' steps (:func:`relu_step`; with the constant lower
    ``slopes`` of a node on the pass from ``start``, alpha-CROWN); None (the operator's rule) elsewhere."""

    def hook(node: Node, begin: str, A: Tensor, bounds: dict[str, Interval]):
        if not isinstance(node.op, Relu):
            return None
        slope = slopes.get(node.name) if slopes is not None and begin == start else None
        lower, upper = bounds[node.inputs[0]]
        A_z, bias = relu_step(A, lower, upper, slope)
        return [A_z], bias

    return hook
