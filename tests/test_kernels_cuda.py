"""CUDA kernels: parity with the references on a GPU, opcheck and gradcheck on CUDA, the engine's dispatch to them
(all skipped without a GPU), and a compile-only check of the .cu files with nvcc for machines with a CUDA toolkit
but no GPU or no CUDA-enabled torch.

Parity as on the CPU (tests/test_kernels.py): the elementwise outputs (new coefficients, gradients) equal the
reference's bit for bit -- the reference run on the GPU, and the reference on the CPU -- since both do the same
IEEE operations (the kernels are built with --fmad=false); sums over neurons may differ by another summation
order's rounding.

The nvcc check compiles every ``csrc/cuda/*.cu`` for sm_90 (H100/H200) with warnings as errors, against the
stable-ABI headers of the installed torch: it covers parsing, type checking, template instantiation for
float32/float64 and device code generation by ptxas. It does not link, load or run the kernels.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from kernel_cases import assert_sums_close, box, coefficients, generator, pre_activation_bounds, relaxation
from test_kernels import INTERCEPTS, LAYOUTS, bias_terms

from verifier import kernels, primitives
from verifier.primitives import LinearRelaxation

ROOT = Path(__file__).resolve().parent.parent

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and kernels.cuda_kernels_available()),
    reason="needs a CUDA device and the CUDA kernels built",
)
DTYPES = [torch.float32, torch.float64]
F64 = torch.float64


def on_gpu(*tensors):
    return [None if t is None else t.to("cuda") for t in tensors]


def gpu_relaxation(rel: LinearRelaxation) -> LinearRelaxation:
    return LinearRelaxation(*on_gpu(rel.lower_slope, rel.lower_intercept, rel.upper_slope, rel.upper_intercept))


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




# -- parity -----------------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("intercepts", INTERCEPTS)
def test_cuda_relaxed_backward_matches_reference(dtype, layout, per_row, intercepts):
    b, B, K, shape = layout
    g = generator(hash((layout, per_row, intercepts)) % 1000)
    A = coefficients(b, K, shape, dtype, g)
    rel = relaxation(B, K, shape, dtype, g, per_row, *intercepts)
    cpu_A, cpu_bias = primitives.relaxed_backward(A, rel)
    ref_A, ref_bias = primitives.relaxed_backward(*on_gpu(A), gpu_relaxation(rel))
    out_A, out_bias = kernels.relaxed_backward(*on_gpu(A), gpu_relaxation(rel))
    assert out_A.is_cuda and torch.equal(out_A.cpu(), ref_A.cpu()) and torch.equal(ref_A.cpu(), cpu_A)
    if cpu_bias is None:
        assert out_bias is None or not out_bias.any()
    else:
        assert_sums_close(out_bias.cpu(), cpu_bias, bias_terms(A, rel))
        assert_sums_close(ref_bias.cpu(), cpu_bias, bias_terms(A, rel))


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["mixed", "active", "dead"])
@pytest.mark.parametrize("alpha", [None, "shared", "per_row"])
def test_cuda_relu_backward_matches_reference(dtype, layout, kind, alpha):
    b, B, K, shape = layout
    g = generator(hash((layout, kind, alpha)) % 1000)
    A = coefficients(b, K, shape, dtype, g)
    lower, upper = pre_activation_bounds(B, shape, dtype, g, kind)
    slope = None
    if alpha is not None:
        slope = torch.rand(*((B, K) if alpha == "per_row" else (B,)), *shape, generator=g, dtype=dtype)
    cpu_A, cpu_bias = primitives.relu_backward(A, lower, upper, slope)
    ref_A, _ = primitives.relu_backward(*on_gpu(A, lower, upper, slope))
    out_A, out_bias = kernels.relu_backward(*on_gpu(A, lower, upper, slope))
    assert torch.equal(out_A.cpu(), ref_A.cpu()) and torch.equal(ref_A.cpu(), cpu_A)
    assert_sums_close(out_bias.cpu(), cpu_bias, bias_terms(A, primitives.relu_relaxation(lower, upper, slope)))


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [None, "shared", "per_row"])
@pytest.mark.parametrize("layout", [(1, 4, 3, (37,)), (4, 4, 3, (2, 5, 5)), (2, 2, 17, (129,))])
def test_cuda_relu_backward_grad_matches_the_rule(dtype, alpha, layout):
    """The fused gradient (d/dA, d/dalpha with the bounds fixed) equals the Python rule on the GPU bit for bit,
    and the CPU kernel's result."""
    from verifier.kernels.relaxation import _relu_grads_reference

    b, B, K, shape = layout
    n = math.prod(shape)
    g = generator(hash((layout, alpha)) % 1000)
    A = coefficients(b, K, (n,), dtype, g)
    lower, upper = pre_activation_bounds(B, (n,), dtype, g)
    slope = None if alpha is None else torch.rand(B, K if alpha == "per_row" else 1, n, generator=g, dtype=dtype)
    grad_A_z = torch.randn(B, K, n, generator=g, dtype=dtype)
    grad_bias = torch.randn(B, K, generator=g, dtype=dtype)
    args = (grad_A_z, grad_bias, A, lower, upper, slope, slope is not None)
    cpu = torch.ops.verifier.relu_backward_grad(*args)
    gpu = torch.ops.verifier.relu_backward_grad(*on_gpu(*args[:6]), args[6])
    rule = _relu_grads_reference(tuple(on_gpu(A, lower, upper, slope)), (True, False, False, slope is not None),
                                 *on_gpu(grad_A_z, grad_bias))
    assert torch.equal(gpu[0].cpu(), cpu[0])
    assert torch.equal(gpu[0].sum_to_size(A.shape).cpu(), rule[0].cpu())
    if slope is not None:
        assert torch.equal(gpu[1].cpu(), cpu[1])
        assert torch.equal(gpu[1].sum_to_size(slope.shape).cpu(), rule[3].cpu())


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", [(b, B, K, s) for b, B, K, s in LAYOUTS if b == B or B == 1])
@pytest.mark.parametrize("bias", [None, "batched"])
def test_cuda_concretize_box_matches_reference(dtype, layout, bias):
    b, B, K, shape = layout
    g = generator(hash((layout, bias)) % 1000)
    A = coefficients(b, K, shape, dtype, g)
    lower, upper = box(B, shape, dtype, g)
    bias_t = None if bias is None else torch.randn(B, K, generator=g, dtype=dtype)
    expected = primitives.concretize_box(A, bias_t, lower, upper)
    actual = kernels.concretize_box(*on_gpu(A, bias_t, lower, upper))
    center, radius = primitives.center_radius(lower, upper)
    terms = (A.abs() * (center.abs() + radius).unsqueeze(1)).flatten(2).sum(-1)
    assert_sums_close(actual.cpu(), expected, terms + (0 if bias_t is None else bias_t.abs()))


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(5, 50), (784, 256), (3, 1)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_cuda_interval_linear_matches_reference_even_with_tf32_on(dtype, sizes, with_bias):
    """The wrapper turns TF32 off around its products: with the process asking for TF32, the result is still the
    IEEE one (TF32 would be off by about 1e-3 relative)."""
    n_in, n_out = sizes
    g = generator(hash((sizes, with_bias)) % 1000)
    lower, upper = box(7, (n_in,), dtype, g)
    weight = torch.randn(n_out, n_in, generator=g, dtype=dtype)
    bias = torch.randn(n_out, generator=g, dtype=dtype) if with_bias else None
    expected = primitives.interval_linear(lower, upper, weight, weight.abs(), bias)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        actual = kernels.interval_linear(*on_gpu(lower, upper, weight, weight.abs(), bias))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    center, radius = primitives.center_radius(lower, upper)
    scale = center.abs() @ weight.abs().T + radius @ weight.abs().T + (0 if bias is None else bias.abs())
    for a, e in zip(actual, expected):
        assert_sums_close(a.cpu(), e, scale)


