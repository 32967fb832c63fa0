"""The CROWN backward step through an elementwise relaxation, fused (CROWN, Zhang et al. 2018, Thm 3.2).

``relaxed_backward(A, relaxation)`` and ``relu_backward(A, lower, upper)`` turn coefficients ``A`` on the
output of a nonlinearity into coefficients on its input plus a constant, picking the lower line where a
coefficient is non-negative and the upper line where it is negative. The native kernels do the split, the
slope selection and the intercept sum in one pass over ``A``; ``relu_backward`` also forms the ReLU
relaxation from the pre-activation bounds on the fly. The references are
:func:`verifier.primitives.relaxed_backward` and :func:`verifier.primitives.relu_backward`.

Gradients (alpha-CROWN optimises slopes) flow to every tensor operand; at a coefficient exactly 0 the native
rule takes the lower line's derivative (the reference's ``clamp`` rule adds both).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier import primitives
from verifier.kernels import library
from verifier.primitives import LinearRelaxation


def relaxed_backward(A: Tensor, relaxation: LinearRelaxation) -> tuple[Tensor, Tensor | None]:
    """One CROWN backward step through an elementwise relaxation: ``(A_z, bias)`` with
    ``A_z = A+ * lower_slope + A- * upper_slope`` and ``bias = sum(A+ * lower_intercept + A- * upper_intercept)``.

    Same contract as :func:`verifier.primitives.relaxed_backward`: ``A`` is ``[b, K, *shape]``, the
    relaxation's tensors ``[B, *shape]`` or ``[B, K, *shape]``; ``bias`` is ``[B, K]`` or None.
    """
    parts = (relaxation.lower_slope, relaxation.lower_intercept, relaxation.upper_slope, relaxation.upper_intercept)
    if library.use_native(A, *parts):
        rows = _canonical_rows(A, parts)
        if rows is not None:
            A_z, bias = torch.ops.verifier.relaxed_backward(_flat(A), *rows)
            has_bias = relaxation.lower_intercept is not None or relaxation.upper_intercept is not None
            return A_z.reshape(A_z.shape[0], *A.shape[1:]), bias if has_bias else None
    return primitives.relaxed_backward(A, relaxation)


def relu_backward(
    A: Tensor, lower: Tensor, upper: Tensor, lower_slope: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The CROWN backward step through a ReLU with pre-activation bounds ``[lower, upper]`` (``[B, *shape]``).

    Equals ``relaxed_backward(A, relu_relaxation(lower, upper, lower_slope))``: the chord above unstable
    neurons, the adaptive lower slope below them (or ``lower_slope``, ``[B, *shape]`` or ``[B, K, *shape]``,
    alpha-CROWN), exact lines on stable neurons. Returns ``(A_z [B, K, *shape], bias [B, K])``.
    """
    if library.use_native(A, lower, upper, lower_slope):
        shape = tuple(A.shape[2:])
        bounds_ok = tuple(lower.shape[1:]) == shape and lower.shape == upper.shape
        alpha = _canonical_rows(A, (lower_slope,)) if lower_slope is not None else (None,)
        if bounds_ok and alpha is not None:
            n = math.prod(shape)
            A_z, bias = torch.ops.verifier.relu_backward(
                _flat(A), lower.reshape(-1, n).contiguous(), upper.reshape(-1, n).contiguous(), alpha[0]
            )
            return A_z.reshape(A_z.shape[0], *A.shape[1:]), bias
    return primitives.relu_backward(A, lower, upper, lower_slope)


# -- canonical layouts ---------------------------------------------------------------------------------------
def _flat(A: Tensor) -> Tensor:
    """``A`` as a contiguous ``[b, K, N]`` tensor."""
    return A.reshape(A.shape[0], A.shape[1], -1).contiguous()


def _canonical_rows(A: Tensor, parts: tuple[Tensor | None, ...]) -> list[Tensor | None] | None:
    """Each per-neuron operand as a contiguous ``[1|B, 1|K, N]`` tensor, or None when one has another layout
    (then the reference, which broadcasts anything, runs)."""
    shape = tuple(A.shape[2:])
    rows = A.shape[1]
    n = math.prod(shape)
    out: list[Tensor | None] = []
    for t in parts:
        if t is None:
            out.append(None)
        elif t.dim() == A.dim() - 1 and tuple(t.shape[1:]) == shape:
            out.append(t.reshape(t.shape[0], 1, n).contiguous())
        elif t.dim() == A.dim() and tuple(t.shape[2:]) == shape and t.shape[1] in (1, rows):
            out.append(t.reshape(t.shape[0], t.shape[1], n).contiguous())
        else:
            return None
    return out


def _out_batch(*operands: Tensor | None) -> int:
    sizes = [t.shape[0] for t in operands if t is not None]
    return max(sizes)


# -- fake (meta) and autograd rules of the native ops ---------------------------------------------------------
def _relaxed_fake(A, lower_slope, lower_intercept, upper_slope, upper_intercept):
    batch = _out_batch(A, lower_slope, lower_intercept, upper_slope, upper_intercept)
    return A.new_empty(batch, A.shape[1], A.shape[2]), A.new_empty(batch, A.shape[1])


def _relu_fake(A, lower, upper, lower_slope):
    batch = _out_batch(A, lower, lower_slope)
    return A.new_empty(batch, A.shape[1], A.shape[2]), A.new_empty(batch, A.shape[1])


