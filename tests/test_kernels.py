"""Parity of the native kernels with their pure-PyTorch references (verifier.primitives), on the CPU and, where
present, on CUDA: many layouts, float32/float64, broadcasting, per-row slopes, empty and degenerate cases.

The elementwise outputs (the new coefficients A_z, the interval bounds' elementwise parts) are computed with the
same IEEE operations as the reference and must be equal; sums over neurons (the bias, the concretised value) may
differ by the rounding of another summation order, bounded by a few ulps of the sum of the absolute terms.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernel_cases import assert_sums_close, box, coefficients, generator, pre_activation_bounds, relaxation

from verifier import kernels, primitives
from verifier.primitives import LinearRelaxation

pytestmark = pytest.mark.skipif(not kernels.native_available(), reason="native kernels not built")

DTYPES = [torch.float32, torch.float64]
# (b, B, K, shape): b = 1 broadcasts one coefficient block over the B boxes
LAYOUTS = [
    (1, 1, 1, (7,)),
    (1, 5, 3, (33,)),
    (5, 5, 4, (50,)),
    (2, 2, 17, (129,)),
    (3, 3, 2, (16,)),
    (4, 4, 3, (2, 3, 5)),
    (1, 3, 6, (3, 4, 4)),
    (6, 6, 1, (1,)),
    (3, 3, 2, (0,)),
    (0, 0, 3, (5,)),
    (2, 2, 0, (5,)),
]
INTERCEPTS = [(False, False), (False, True), (True, False), (True, True)]


def native_relaxed(A, rel: LinearRelaxation):
    n = math.prod(A.shape[2:])

    def rows(t):
        if t is None:
            return None
        return t.reshape(t.shape[0], 1 if t.dim() == A.dim() - 1 else t.shape[1], n).contiguous()

    A_z, bias = torch.ops.verifier.relaxed_backward(
        A.reshape(A.shape[0], A.shape[1], n), rows(rel.lower_slope), rows(rel.lower_intercept),
        rows(rel.upper_slope), rows(rel.upper_intercept))
    return A_z.reshape(A_z.shape[0], *A.shape[1:]), bias


def bias_terms(A, rel: LinearRelaxation):
    """Sum over neurons of |A| * |intercept| (the scale of the bias's rounding)."""
    total = torch.zeros(())
    for t in (rel.lower_intercept, rel.upper_intercept):
        if t is not None:
            t = t.unsqueeze(1) if t.dim() == A.dim() - 1 else t
            total = total + (A.abs() * t.abs()).flatten(2).sum(-1)
    return total


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("intercepts", INTERCEPTS)
def test_relaxed_backward_matches_reference(dtype, layout, per_row, intercepts):
    b, B, K, shape = layout
    g = generator(hash((layout, per_row, intercepts)) % 1000)
    A = coefficients(b, K, shape, dtype, g)
    rel = relaxation(B, K, shape, dtype, g, per_row, *intercepts)
    expected_A, expected_bias = primitives.relaxed_backward(A, rel)
    actual_A, actual_bias = native_relaxed(A, rel)
    assert torch.equal(actual_A, expected_A)
    if expected_bias is None:
        assert not actual_bias.any()
    else:
        assert_sums_close(actual_bias, expected_bias, bias_terms(A, rel))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["mixed", "active", "dead"])
@pytest.mark.parametrize("alpha", [None, "shared", "per_row"])
def test_relu_backward_matches_reference(dtype, layout, kind, alpha):
    b, B, K, shape = layout
    g = generator(hash((layout, kind, alpha)) % 1000)
    A = coefficients(b, K, shape, dtype, g)
    lower, upper = pre_activation_bounds(B, shape, dtype, g, kind)
    slope = None
    if alpha is not None:
        lead = (B, K) if alpha == "per_row" else (B,)
        slope = torch.rand(*lead, *shape, generator=g, dtype=dtype)
    expected_A, expected_bias = primitives.relu_backward(A, lower, upper, slope)
    n = math.prod(shape)
    actual_A, actual_bias = torch.ops.verifier.relu_backward(
        A.reshape(b, K, n), lower.reshape(B, n), upper.reshape(B, n),
        None if slope is None else slope.reshape(B, K if alpha == "per_row" else 1, n))
    assert torch.equal(actual_A.reshape(expected_A.shape), expected_A)
    rel = primitives.relu_relaxation(lower, upper, slope)
    assert_sums_close(actual_bias, expected_bias, bias_terms(A, rel))
    if kind in ("active", "dead"):  # stable layers: exact relaxation, zero intercepts
        assert not actual_bias.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", [(b, B, K, s) for b, B, K, s in LAYOUTS if b == B or B == 1])
@pytest.mark.parametrize("bias", [None, "batched", "shared"])
def test_concretize_box_matches_reference(dtype, layout, bias):
    b, B, K, shape = layout
    g = generator(hash((layout, bias)) % 1000)
    A = coefficients(b, K, shape, dtype, g)
    lower, upper = box(B, shape, dtype, g)
    bias_t = None if bias is None else torch.randn(B if bias == "batched" else 1, K, generator=g, dtype=dtype)
    expected = primitives.concretize_box(A, bias_t, lower, upper)
    n = math.prod(shape)
    actual = torch.ops.verifier.concretize_box(A.reshape(b, K, n), bias_t, lower.reshape(B, n), upper.reshape(B, n))
    center, radius = primitives.center_radius(lower, upper)
    terms = (A.abs() * (center.abs() + radius).unsqueeze(1)).flatten(2).sum(-1)
    assert_sums_close(actual, expected, terms + (0 if bias_t is None else bias_t.abs()))