# -- opcheck and gradcheck on CUDA ---------------------------------------------------------------------------------
def _cuda(args, grad: bool = True):
    moved = []
    for t in args:
        if isinstance(t, torch.Tensor):
            t = t.detach().to("cuda")
            if grad and t.is_floating_point():
                t.requires_grad_()
        moved.append(t)
    return tuple(moved)


def _relu_args(dtype, alpha: bool):
    g = generator(2)
    A = coefficients(3, 3, (17,), dtype, g, away_from_zero=True)
    lower, upper = pre_activation_bounds(3, (17,), dtype, g, kind="generic")
    slope = torch.rand(3, 3, 17, generator=g, dtype=dtype) if alpha else None
    return A, lower, upper, slope


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("alpha", [False, True])
def test_cuda_opcheck(alpha):
    ops = torch.ops.verifier
    g = generator(1)
    A, lower, upper, slope = _relu_args(torch.float32, alpha)
    torch.library.opcheck(ops.relu_backward.default, _cuda((A, lower, upper, slope)))
    rel = relaxation(3, 3, (17,), torch.float32, g, per_row=alpha, lower_intercept=True, upper_intercept=True)
    rows = [t.reshape(3, 3 if alpha else 1, 17) for t in (rel.lower_slope, rel.lower_intercept, rel.upper_slope,
                                                           rel.upper_intercept)]
    torch.library.opcheck(ops.relaxed_backward.default, _cuda((A, *rows)))
    grad_A_z, grad_bias = torch.randn(3, 3, 17, generator=g), torch.randn(3, 3, generator=g)
    torch.library.opcheck(ops.relu_backward_grad.default,
                          _cuda((grad_A_z, grad_bias, A, lower, upper, slope), grad=False) + (alpha,))
    box_lower, box_upper = box(3, (17,), torch.float32, g)
    torch.library.opcheck(ops.concretize_box.default,
                          _cuda((A, torch.randn(3, 3, generator=g) if alpha else None, box_lower, box_upper)))
    weight = torch.randn(5, 17, generator=g)
    torch.library.opcheck(ops.interval_linear.default,
                          _cuda((box_lower, box_upper, weight, weight.abs(), torch.randn(5, generator=g))))


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("alpha", [False, True])
def test_cuda_gradcheck(alpha):
    ops = torch.ops.verifier
    g = generator(6)
    A, lower, upper, slope = _relu_args(F64, alpha)
    assert torch.autograd.gradcheck(lambda *a: ops.relu_backward(*a), _cuda((A, lower, upper, slope)))
    fixed = _cuda((A, lower, upper, slope))
    fixed[1].requires_grad_(False), fixed[2].requires_grad_(False)   # bounds constant: the fused gradient rule
    assert torch.autograd.gradcheck(lambda *a: ops.relu_backward(*a), fixed)
    rel = relaxation(3, 3, (17,), F64, g, per_row=alpha, lower_intercept=True, upper_intercept=True)
    rows = [t.reshape(3, 3 if alpha else 1, 17) for t in (rel.lower_slope, rel.lower_intercept, rel.upper_slope,
                                                           rel.upper_intercept)]
    assert torch.autograd.gradcheck(lambda *a: ops.relaxed_backward(*a), _cuda((A, *rows)))
    box_lower, box_upper = box(3, (17,), F64, g)
    assert torch.autograd.gradcheck(lambda *a: ops.concretize_box(*a),
                                    _cuda((A, torch.randn(3, 3, generator=g, dtype=F64), box_lower, box_upper)))
    weight = torch.randn(5, 17, generator=g, dtype=F64)
    assert torch.autograd.gradcheck(lambda *a: ops.interval_linear(*a),
                                    _cuda((box_lower, box_upper, weight, weight.abs(),
                                           torch.randn(5, generator=g, dtype=F64))))