def _save_inputs(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _relaxed_grads(ctx, grad_A_z: Tensor, grad_bias: Tensor):
    """Derivatives of (A_z, bias) = relaxed_backward(A, ls, li, us, ui) w.r.t. every operand."""
    A, lower_slope, lower_intercept, upper_slope, upper_intercept = ctx.saved_tensors
    needs = ctx.needs_input_grad
    positive = A >= 0
    g_bias = grad_bias.unsqueeze(-1)
    grad_A = None
    if needs[0]:
        on_lower = grad_A_z * lower_slope
        on_upper = grad_A_z * upper_slope
        if lower_intercept is not None:
            on_lower = on_lower + g_bias * lower_intercept
        if upper_intercept is not None:
            on_upper = on_upper + g_bias * upper_intercept
        grad_A = torch.where(positive, on_lower, on_upper).sum_to_size(A.shape)

    def picked(side: Tensor, grad: Tensor, like: Tensor | None, need: bool) -> Tensor | None:
        if like is None or not need:
            return None
        return torch.where(side, grad * A, 0).sum_to_size(like.shape)

    negative = ~positive
    return (
        grad_A,
        picked(positive, grad_A_z, lower_slope, needs[1]),
        picked(positive, g_bias, lower_intercept, needs[2]),
        picked(negative, grad_A_z, upper_slope, needs[3]),
        picked(negative, g_bias, upper_intercept, needs[4]),
    )


def _relu_grads(ctx, grad_A_z: Tensor, grad_bias: Tensor):
    """Derivatives of relu_backward(A, lower, upper, alpha). When only A and alpha need them (branch and
    bound: the domains' pre-activation bounds are fixed), the native ``relu_backward_grad`` computes both in
    one pass; otherwise :func:`_relu_grads_reference`."""
    A, lower, upper, alpha = ctx.saved_tensors
    needs = ctx.needs_input_grad
    if not (needs[1] or needs[2]) and library.use_native(grad_A_z, grad_bias, A, lower, upper, alpha):
        want_alpha = alpha is not None and needs[3]
        grad_A, grad_alpha = torch.ops.verifier.relu_backward_grad(
            grad_A_z.contiguous(), grad_bias.contiguous(), A, lower, upper, alpha, want_alpha)
        return (grad_A.sum_to_size(A.shape) if needs[0] else None, None, None,
                grad_alpha.sum_to_size(alpha.shape) if want_alpha else None)
    return _relu_grads_reference(ctx.saved_tensors, needs, grad_A_z, grad_bias)


def _relu_grads_reference(saved: tuple, needs: tuple, grad_A_z: Tensor, grad_bias: Tensor):
    """The pure-PyTorch derivatives of relu_backward: through the relaxed step and through the chord's
    dependence on the pre-activation bounds (the adaptive slope is piecewise constant)."""
    A, lower, upper, alpha = saved
    low, up = lower.unsqueeze(1), upper.unsqueeze(1)  # [Bl, 1, N]
    relaxation = primitives.relu_relaxation(low, up, alpha)
    positive = A >= 0
    negative = ~positive
    g_bias = grad_bias.unsqueeze(-1)
    grad_A = grad_lower = grad_upper = grad_alpha = None
    if needs[0]:
        on_lower = grad_A_z * relaxation.lower_slope
        on_upper = grad_A_z * relaxation.upper_slope + g_bias * relaxation.upper_intercept
        grad_A = torch.where(positive, on_lower, on_upper).sum_to_size(A.shape)
    if needs[1] or needs[2]:
        grad_us = torch.where(negative, grad_A_z * A, 0).sum_to_size(low.shape)
        grad_ui = torch.where(negative, g_bias * A, 0).sum_to_size(low.shape)
        # chord slope us = u+ / (u+ - l-) and intercept ui = -us * l-, with l- = min(l, 0), u+ = max(u, 0)
        l_neg, u_pos = low.clamp(max=0), up.clamp(min=0)
        width = u_pos - l_neg
        chord = width > 0
        square = torch.where(chord, width, 1) ** 2
        dus_dl = torch.where(chord, u_pos / square, 0)
        dus_du = torch.where(chord, -l_neg / square, 0)
        us = relaxation.upper_slope
        grad_l_neg = grad_us * dus_dl - grad_ui * (dus_dl * l_neg + us)
        grad_u_pos = grad_us * dus_du - grad_ui * dus_du * l_neg
        if needs[1]:
            grad_lower = torch.where(low <= 0, grad_l_neg, 0).squeeze(1)
        if needs[2]:
            grad_upper = torch.where(up >= 0, grad_u_pos, 0).squeeze(1)
    if alpha is not None and needs[3]:
        unstable = (low < 0) & (up > 0)
        grad_alpha = torch.where(positive & unstable, grad_A_z * A, 0).sum_to_size(alpha.shape)
    return grad_A, grad_lower, grad_upper, grad_alpha


def _relu_grad_fake(grad_A_z, grad_bias, A, lower, upper, lower_slope, alpha_grad):
    batch = _out_batch(A, lower, lower_slope)
    alpha_batch = batch if alpha_grad and lower_slope is not None else 0
    return A.new_empty(batch, A.shape[1], A.shape[2]), A.new_empty(alpha_batch, A.shape[1], A.shape[2])


def _register() -> None:
    torch.library.register_fake("verifier::relaxed_backward")(_relaxed_fake)
    torch.library.register_fake("verifier::relu_backward")(_relu_fake)
    torch.library.register_fake("verifier::relu_backward_grad")(_relu_grad_fake)
    torch.library.register_autograd("verifier::relaxed_backward", _relaxed_grads, setup_context=_save_inputs)
    torch.library.register_autograd("verifier::relu_backward", _relu_grads, setup_context=_save_inputs)


library.on_load(_register)
