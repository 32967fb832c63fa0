"""The native ops as PyTorch ops: opcheck (schema, fake/meta rule, autograd registration, AOT tracing),
gradients against finite differences (gradcheck, float64) and against the references' autograd, and tracing
through the wrappers by torch.compile."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import box, coefficients, generator, pre_activation_bounds

from verifier import kernels, primitives
from verifier.primitives import LinearRelaxation

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="native kernels not built")

ops = torch.ops.verifier if kernels.native_available() else None
F64 = torch.float64


def relaxed_operands(b, B, K, n, per_row, intercepts, g, dtype=F64, grad=False):
    A = coefficients(b, K, (n,), dtype, g, away_from_zero=True)
    rows = K if per_row else 1
    ls, us = torch.rand(B, rows, n, generator=g, dtype=dtype), torch.rand(B, rows, n, generator=g, dtype=dtype)
    li = torch.randn(B, rows, n, generator=g, dtype=dtype) if intercepts[0] else None
    ui = torch.randn(B, rows, n, generator=g, dtype=dtype) if intercepts[1] else None
    args = [A, ls, li, us, ui]
    return [t.requires_grad_(grad) if t is not None else None for t in args]


def relu_operands(b, B, K, n, alpha, g, dtype=F64, grad=False):
    A = coefficients(b, K, (n,), dtype, g, away_from_zero=True)
    lower, upper = pre_activation_bounds(B, (n,), dtype, g, kind="generic")
    slope = None
    if alpha is not None:
        slope = torch.rand(B, K if alpha == "per_row" else 1, n, generator=g, dtype=dtype)
    args = [A, lower, upper, slope]
    return [t.requires_grad_(grad) if t is not None else None for t in args]


@pytest.mark.parametrize("layout", [(1, 3, 2, 5), (3, 3, 4, 17)])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("intercepts", [(False, True), (True, True), (False, False)])
def test_opcheck_relaxed_backward(layout, per_row, intercepts):
    args = relaxed_operands(*layout, per_row, intercepts, generator(1), dtype=torch.float32, grad=True)
    torch.library.opcheck(ops.relaxed_backward.default, tuple(args))


@pytest.mark.parametrize("layout", [(1, 3, 2, 5), (3, 3, 4, 17)])
@pytest.mark.parametrize("alpha", [None, "shared", "per_row"])
def test_opcheck_relu_backward(layout, alpha):
    args = relu_operands(*layout, alpha, generator(2), dtype=torch.float32, grad=True)
    torch.library.opcheck(ops.relu_backward.default, tuple(args))


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("b", [1, 4])
def test_opcheck_concretize_box(with_bias, b):
    g = generator(3)
    A = coefficients(b, 3, (9,), torch.float32, g).requires_grad_()
    lower, upper = box(b, (9,), torch.float32, g)
    bias = torch.randn(b, 3, generator=g).requires_grad_() if with_bias else None
    torch.library.opcheck(ops.concretize_box.default, (A, bias, lower.requires_grad_(), upper.requires_grad_()))


@pytest.mark.parametrize("with_bias", [False, True])
def test_opcheck_interval_linear(with_bias):
    g = generator(4)
    lower, upper = box(6, (5,), torch.float32, g)
    weight = torch.randn(7, 5, generator=g)
    bias = torch.randn(7, generator=g).requires_grad_() if with_bias else None
    weight_abs = weight.abs()
    args = (lower.requires_grad_(), upper.requires_grad_(), weight.requires_grad_(), weight_abs.requires_grad_(), bias)
    torch.library.opcheck(ops.interval_linear.default, args)


@pytest.mark.parametrize("layout", [(1, 3, 2, 6), (2, 2, 3, 5)])
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("intercepts", [(False, True), (True, True)])
def test_gradcheck_relaxed_backward(layout, per_row, intercepts):
    args = relaxed_operands(*layout, per_row, intercepts, generator(5), grad=True)
    assert torch.autograd.gradcheck(lambda *a: ops.relaxed_backward(*a), tuple(args))


@pytest.mark.parametrize("layout", [(1, 3, 2, 6), (2, 2, 3, 5)])
@pytest.mark.parametrize("alpha", [None, "shared", "per_row"])
def test_gradcheck_relu_backward(layout, alpha):
    args = relu_operands(*layout, alpha, generator(6), grad=True)
    assert torch.autograd.gradcheck(lambda *a: ops.relu_backward(*a), tuple(args))


@pytest.mark.parametrize("b", [1, 3])
def test_gradcheck_concretize_box(b):
    g = generator(7)
    A = coefficients(b, 2, (6,), F64, g, away_from_zero=True).requires_grad_()
    lower, upper = box(b, (6,), F64, g)
    bias = torch.randn(b, 2, generator=g, dtype=F64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda *a: ops.concretize_box(*a), (A, bias, lower.requires_grad_(), upper.requires_grad_()))


def test_gradcheck_interval_linear():
    g = generator(8)
    lower, upper = box(4, (5,), F64, g)
    weight = torch.randn(3, 5, generator=g, dtype=F64)
    weight_abs = weight.abs()
    args = (lower.requires_grad_(), upper.requires_grad_(), weight.requires_grad_(), weight_abs.requires_grad_(),
            torch.randn(3, generator=g, dtype=F64).requires_grad_())
    assert torch.autograd.gradcheck(lambda *a: ops.interval_linear(*a), args)


def grads_of(fn, tensors, weights):
    out = fn()
    loss = sum((o * w).sum() for o, w in zip(out, weights) if o is not None)
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("alpha", [None, "shared", "per_row"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_gradients_match_reference_autograd(alpha, dtype):
    """alpha-CROWN's view: d(bound)/d(alpha, A, pre-activation bounds) through the wrapper equals the
    reference's autograd (away from the kinks at A = 0 and at l, u = 0)."""
    g = generator(9)
    A, lower, upper, slope = relu_operands(1, 4, 3, 10, alpha, g, dtype=dtype, grad=True)
    slope_full = None if slope is None else (slope.squeeze(1) if alpha == "shared" else slope)
    tensors = [t for t in (A, lower, upper, slope) if t is not None]
    weights = (torch.randn(4, 3, 10, generator=g, dtype=dtype), torch.randn(4, 3, generator=g, dtype=dtype))
    native = grads_of(lambda: kernels.relu_backward(A, lower, upper, slope_full), tensors, weights)
    reference = grads_of(lambda: primitives.relu_backward(A, lower, upper, slope_full), tensors, weights)
    for n, r in zip(native, reference):
        torch.testing.assert_close(n, r)


