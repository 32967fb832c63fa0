"""Native kernels vs the eager PyTorch references vs torch.compile(references): per op and end to end.

    python benchmarks/kernels.py [--rounds 5] [--quick] [--no-compile] [--part ops|e2e|all]

Single thread. Per op, on shapes taken from CROWN and branch-and-bound calls on the shared networks: the
eager reference (verifier.primitives), torch.compile of that reference (inductor, warmed up), and the native
kernel through its wrapper (verifier.kernels). End to end: CROWN over the input box of a shared property with
its spec rows, and a branch-and-bound-like step: CROWN over B sub-boxes of that box (the engine with
VERIFIER_KERNELS=torch, with the references replaced by their compiled versions, and with
VERIFIER_KERNELS=native). The alpha/beta-CROWN step: forward and gradient through the ReLU step, the
reference's autograd against the native gradient.

End to end, two more columns: the share of the eager run's operator time spent in BLAS matrix products
(which stay with BLAS on both paths), and the eager/native ratio the native kernels could reach if
everything else took no time at all (1 / that share).

Times are the best of interleaved rounds (every mode once per round, so a noisy neighbour on a shared
machine hurts all modes alike), in ms; ratios > 1 mean native is faster. The last column is the largest
difference of the native result from the eager one, relative to the result's magnitude. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Iterator

import torch
from common import SHARED

import verifier
from verifier import kernels, primitives
from verifier.spec import parse_vnnlib

MODES = ("eager", "compile", "native")
REFERENCES = ("relaxed_backward", "relu_backward", "concretize_box", "interval_linear")


def best_times(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time (s) of each function over interleaved rounds, after one warm-up call each."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def relative_difference(a, b) -> float:
    if isinstance(a, (tuple, list)) or hasattr(a, "lower"):
        pairs = zip(a, b)
        return max((relative_difference(x, y) for x, y in pairs if x is not None), default=0.0)
    scale = b.abs().max().item() if b.numel() else 0.0
    return (a - b).abs().max().item() / max(scale, 1e-30) if a.numel() else 0.0


def row(name: str, times: dict[str, float], difference: float) -> str:
    cells = [f"{1e3 * times[m]:9.2f}" if m in times else f"{'-':>9s}" for m in MODES]
    eager_ratio = times["eager"] / times["native"]
    compile_ratio = f"{times['compile'] / times['native']:8.2f}x" if "compile" in times else f"{'-':>9s}"
    return f"{name:46s} {' '.join(cells)} {eager_ratio:8.2f}x {compile_ratio} {difference:9.1e}"


HEADER = (f"{'case':46s} {'eager ms':>9s} {'compile':>9s} {'native':>9s} {'eager/nat':>9s} {'comp/nat':>9s} "
          f"{'rel.diff':>9s}")


# -- per op --------------------------------------------------------------------------------------------------
def op_cases(quick: bool) -> list[tuple[str, Callable, Callable, tuple]]:
    """(name, reference, native wrapper, arguments) on shapes the engine produces."""
    g = torch.Generator().manual_seed(0)

    def A(b, K, n):
        return torch.randn(b, K, n, generator=g)

    def bounds(B, n):
        lower = torch.randn(B, n, generator=g)
        return lower, lower + 2 * torch.rand(B, n, generator=g)

    def relaxation(B, n, rows=None):
        lead = (B,) if rows is None else (B, rows)
        return primitives.LinearRelaxation(torch.rand(*lead, n, generator=g), torch.randn(*lead, n, generator=g),
                                           torch.rand(*lead, n, generator=g), torch.randn(*lead, n, generator=g))

    def linear(B, n_in, n_out):
        lower, upper = bounds(B, n_in)
        weight = torch.randn(n_out, n_in, generator=g)
        return lower.unsqueeze(1), upper.unsqueeze(1), weight, weight.abs(), torch.randn(n_out, generator=g)

    relu = (primitives.relu_backward, kernels.relu_backward)
    relaxed = (primitives.relaxed_backward, kernels.relaxed_backward)
    concretize = (primitives.concretize_box, kernels.concretize_box)
    interval = (primitives.interval_linear, kernels.interval_linear)
    cases = [
        ("relu_backward A[1024,100,50] (acasxu BaB)", *relu, (A(1024, 100, 50), *bounds(1024, 50))),
        ("relu_backward A[1,100,50] x1024 boxes", *relu, (A(1, 100, 50), *bounds(1024, 50))),
        ("relu_backward A[2048,8,50] (spec rows)", *relu, (A(2048, 8, 50), *bounds(2048, 50))),
        ("relu_backward A[64,512,256] (mnist_fc)", *relu, (A(64, 512, 256), *bounds(64, 256))),
        ("relu_backward A[256,8,256] alpha per row", *relu,
         (A(256, 8, 256), *bounds(256, 256), torch.rand(256, 8, 256, generator=g))),
        ("relaxed_backward A[64,400,200] (sigmoid)", *relaxed, (A(64, 400, 200), relaxation(64, 200))),
        ("concretize_box A[1024,100,5] (acasxu input)", *concretize, (A(1024, 100, 5), None, *bounds(1024, 5))),
        ("concretize_box A[64,512,784] (mnist input)", *concretize, (A(64, 512, 784), None, *bounds(64, 784))),
        ("concretize_box A[2048,8,784] (BaB spec)", *concretize, (A(2048, 8, 784), None, *bounds(2048, 784))),
        ("interval_linear [1024,1,50] 50->50", *interval, linear(1024, 50, 50)),
        ("interval_linear [256,1,784] 784->256", *interval, linear(256, 784, 256)),
    ]
    return cases[::3] if quick else cases


def bench_ops(args) -> None:
    print(HEADER)
    kernels.set_backend("native")
    for name, reference, wrapper, operands in op_cases(args.quick):
        fns = {"eager": lambda r=reference, o=operands: r(*o)}
        if not args.no_compile:
            compiled = torch.compile(reference, dynamic=False)
            fns["compile"] = lambda c=compiled, o=operands: c(*o)
        fns["native"] = lambda w=wrapper, o=operands: w(*o)
        with torch.no_grad():
            times = best_times(fns, args.rounds)
            difference = relative_difference(wrapper(*operands), reference(*operands))
        print(row(name, times, difference), flush=True)


# -- the alpha/beta-CROWN step: forward and backward through the ReLU step -----------------------------------
def gradient_cases(quick: bool) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, (domains B, spec rows K, neurons N)) of branch and bound's optimisation step."""
    cases = [
        ("relu_backward fwd+grad [256,9,256] (mnist_fc BaB)", (256, 9, 256)),
        ("relu_backward fwd+grad [2304,1,256] (open rows)", (2304, 1, 256)),
        ("relu_backward fwd+grad [64,9,1024] (wide layer)", (64, 9, 1024)),
    ]
    return cases[:1] if quick else cases