@pytest.mark.parametrize("with_bias", [False, True])
def test_concretize_reference_one_A_many_boxes(with_bias):
    """The reference's shared-A branch (two matrix products) against the minimum over every vertex of each box."""
    g = generator(11)
    A = torch.randn(1, 6, 4, generator=g, dtype=torch.float64)
    lower, upper = box(9, (4,), torch.float64, g)
    bias = torch.randn(1, 6, generator=g, dtype=torch.float64) if with_bias else None
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)  # [16, 4]
    vertices = lower[:, None] + (upper - lower)[:, None] * corners  # [9, 16, 4]
    exact = torch.einsum("kn,bvn->bvk", A[0], vertices).amin(1) + (0 if bias is None else bias)
    torch.testing.assert_close(primitives.concretize_box(A, bias, lower, upper), exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("boxes", [(1,), (7,), (5, 1), (0,), (3, 2)])
@pytest.mark.parametrize("sizes", [(5, 50), (50, 50), (784, 256), (3, 1)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_interval_linear_matches_reference(dtype, boxes, sizes, with_bias):
    n_in, n_out = sizes
    g = generator(hash((boxes, sizes, with_bias)) % 1000)
    lower, upper = box(math.prod(boxes), (n_in,), dtype, g)
    lower, upper = lower.reshape(*boxes, n_in), upper.reshape(*boxes, n_in)
    weight = torch.randn(n_out, n_in, generator=g, dtype=dtype)
    bias = torch.randn(n_out, generator=g, dtype=dtype) if with_bias else None
    expected = primitives.interval_linear(lower, upper, weight, weight.abs(), bias)
    actual = kernels.interval_linear(lower, upper, weight, weight.abs(), bias)
    center, radius = primitives.center_radius(lower, upper)
    scale = center.abs() @ weight.abs().T + radius @ weight.abs().T + (0 if bias is None else bias.abs())
    for a, e in zip(actual, expected):
        assert_sums_close(a, e, scale)
    assert bool((actual[0] <= actual[1]).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrappers_match_reference_on_engine_layouts(dtype):
    """The wrappers' reshaping: A [b, K, C, H, W] with slopes [B, C, H, W], boxes [B, 1, n], a shared A over
    many boxes (concretised by the reference's matrix product)."""
    g = generator(3)
    A = coefficients(1, 4, (2, 3, 3), dtype, g)
    lower, upper = pre_activation_bounds(6, (2, 3, 3), dtype, g)
    A_z, bias = kernels.relu_backward(A, lower, upper)
    e_A, e_bias = primitives.relu_backward(A, lower, upper)
    assert torch.equal(A_z, e_A)
    torch.testing.assert_close(bias, e_bias)
    rel = primitives.relu_relaxation(lower, upper)
    A_z, bias = kernels.relaxed_backward(A, rel)
    assert torch.equal(A_z, e_A)
    torch.testing.assert_close(bias, e_bias)
    box_lower, box_upper = box(6, (2, 3, 3), dtype, g)
    for A_in in (A, A_z):  # b = 1 (reference) and b = B (native)
        torch.testing.assert_close(
            kernels.concretize_box(A_in, None, box_lower, box_upper),
            primitives.concretize_box(A_in, None, box_lower, box_upper))


def test_unsupported_operands_fall_back_to_the_reference():
    """Half precision, mixed dtypes and slopes that broadcast inside the neuron shape run the reference."""
    g = generator(4)
    A = coefficients(2, 3, (4, 5), torch.float32, g)
    lower, upper = pre_activation_bounds(2, (4, 5), torch.float32, g)
    half = kernels.relu_backward(A.half(), lower.half(), upper.half())
    torch.testing.assert_close(half[0], primitives.relu_backward(A.half(), lower.half(), upper.half())[0])
    mixed = kernels.relu_backward(A.double(), lower, upper)
    assert mixed[0].dtype == torch.float64
    per_channel = LinearRelaxation(torch.rand(2, 4, 1), None, torch.rand(2, 4, 1), torch.rand(2, 4, 1))
    expected = primitives.relaxed_backward(A, per_channel)
    actual = kernels.relaxed_backward(A, per_channel)
    assert torch.equal(actual[0], expected[0])


def test_bad_operands_are_rejected_by_the_native_op():
    A = torch.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match="batch"):
        torch.ops.verifier.relaxed_backward(A, torch.rand(3, 1, 4), None, torch.rand(3, 1, 4), None)
    with pytest.raises(RuntimeError, match="neurons"):
        torch.ops.verifier.relu_backward(A, torch.rand(2, 5), torch.rand(2, 5), None)
    with pytest.raises(RuntimeError, match="float32 and float64"):
        torch.ops.verifier.concretize_box(A.half(), None, torch.rand(2, 4).half(), torch.rand(2, 4).half())


@pytest.mark.parametrize("variant", ["avx512", "avx2", "baseline"])
def test_every_cpu_variant_matches_reference(variant):
    """Each instruction-set variant of the CPU kernels (forced by VERIFIER_CPU_ISA in a subprocess; one the CPU
    lacks falls back to a narrower one, which the check reports) gives the references' results."""
    script = Path(__file__).resolve().parent / "kernel_variant_check.py"
    env = dict(os.environ, VERIFIER_CPU_ISA=variant)
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ran, status = result.stdout.split()
    assert status == "ok"
    if ran != variant:
        pytest.skip(f"this CPU has no {variant}; checked {ran}")