@pytest.mark.parametrize("alpha", [None, "shared", "per_row"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("b", [1, 4])
def test_relu_gradients_with_fixed_bounds_use_the_native_rule(alpha, dtype, b):
    """Branch and bound's view: the pre-activation bounds are constants, so the fused relu_backward_grad gives
    d/dA and d/dalpha. They equal the Python rule bit for bit, also at A = 0 (a non-negative coefficient takes
    the lower line) and on stable neurons, and the reference's autograd away from A = 0 (where its clamp rule
    adds both lines' derivatives)."""
    from verifier.kernels.relaxation import _relu_grads_reference

    g = generator(12)
    A, lower, upper, slope = relu_operands(b, 4, 3, 37, alpha, g, dtype=dtype)
    lower[:, 3:6], upper[:, 3:6] = 0.5, 1.0            # stable active
    lower[:, 6:9], upper[:, 6:9] = -1.0, -0.5          # stable inactive
    slope_full = None if slope is None else (slope.squeeze(1) if alpha == "shared" else slope)
    weights = (torch.randn(4, 3, 37, generator=g, dtype=dtype), torch.randn(4, 3, generator=g, dtype=dtype))

    def leaves(zero_coefficients: bool):
        a = A.detach().clone()
        if zero_coefficients:
            a[..., :3] = 0.0
        s = None if slope_full is None else slope_full.detach().clone().requires_grad_()
        return a.requires_grad_(), s

    calls = []
    real = ops.relu_backward_grad

    def spy(*args):
        calls.append(args)
        return real(*args)

    for zero_coefficients in (False, True):
        a, s = leaves(zero_coefficients)
        tensors = [t for t in (a, s) if t is not None]
        torch.ops.verifier.relu_backward_grad = spy
        try:
            native = grads_of(lambda a=a, s=s: kernels.relu_backward(a, lower, upper, s), tensors, weights)
        finally:
            torch.ops.verifier.relu_backward_grad = real
        assert calls, "the native gradient rule did not run"
        grad_A_z, grad_bias, saved_A = calls[-1][0], calls[-1][1], calls[-1][2]
        saved_alpha = calls[-1][5]
        rule = _relu_grads_reference((saved_A, lower, upper, saved_alpha), (True, False, False, s is not None),
                                     grad_A_z, grad_bias)
        expected = [rule[0].reshape(a.shape)] + ([rule[3].reshape(s.shape)] if s is not None else [])
        for n, r in zip(native, expected):
            torch.testing.assert_close(n, r, rtol=0, atol=0)
        if not zero_coefficients:
            reference = grads_of(lambda a=a, s=s: primitives.relu_backward(a, lower, upper, s), tensors, weights)
            for n, r in zip(native, reference):
                torch.testing.assert_close(n, r)


@pytest.mark.parametrize("alpha", [None, "per_row"])
def test_gradcheck_relu_backward_with_fixed_bounds(alpha):
    A, lower, upper, slope = relu_operands(3, 3, 2, 9, alpha, generator(13))
    args = [A.requires_grad_(), lower, upper] + ([slope.requires_grad_()] if slope is not None else [None])
    assert torch.autograd.gradcheck(lambda *a: ops.relu_backward(*a), tuple(args))


@pytest.mark.parametrize("alpha_grad", [False, True])
def test_opcheck_relu_backward_grad(alpha_grad):
    g = generator(14)
    A, lower, upper, slope = relu_operands(1, 3, 2, 11, "per_row", g, dtype=torch.float32)
    grad_A_z = torch.randn(3, 2, 11, generator=g)
    grad_bias = torch.randn(3, 2, generator=g)
    torch.library.opcheck(ops.relu_backward_grad.default, (grad_A_z, grad_bias, A, lower, upper, slope, alpha_grad))
    grad_A, grad_alpha = ops.relu_backward_grad(grad_A_z, grad_bias, A, lower, upper, slope, alpha_grad)
    assert grad_A.shape == (3, 2, 11) and grad_alpha.shape == ((3 if alpha_grad else 0), 2, 11)


def test_relaxed_and_concretize_gradients_match_reference_autograd():
    g = generator(10)
    A, ls, li, us, ui = relaxed_operands(3, 3, 2, 8, True, (True, True), g, grad=True)
    rel = LinearRelaxation(ls, li, us, ui)
    weights = (torch.randn(3, 2, 8, generator=g, dtype=F64), torch.randn(3, 2, generator=g, dtype=F64))
    native = grads_of(lambda: kernels.relaxed_backward(A, rel), [A, ls, li, us, ui], weights)
    reference = grads_of(lambda: primitives.relaxed_backward(A, rel), [A, ls, li, us, ui], weights)
    for n, r in zip(native, reference):
        torch.testing.assert_close(n, r)
    lower, upper = box(3, (8,), F64, g)
    lower.requires_grad_(), upper.requires_grad_()
    w = (torch.randn(3, 2, generator=g, dtype=F64),)
    native = grads_of(lambda: (kernels.concretize_box(A, None, lower, upper),), [A, lower, upper], w)
    reference = grads_of(lambda: (primitives.concretize_box(A, None, lower, upper),), [A, lower, upper], w)
    for n, r in zip(native, reference):
        torch.testing.assert_close(n, r)


def test_torch_compile_traces_the_wrappers():
    """torch.compile captures one graph through the wrappers (fake rules give the shapes), with and without
    gradients."""
    g = generator(11)
    A, lower, upper, slope = relu_operands(1, 5, 4, 12, "per_row", g, dtype=torch.float32)
    box_lower, box_upper = box(5, (12,), torch.float32, g)

    def step(A, lower, upper, slope):
        A_z, bias = kernels.relu_backward(A, lower, upper, slope)
        return kernels.concretize_box(A_z, bias, box_lower, box_upper)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(A, lower, upper, slope), step(A, lower, upper, slope))
    slope.requires_grad_()
    compiled(A, lower, upper, slope).sum().backward()
    expected = torch.autograd.grad(step(A, lower, upper, slope).sum(), slope)[0]
    torch.testing.assert_close(slope.grad, expected)
