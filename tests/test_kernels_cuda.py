"""CUDA kernels: parity with the references on a GPU (skipped without one), and a compile-only check of the
.cu files with nvcc for machines with a CUDA toolkit but no GPU or no CUDA-enabled torch.

The nvcc check compiles every ``csrc/cuda/*.cu`` for sm_90 (H100/H200) with warnings as errors, against the
stable-ABI headers of the installed torch: it covers parsing, type checking, template instantiation for
float32/float64 and device code generation by ptxas. It does not link, load or run the kernels.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
from pathlib import Path

import pytest
import torch
from kernel_cases import assert_sums_close, box, coefficients, generator, pre_activation_bounds, relaxation

from verifier import kernels, primitives

ROOT = Path(__file__).resolve().parent.parent

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and kernels.cuda_kernels_available()),
    reason="needs a CUDA device and the CUDA kernels built",
)


def build_helpers():
    spec = importlib.util.spec_from_file_location("verifier_csrc_build", ROOT / "csrc" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cuda_sources_compile_with_nvcc(tmp_path):
    build = build_helpers()
    if build.find_nvcc() is None:
        pytest.skip("nvcc not found")
    headers = Path(torch.__file__).parent / "include" / "torch" / "csrc" / "stable" / "library.h"
    if not headers.is_file() or not build.torch_version_ok(torch.__version__):
        pytest.skip("the installed torch has no usable stable-ABI headers")
    try:
        objects = build.check_cuda_compiles(str(tmp_path))
    except subprocess.CalledProcessError as error:
        pytest.fail(f"nvcc failed:\n{error.stderr or error.stdout}")
    assert len(objects) == len(build.cuda_sources()) > 0
    assert all(Path(obj).stat().st_size > 0 for obj in objects)


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", [(1, 4, 3, (50,)), (8, 8, 5, (3, 4, 4)), (2, 2, 0, (7,)), (0, 0, 3, (5,))])
def test_cuda_matches_reference(dtype, layout):
    b, B, K, shape = layout
    g = generator(21)
    A = coefficients(b, K, shape, dtype, g)
    rel = relaxation(B, K, shape, dtype, g, per_row=True, lower_intercept=True, upper_intercept=True)
    lower, upper = pre_activation_bounds(B, shape, dtype, g)
    box_lower, box_upper = box(B, shape, dtype, g)
    cuda = torch.device("cuda")

    def on_gpu(*ts):
        return [t.to(cuda) if t is not None else None for t in ts]

    expected = primitives.relaxed_backward(A, rel)
    rel_gpu = type(rel)(*on_gpu(rel.lower_slope, rel.lower_intercept, rel.upper_slope, rel.upper_intercept))
    actual = kernels.relaxed_backward(*on_gpu(A), rel_gpu)
    assert torch.equal(actual[0].cpu(), expected[0])
    torch.testing.assert_close(actual[1].cpu(), expected[1])

    expected = primitives.relu_backward(A, lower, upper)
    actual = kernels.relu_backward(*on_gpu(A, lower, upper))
    assert torch.equal(actual[0].cpu(), expected[0])
    torch.testing.assert_close(actual[1].cpu(), expected[1])

    A_b = coefficients(B, K, shape, dtype, g)
    expected = primitives.concretize_box(A_b, None, box_lower, box_upper)
    actual = kernels.concretize_box(*on_gpu(A_b), None, *on_gpu(box_lower, box_upper))
    center, radius = primitives.center_radius(box_lower, box_upper)
    terms = (A_b.abs() * (center.abs() + radius).unsqueeze(1)).flatten(2).sum(-1)
    assert_sums_close(actual.cpu(), expected, terms)

    n = math.prod(shape)
    weight = torch.randn(6, n, generator=g, dtype=dtype)
    flat_lower, flat_upper = box_lower.reshape(B, n), box_upper.reshape(B, n)
    expected = primitives.interval_linear(flat_lower, flat_upper, weight, weight.abs(), None)
    actual = kernels.interval_linear(*on_gpu(flat_lower, flat_upper, weight, weight.abs()), None)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.cpu(), e)
