"""The interval (IBP) step through a dense layer ``y = x W^T + b``, fused.

Output box of the input boxes ``[lower, upper]``: centre ``c W^T + b`` and radius ``r |W|^T`` (Gowal et al.
2018), returned as ``(centre - radius, centre + radius)``. The native kernel forms ``c`` and ``r`` in one pass,
leaves the two products to BLAS, and forms both output bounds in one pass over the products' buffers.
Reference: :func:`verifier.primitives.interval_linear`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from verifier import primitives
from verifier.kernels import library


def interval_linear(
    lower: Tensor, upper: Tensor, weight: Tensor, weight_abs: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Elementwise bounds of ``x W^T + b`` over the boxes ``lower <= x <= upper`` (``[..., in]`` -> ``[..., out]``).

    ``weight`` is ``[out, in]`` and ``weight_abs`` its elementwise absolute value.
    """
    if library.use_native(lower, upper, weight, weight_abs, bias) and lower.shape == upper.shape and lower.dim() >= 1:
        lead = lower.shape[:-1]
        guard = _ieee_float32_matmul() if lower.is_cuda and lower.dtype == torch.float32 else contextlib.nullcontext()
        with guard:
            out_lower, out_upper = torch.ops.verifier.interval_linear(
                lower.reshape(-1, lower.shape[-1]).contiguous(),
                upper.reshape(-1, upper.shape[-1]).contiguous(),
                weight,
                weight_abs,
                bias,
            )
        return out_lower.reshape(*lead, weight.shape[0]), out_upper.reshape(*lead, weight.shape[0])
    return primitives.interval_linear(lower, upper, weight, weight_abs, bias)


@contextlib.contextmanager
def _ieee_float32_matmul() -> Iterator[None]:
    """TF32 off for the two products on CUDA, whatever the process setting: a bound assumes IEEE float32
    rounding, and TF32 keeps only 10 bits of mantissa."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        saved = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = saved
    else:
        saved = matmul.allow_tf32
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = saved


def _fake(lower, upper, weight, weight_abs, bias):
    return lower.new_empty(lower.shape[0], weight.shape[0]), lower.new_empty(lower.shape[0], weight.shape[0])


def _save_inputs(ctx, inputs, output) -> None:
    lower, upper, weight, weight_abs, bias = inputs
    ctx.has_bias = bias is not None
    ctx.save_for_backward(lower, upper, weight, weight_abs)


def _grads(ctx, grad_lower: Tensor, grad_upper: Tensor):
    """Derivatives of ``(c W^T + b -+ r |W|^T)`` with ``c = (l + u) / 2``, ``r = (u - l) / 2``."""
    lower, upper, weight, weight_abs = ctx.saved_tensors
    needs = ctx.needs_input_grad
    grad_center = grad_lower + grad_upper  # of the output centre
    grad_radius = grad_upper - grad_lower  # of the output radius
    out = [None] * 5
    if needs[0] or needs[1]:
        g_c = grad_center @ weight
        g_r = grad_radius @ weight_abs
        out[0] = (g_c - g_r) / 2 if needs[0] else None
        out[1] = (g_c + g_r) / 2 if needs[1] else None
    if needs[2] or needs[3]:
        center, radius = primitives.center_radius(lower, upper)
        out[2] = grad_center.T @ center if needs[2] else None
        out[3] = grad_radius.T @ radius if needs[3] else None
    if ctx.has_bias and needs[4]:
        out[4] = grad_center.sum(0)
    return tuple(out)


def _register() -> None:
    torch.library.register_fake("verifier::interval_linear")(_fake)
    torch.library.register_autograd("verifier::interval_linear", _grads, setup_context=_save_inputs)


library.on_load(_register)