def bench_gradients(args) -> None:
    """d(loss)/d(A, alpha) of one ReLU step with constant pre-activation bounds, as in beta-CROWN's domains:
    the reference's autograd (eager and compiled) against the native op and its fused gradient."""
    print(HEADER)
    g = torch.Generator().manual_seed(3)
    for name, shape in gradient_cases(args.quick):
        print(gradient_row(name, shape, g, args), flush=True)


def gradient_row(name: str, shape: tuple[int, int, int], g: torch.Generator, args) -> str:
    B, K, N = shape
    A = torch.randn(B, K, N, generator=g).requires_grad_()
    centre, width = torch.randn(B, N, generator=g), torch.rand(B, N, generator=g)
    lower, upper = centre - width, centre + width
    alpha = torch.rand(B, K, N, generator=g).requires_grad_()
    weights = torch.randn(B, K, N, generator=g), torch.randn(B, K, generator=g)

    def step(fn: Callable) -> tuple[torch.Tensor, ...]:
        A_z, bias = fn(A, lower, upper, alpha)
        loss = (A_z * weights[0]).sum() + (bias * weights[1]).sum()
        return torch.autograd.grad(loss, (A, alpha))

    fns = {"eager": lambda: step(primitives.relu_backward)}
    if not args.no_compile:
        compiled = torch.compile(primitives.relu_backward, dynamic=False)
        fns["compile"] = lambda: step(compiled)
    fns["native"] = lambda: step(kernels.relu_backward)
    times = best_times(fns, args.rounds)
    return row(name, times, relative_difference(step(kernels.relu_backward), step(primitives.relu_backward)))


# -- end to end ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def compiled_references(compiled: dict[str, Callable]) -> Iterator[None]:
    """The engine on the torch backend, each reference replaced by its torch.compile'd version."""
    saved = {name: getattr(primitives, name) for name in REFERENCES}
    try:
        for name, fn in compiled.items():
            setattr(primitives, name, fn)
        kernels.set_backend("torch")
        yield
    finally:
        for name, fn in saved.items():
            setattr(primitives, name, fn)
        kernels.set_backend(None)


