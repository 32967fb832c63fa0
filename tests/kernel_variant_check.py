"""Parity of the CPU kernels with the references in this process's instruction-set variant.

Run as a script (``VERIFIER_CPU_ISA=avx2 python tests/kernel_variant_check.py``) by
``test_kernels.py::test_every_cpu_variant_matches_reference``; prints the variant and ``ok`` or raises.
Neuron counts straddle every register width (4, 8 and 16 lanes), so that full registers, the overlapping last
register and the scalar remainder are all exercised.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel_cases import assert_sums_close, box, coefficients, generator, pre_activation_bounds  # noqa: E402

from verifier import kernels, primitives  # noqa: E402
from verifier.primitives import LinearRelaxation  # noqa: E402

NEURONS = [1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 50, 64, 100]


def check(dtype: torch.dtype, n: int) -> None:
    g = generator(n)
    for b, B in ((1, 3), (3, 3)):
        A = coefficients(b, 4, (n,), dtype, g)
        lower, upper = pre_activation_bounds(B, (n,), dtype, g)
        alpha = torch.rand(B, 4, n, generator=g, dtype=dtype)
        for slope in (None, alpha):
            expected = primitives.relu_backward(A, lower, upper, slope)
            actual = torch.ops.verifier.relu_backward(A, lower, upper, slope)
            assert torch.equal(actual[0], expected[0]), (dtype, n, b)
            rel = primitives.relu_relaxation(lower, upper, slope)
            assert_sums_close(actual[1], expected[1], (A.abs() * rel.upper_intercept.abs().unsqueeze(1)).sum(-1))
        rel = LinearRelaxation(*(torch.randn(B, 4, n, generator=g, dtype=dtype) for _ in range(4)))
        expected = primitives.relaxed_backward(A, rel)
        actual = torch.ops.verifier.relaxed_backward(A, *rel.__dict__.values())
        assert torch.equal(actual[0], expected[0]), (dtype, n, b)
        terms = (A.abs() * (rel.lower_intercept.abs() + rel.upper_intercept.abs())).sum(-1)
        assert_sums_close(actual[1], expected[1], terms)
        box_lower, box_upper = box(b, (n,), dtype, g)
        expected = primitives.concretize_box(A, None, box_lower, box_upper)
        actual = torch.ops.verifier.concretize_box(A, None, box_lower, box_upper)
        center, radius = primitives.center_radius(box_lower, box_upper)
        assert_sums_close(actual, expected, (A.abs() * (center.abs() + radius).unsqueeze(1)).sum(-1))
        weight = torch.randn(5, n, generator=g, dtype=dtype)
        expected = primitives.interval_linear(box_lower, box_upper, weight, weight.abs(), None)
        actual = torch.ops.verifier.interval_linear(box_lower, box_upper, weight, weight.abs(), None)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e)


def main() -> None:
    if not kernels.native_available():
        raise SystemExit("native kernels not built")
    for dtype in (torch.float32, torch.float64):
        for n in NEURONS:
            check(dtype, n)
    print(torch.ops.verifier.cpu_variant(), "ok")


if __name__ == "__main__":
    main()
