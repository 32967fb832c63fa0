"""Concretisation of linear bounds over input boxes, fused: ``min over the box of A . x + bias``.

The native kernel evaluates ``A . c - |A| . r + bias`` (``c``, ``r`` the box centre and radius) in one pass
over each row of ``A``, forming ``c`` and ``r`` on the fly and never materialising ``|A|``; it serves many
sub-domains at once (``A`` with one row block per box). A single ``A`` shared by many boxes is a matrix
product, which stays with BLAS (the reference). Reference: :func:`verifier.primitives.concretize_box`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier import primitives
from verifier.kernels import library


def concretize_box(A: Tensor, bias: Tensor | None, lower: Tensor, upper: Tensor) -> Tensor:
    """Minimum of ``A . x + bias`` over each box ``lower <= x <= upper``: ``[B, K]``.

    Same contract as :func:`verifier.primitives.concretize_box`: ``A`` is ``[b, K, *shape]``, the boxes
    ``[B, *shape]``, ``bias`` ``[b, K]`` or None.
    """
    if library.use_native(A, bias, lower, upper) and (A.shape[0] != 1 or lower.shape[0] == 1):
        n = math.prod(A.shape[2:])
        shaped = lower.shape == upper.shape and tuple(lower.shape[1:]) == tuple(A.shape[2:])
        if shaped and (bias is None or bias.dim() == 2):
            return torch.ops.verifier.concretize_box(
                A.reshape(A.shape[0], A.shape[1], n).contiguous(),
                None if bias is None else bias.contiguous(),
                lower.reshape(lower.shape[0], n).contiguous(),
                upper.reshape(upper.shape[0], n).contiguous(),
            )
    return primitives.concretize_box(A, bias, lower, upper)


def _fake(A, bias, lower, upper):
    batch = max(A.shape[0], lower.shape[0], bias.shape[0] if bias is not None else 1)
    return A.new_empty(batch, A.shape[1])


def _save_inputs(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _grads(ctx, grad: Tensor):
    """Derivatives of ``A . c - |A| . r + bias`` (``c = (l + u) / 2``, ``r = (u - l) / 2`` up to rounding)."""
    A, bias, lower, upper = ctx.saved_tensors
    needs = ctx.needs_input_grad
    center, radius = primitives.center_radius(lower, upper)
    center, radius = center.unsqueeze(1), radius.unsqueeze(1)
    g = grad.unsqueeze(-1)
    grad_A = grad_bias = grad_lower = grad_upper = None
    if needs[0]:
        grad_A = (g * (center - A.sign() * radius)).sum_to_size(A.shape)
    if bias is not None and needs[1]:
        grad_bias = grad.sum_to_size(bias.shape)
    if needs[2] or needs[3]:
        grad_center = (g * A).sum(1).sum_to_size(lower.shape)
        grad_radius = -(g * A.abs()).sum(1).sum_to_size(lower.shape)
        # d center / d (l, u) = (1/2, 1/2); d radius / d (l, u) = (-1/2, 1/2) on either branch of the max
        if needs[2]:
            grad_lower = (grad_center - grad_radius) / 2
        if needs[3]:
            grad_upper = (grad_center + grad_radius) / 2
    return grad_A, grad_bias, grad_lower, grad_upper


def _register() -> None:
    torch.library.register_fake("verifier::concretize_box")(_fake)
    torch.library.register_autograd("verifier::concretize_box", _grads, setup_context=_save_inputs)


library.on_load(_register)