def property_box(network: verifier.Network, path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first input box of a VNN-LIB property and the rows ``C`` of its cases on that box."""
    group = parse_vnnlib(path, network.input_size, network.output_size).box_groups()[0]
    lower, upper, C = (torch.as_tensor(a, dtype=network.dtype) for a in (group.lower, group.upper, group.C))
    return lower[None], upper[None], C


def sub_domains(lower: torch.Tensor, upper: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` boxes that each keep one side of random halvings of the box, as input splitting would."""
    g = torch.Generator().manual_seed(1)
    lower, upper = lower.repeat(count, 1), upper.repeat(count, 1)
    for _ in range(max(1, count.bit_length() - 1)):
        dim = torch.randint(lower.shape[1], (count,), generator=g)[:, None]
        mid = (lower.gather(1, dim) + upper.gather(1, dim)) / 2
        left = torch.rand(count, 1, generator=g) < 0.5
        lower.scatter_(1, dim, torch.where(left, lower.gather(1, dim), mid))
        upper.scatter_(1, dim, torch.where(left, mid, upper.gather(1, dim)))
    return lower, upper


def e2e_cases(quick: bool) -> list[tuple[str, str, str, int]]:
    """(name, network and property under the shared benchmarks, sub-domains of the property's box)."""
    cases = [
        ("CROWN acasxu 1_1 prop_1", "acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/vnnlib/prop_1.vnnlib", 1),
        ("CROWN mnist_fc 256x4 prop_5 eps .05", "mnist_fc/onnx/mnist-net_256x4.onnx",
         "mnist_fc/vnnlib/prop_5_0.05.vnnlib", 1),
        ("CROWN eran 9x200 spec 8098", "eran/onnx/mnist_relu_9_200.onnx",
         "eran/vnnlib/mnist_spec_idx_8098_eps_0.01500.vnnlib", 1),
        ("CROWN oval21 base_kw img8194", "oval21/onnx/cifar_base_kw.onnx",
         "oval21/vnnlib/cifar_base_kw-img8194-eps0.018300653594771243.vnnlib", 1),
        ("BaB step acasxu 1_1 prop_1, 1024 boxes", "acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx",
         "acasxu/vnnlib/prop_1.vnnlib", 1024),
        ("BaB step mnist_fc 256x2 prop_0, 256 boxes", "mnist_fc/onnx/mnist-net_256x2.onnx",
         "mnist_fc/vnnlib/prop_0_0.03.vnnlib", 256),
        ("BaB step mnist_fc 256x6 prop_1, 64 boxes", "mnist_fc/onnx/mnist-net_256x6.onnx",
         "mnist_fc/vnnlib/prop_1_0.03.vnnlib", 64),
    ]
    return [cases[0], cases[4]] if quick else cases


def blas_share(network: verifier.Network, lower, upper, C) -> float:
    """Share of the eager engine's operator time spent in BLAS matrix products (torch profiler, one call).

    Native kernels replace the other operators, so ``1 / (this share)`` bounds the eager/native ratio."""
    from torch.profiler import ProfilerActivity, profile

    kernels.set_backend("torch")
    try:
        with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            network.bounds(lower, upper, C=C)
    finally:
        kernels.set_backend(None)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    blas = sum(e.self_cpu_time_total for e in events if e.key in BLAS_OPS)
    return blas / total if total else 0.0


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ side prints a line when it starts and stops)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


BLAS_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::mv", "aten::addmv_", "aten::dot",
            "aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution"}


def time_network(network: verifier.Network, lower, upper, C, compiled: dict[str, Callable], rounds: int):
    """Best times of ``network.bounds`` per mode, and the results of the last call of each."""
    results = {}

    def call(mode: str) -> Callable[[], None]:
        def bounds() -> None:
            if mode == "compile":
                with compiled_references(compiled):
                    results[mode] = network.bounds(lower, upper, C=C)
            else:
                kernels.set_backend("torch" if mode == "eager" else "native")
                results[mode] = network.bounds(lower, upper, C=C)

        return bounds

    modes = [m for m in MODES if m != "compile" or compiled]
    try:
        times = best_times({m: call(m) for m in modes}, rounds)
    finally:
        kernels.set_backend(None)
    return times, results


def bench_end_to_end(args) -> None:
    print(f"{HEADER} {'BLAS':>6s} {'bound':>6s}")
    # the engine calls each reference with a few shapes per layer: let dynamo specialise on all of them
    torch._dynamo.config.recompile_limit = 64
    torch._dynamo.config.accumulated_recompile_limit = 4096
    for name, model, spec, boxes in e2e_cases(args.quick):
        if not (SHARED / model).is_file() or not (SHARED / spec).is_file():
            print(f"{name:46s} (network or property not available under {SHARED})")
            continue
        network = verifier.load_onnx(SHARED / model)
        lower, upper, C = property_box(network, SHARED / spec)
        lower, upper = sub_domains(lower, upper, boxes)
        torch._dynamo.reset()  # compiled afresh for each network
        compiled = {} if args.no_compile else {ref: torch.compile(getattr(primitives, ref)) for ref in REFERENCES}
        times, results = time_network(network, lower, upper, C, compiled, args.rounds)
        share = blas_share(network, lower, upper, C)
        cells = f"{100 * share:5.0f}% {1 / max(share, 1e-9):5.2f}x"
        print(f"{row(name, times, relative_difference(results['native'], results['eager']))} {cells}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="a few cases only")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--part", choices=["ops", "e2e", "all"], default="all", help="per op, end to end, or both")
    args = parser.parse_args()
    verifier.set_threads(1)
    if not kernels.native_available():
        raise SystemExit("the native kernels are not built: python setup.py build_ext --inplace")
    variant = torch.ops.verifier.cpu_variant()
    print(f"torch {torch.__version__}, 1 thread, native kernels: {kernels.library.library_path().name} ({variant})\n")
    if args.part in ("ops", "all"):
        print("per op")
        bench_ops(args)
    if args.part in ("ops", "all"):
        print("\nalpha/beta-CROWN step (forward and gradient w.r.t. A and alpha, constant pre-activation bounds)")
        bench_gradients(args)
    if args.part in ("e2e", "all"):
        print("\nend to end (Network.bounds, CROWN with CROWN pre-activation bounds)")
        bench_end_to_end(args)


if __name__ == "__main__":
    main()