# -- the engine on CUDA calls them ---------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.cuda
def test_engine_dispatches_to_the_cuda_kernels():
    """CROWN and alpha-CROWN on a CUDA network call the fused ops exactly as on the CPU (counted with the
    profiler), and give the CPU's bounds up to summation order."""
    import verifier
    from tests.conftest import MODELS
    from verifier.bounds.alpha import optimize_slopes
    from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds

    assert kernels.backend() == "native"
    network = verifier.load_onnx(MODELS / "digits_cnn.onnx")
    x = torch.as_tensor(np.load(MODELS / "digits_cnn_img0.npy"), dtype=torch.float32)
    cpu = network.bounds(x - 0.02, x + 0.02)
    network.to("cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        gpu = network.bounds(x - 0.02, x + 0.02)
        lower, upper = network.as_batch(x - 0.02), network.as_batch(x + 0.02)
        with torch.no_grad():
            bounds = compute_intermediate_bounds(network.graph, lower, upper, CrownOptions())
        spec = torch.eye(10, device="cuda")[:4].reshape(1, 4, *network.output_shape)
        optimize_slopes(network.graph, spec, torch.zeros(4, device="cuda"), bounds)
    names = {event.key for event in profile.key_averages()}
    for op in ("verifier::relu_backward", "verifier::concretize_box", "verifier::relu_backward_grad"):
        assert op in names, f"{op} did not run on CUDA: {sorted(n for n in names if 'verifier' in n)}"
    for a, b in zip(gpu, cpu):
        assert a.is_cuda
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-4)
