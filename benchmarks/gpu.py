"""The engine on a GPU against one CPU core, measured side by side in one run on the device it finds.

    python benchmarks/gpu_data.py                      # once: copy what this script reads into gpu_data/
    python benchmarks/gpu.py [--quick] [--out DIR] [--only crown,bab,kernels,smoothing,hard] [--data DIR]
    python benchmarks/gpu.py --only hard --hard-device cpu --hard-timeout full   # the CPU's answers on them

Sections (each prints a table; ``--out DIR`` also writes them to DIR/gpu_tables.md and DIR/gpu.json; they run
hard, bab, kernels, crown, smoothing, so that a run cut short keeps the targets' numbers):

1. ``crown``: CROWN and alpha-CROWN (20 Adam steps on the final bound) time on one property box of each shared
   family (acasxu, mnist_fc, eran, oval21, cifar10_resnet, sri_resnet_a): the CPU with 1 thread, then the GPU.
2. ``bab``: ReLU-split branch-and-bound sub-domains per second (domains bounded over the search's time, the
   root's bound excluded) on mnist_fc 256x4 and oval21, on hard properties run for a fixed time: CPU vs GPU.
3. ``kernels``: per fused kernel (``relu_backward``, ``relu_backward_grad``, ``relaxed_backward``,
   ``concretize_box``, ``interval_linear``), the eager PyTorch reference on CUDA, ``torch.compile`` of it on
   CUDA and ours, in microseconds (median of CUDA-event timings), and the memory bandwidth ours reaches: the
   fewest bytes the op must move (each operand read once, each result written once) over its time, as a
   fraction of the device's peak (the nominal peak of the card where known, and a device-to-device copy
   measured in the same run).
4. ``smoothing``: randomized-smoothing sampling (noise drawn on the device, the base model run there, votes
   counted there) against a plain batched forward pass of the same model on the same device, samples/s.
5. ``hard``: five instances one CPU core does not decide within their VNN-COMP timeout, run on the GPU with a
   30 s limit each; every answer checked against ground_truth.csv (``sat`` witnesses are re-checked by
   onnxruntime inside ``verify``). The exit code is 1 if an answer is incorrect.

Without a GPU every section runs on the CPU alone, shortened (the GPU columns say ``-``, the kernel section
compares the CPU paths, the hard instances get a few seconds each), so the script is checked before any GPU time
is spent. Times on a shared machine are noisy: compare ratios measured in the same run. Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import verifier  # noqa: E402
from verifier import kernels, primitives  # noqa: E402
from verifier.bounds.alpha import AlphaOptions, optimize_slopes  # noqa: E402
from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds, crown_bounds  # noqa: E402
from verifier.complete import verify  # noqa: E402
from verifier.complete.problem import Problem  # noqa: E402
from verifier.device import resolve_device  # noqa: E402
from verifier.spec import parse_vnnlib  # noqa: E402

#: one property box per shared network family: (family, network, property)
CROWN_CASES = [
    ("acasxu", "onnx/ACASXU_run2a_1_1_batch_2000.onnx", "vnnlib/prop_1.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_12_0.05.vnnlib"),
    ("eran", "onnx/mnist_relu_9_200.onnx", "vnnlib/mnist_spec_idx_8098_eps_0.01500.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img2578-eps0.021176470588235297.vnnlib"),
    ("cifar10_resnet", "onnx/resnet_2b.onnx", "vnnlib/prop_33_eps_0.008.vnnlib"),
    ("cifar10_resnet", "onnx/resnet_4b.onnx", "vnnlib/prop_0_eps_0.004.vnnlib"),
    ("sri_resnet_a", "onnx/resnet_3b2_bn_mixup_adv_4.0_bs128_lr-1.onnx",
     "vnnlib/cifar10_spec_idx_1551_eps_0.00198.vnnlib"),
]
#: branch-and-bound throughput: hard properties, so the search runs for the whole measuring time
BAB_CASES = [
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_12_0.05.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img3568-eps0.030457516339869282.vnnlib"),
]
#: instances one CPU core does not decide within their VNN-COMP timeout (measured with --hard-device cpu
#: --hard-timeout full on the development machine, see the README's GPU section), all unsat with high confidence,
#: which alpha-beta-CROWN decided on a GPU in 19 to 42 s in VNN-COMP: the GPU must, in 30 s each
HARD_CASES = [
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_0_0.05.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x6.onnx", "vnnlib/prop_3_0.05.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img2578-eps0.021176470588235297.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img876-eps0.024836601307189544.vnnlib"),
    ("cifar10_resnet", "onnx/resnet_2b.onnx", "vnnlib/prop_31_eps_0.008.vnnlib"),
]
#: smoothing throughput: a shipped model and a CIFAR-sized CNN (throughput only: it was not trained with noise)
SMOOTH_CASES = [("models", "digits_smooth_cnn_sigma0.25.onnx"), ("oval21", "onnx/cifar_base_kw.onnx")]
#: nominal memory bandwidth of the cards the GPU runs use (bytes/s), by a part of their name
NOMINAL_BANDWIDTH = {"H100 80GB HBM3": 3.35e12, "H100": 3.35e12, "H200": 4.8e12, "A100-SXM4-80GB": 2.04e12,
                     "A100": 1.56e12, "L4": 0.3e12}


def data_folder(given: str | None) -> Path:
    """``--data``, else ``gpu_data/`` in the checkout when filled (see gpu_data.py), else ``../shared/benchmarks``."""
    if given:
        return Path(given)
    local = ROOT / "gpu_data"
    return local if local.is_dir() else ROOT.parent / "shared" / "benchmarks"


def load_case(data: Path, family: str, onnx: str, vnnlib: str):
    network = verifier.load_onnx(data / family / onnx)
    spec = parse_vnnlib(data / family / vnnlib, n_inputs=network.input_size, n_outputs=network.output_size)
    return network, spec


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int | None = None) -> float:
    """Best wall time (s) of ``fn()`` over ``repeats`` calls after ``warmup`` calls (default: one on a GPU, where
    the first call pays for kernel loading and the allocator, none on the CPU), synchronised on a GPU."""
    warmup = (1 if device.type == "cuda" else 0) if warmup is None else warmup
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = [f"== {title}", "  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


class Report:
    """Tables printed as they come and kept for gpu_tables.md / gpu.json."""

    def __init__(self, out: Path | None):
        self.out = out
        self.texts: list[str] = []
        self.data: dict = {}

    def add(self, key: str, text: str, data) -> None:
        print(text + "\n", flush=True)
        self.texts.append(text)
        self.data[key] = data
        self.write()

    def write(self) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_tables.md").write_text("```\n" + "\n\n".join(self.texts) + "\n```\n")
        (self.out / "gpu.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")


# -- 1. CROWN and alpha-CROWN ----------------------------------------------------------------------------------------
def crown_times(network, spec, device: torch.device, repeats: int, alpha_steps: int) -> tuple[float, float]:
    """Seconds of CROWN (intermediate bounds and the property's rows) and of alpha-CROWN (the same, then
    ``alpha_steps`` Adam steps on the final bound's slopes) over the property's first box."""
    network.to(device)
    group = spec.box_groups()[0]
    problem = Problem.from_group(group, network)
    lower, upper = problem.lower.unsqueeze(0), problem.upper.unsqueeze(0)
    C = problem.C.unsqueeze(0)

    def crown():
        with torch.no_grad():
            return crown_bounds(network.graph, lower, upper, C)

    def alpha():
        with torch.no_grad():
            bounds = compute_intermediate_bounds(network.graph, lower, upper, CrownOptions())
        spec_rows = C.reshape(1, C.shape[1], *network.output_shape)
        return optimize_slopes(network.graph, spec_rows, problem.d, bounds, AlphaOptions(iterations=alpha_steps))

    return wall(crown, device, repeats), wall(alpha, device, max(1, repeats - 1))


def section_crown(report: Report, data: Path, devices: list[torch.device], quick: bool) -> None:
    rows, results = [], []
    alpha_steps = 20
    for family, onnx, vnnlib in CROWN_CASES:
        if quick and "resnet_4b" in onnx:  # resnet_2b stands for the family in the short run
            continue
        network, spec = load_case(data, family, onnx, vnnlib)
        times = {}
        for device in devices:
            times[device.type] = crown_times(network, spec, device, 1 if quick and device.type == "cpu" else 3,
                                             alpha_steps)
        cpu, gpu = times["cpu"], times.get("cuda", (None, None))
        ratio = [None if g is None else c / g for c, g in zip(cpu, gpu)]
        name = f"{family}/{Path(onnx).stem}"
        rows.append([name, fmt(cpu[0]), fmt(gpu[0]), fmt(ratio[0], 2), fmt(cpu[1]), fmt(gpu[1]), fmt(ratio[1], 2)])
        results.append({"network": name, "crown_cpu_s": cpu[0], "crown_gpu_s": gpu[0], "alpha_cpu_s": cpu[1],
                        "alpha_gpu_s": gpu[1]})
    header = ["network", "CROWN cpu s", "gpu s", "cpu/gpu", f"alpha({alpha_steps}) cpu s", "gpu s", "cpu/gpu"]
    report.add("crown", table("CROWN and alpha-CROWN on one property box (CPU: 1 thread)", header, rows), results)


# -- 2. branch-and-bound throughput ----------------------------------------------------------------------------------
class FromFirstCheck:
    """A deadline ``seconds`` after its first check: the search checks it first after the root's bound, so the
    measured time is the branching alone."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end: float | None = None

    def expired(self) -> bool:
        now = time.perf_counter()
        if self.end is None:
            self.end = now + self.seconds
        return now >= self.end


def bab_rate(network, spec, device: torch.device, seconds: float) -> dict:
    """Sub-domains per second of ReLU splitting on ``device``: the root bounded, then ``seconds`` of branching."""
    import copy

    from verifier.bab.relu_split import relu_split_search

    network = copy.deepcopy(network).to(device)
    problem = Problem.from_group(spec.box_groups()[0], network)
    stats: dict = {}
    start = time.perf_counter()
    status, _ = relu_split_search(network, problem, FromFirstCheck(seconds), stats, lambda points: None)
    synchronize(device)
    search = time.perf_counter() - start - stats.get("root_s", 0.0)
    domains = max(0, stats.get("domains", 1) - 1)
    return {"status": status, "domains": domains, "search_s": search, "root_s": stats.get("root_s"),
            "batch": stats.get("batch"), "rate": domains / search if search > 0 else float("nan")}


def section_bab(report: Report, data: Path, devices: list[torch.device], quick: bool) -> None:
    seconds = {"cpu": 8.0 if quick else 60.0, "cuda": 8.0 if quick else 60.0}
    rows, results = [], []
    for family, onnx, vnnlib in BAB_CASES:
        network, spec = load_case(data, family, onnx, vnnlib)
        measured = {d.type: bab_rate(network, spec, d, seconds[d.type]) for d in devices}
        cpu, gpu = measured["cpu"], measured.get("cuda")
        ratio = None if gpu is None else gpu["rate"] / cpu["rate"] if cpu["rate"] else None
        name = f"{family}/{Path(onnx).stem} {Path(vnnlib).stem}"
        rows.append([name, fmt(cpu["rate"], 4), str(cpu["batch"]), fmt(None if gpu is None else gpu["rate"], 4),
                     "-" if gpu is None else str(gpu["batch"]), fmt(ratio, 3)])
        results.append({"instance": name, "cpu": cpu, "gpu": gpu, "gpu_over_cpu": ratio})
    header = ["instance", "cpu domains/s", "batch", "gpu domains/s", "batch", "gpu/cpu"]
    title = (f"ReLU-split sub-domains per second ({seconds['cpu']:g} s of branching after the root's bound, no "
             "attack; CPU 1 thread)")
    report.add("bab", table(title, header, rows), results)


# -- 3. fused kernels ------------------------------------------------------------------------------------------------
def kernel_cases(device: torch.device, quick: bool) -> list[tuple[str, Callable, tuple, int]]:
    """(name, reference, operands, fewest bytes moved) per fused op, at a size that fills a GPU (small on a CPU)."""
    dtype = torch.float32
    size = 4 if dtype == torch.float32 else 8
    if device.type == "cuda":
        B, K, N = 64, 32, 8192        # A: 64 MiB
    else:
        B, K, N = 8, 8, 2048 if quick else 8192
    g = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device, dtype=dtype)

    A = randn(B, K, N)
    lower = randn(B, N) - 0.5
    upper = lower + randn(B, N).abs()
    alpha = torch.rand(B, K, N, generator=g, device=device, dtype=dtype)
    rel = primitives.LinearRelaxation(randn(B, 1, N).abs(), randn(B, 1, N), randn(B, 1, N).abs(), randn(B, 1, N))
    grad_A_z, grad_bias = randn(B, K, N), randn(B, K)
    M, n_in, n_out = (4096, 4096, 4096) if device.type == "cuda" else (256, 1024, 512)
    box_lower = randn(M, n_in)
    box_upper = box_lower + randn(M, n_in).abs()
    weight = randn(n_out, n_in)
    bias = randn(n_out)
    a, bk, n = B * K * N, B * K, B * N

    def relu_grad_reference(grad_A_z, grad_bias, A, lower, upper, alpha):
        from verifier.kernels.relaxation import _relu_grads_reference

        out = _relu_grads_reference((A, lower.unsqueeze(1), upper.unsqueeze(1), alpha), (True, False, False, True),
                                    grad_A_z, grad_bias)
        return out[0], out[3]

    def relaxed_reference(A, ls, li, us, ui):
        return primitives.relaxed_backward(A, primitives.LinearRelaxation(ls, li, us, ui))

    return [
        # A read, bounds read, alpha read, A_z written, bias written
        ("relu_backward", primitives.relu_backward, (A, lower, upper, alpha), size * (3 * a + 2 * n + bk)),
        ("relu_backward_grad", relu_grad_reference, (grad_A_z, grad_bias, A, lower, upper, alpha),
         size * (5 * a + 2 * n + bk)),   # grad_A_z, A, alpha read, grad_A, grad_alpha written
        ("relaxed_backward", relaxed_reference, (A, *[rel.lower_slope, rel.lower_intercept, rel.upper_slope,
                                                       rel.upper_intercept]), size * (2 * a + 4 * n + bk)),
        ("concretize_box", primitives.concretize_box, (A, None, lower, upper), size * (a + 2 * n + bk)),
        ("interval_linear", primitives.interval_linear, (box_lower, box_upper, weight, weight.abs(), bias),
         size * (2 * M * n_in + 2 * n_out * n_in + n_out + 2 * M * n_out)),
    ]


def native_call(name: str) -> Callable:
    ops = torch.ops.verifier
    if name == "relu_backward":
        return lambda A, lower, upper, alpha: ops.relu_backward(A, lower, upper, alpha)
    if name == "relu_backward_grad":
        return lambda gz, gb, A, lower, upper, alpha: ops.relu_backward_grad(gz, gb, A, lower, upper, alpha, True)
    if name == "relaxed_backward":
        return lambda *a: ops.relaxed_backward(*a)
    if name == "concretize_box":
        return lambda A, bias, lower, upper: ops.concretize_box(A, bias, lower, upper)
    return lambda lower, upper, weight, weight_abs, bias: kernels.interval_linear(lower, upper, weight, weight_abs,
                                                                                   bias)


def event_time(fn: Callable, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()``: CUDA events on a GPU, the wall clock on the CPU (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begin)
    return statistics.median(times)


def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a large device-to-device copy (bytes read plus bytes written)."""
    count = (1 << 28) if device.type == "cuda" else (1 << 24)
    source = torch.empty(count, dtype=torch.float32, device=device).uniform_()
    target = torch.empty_like(source)
    seconds = event_time(lambda: target.copy_(source), device, 10)
    return 2 * source.numel() * source.element_size() / seconds


def op_times(op: str, reference: Callable, operands: tuple, device: torch.device, repeats: int,
             compile_: bool) -> dict[str, float]:
    """Median seconds of the eager reference, of torch.compile(reference) (nan when it cannot compile) and ours."""
    ours = native_call(op)
    times = {"eager": event_time(lambda: reference(*operands), device, repeats), "compile": float("nan")}
    if compile_:
        try:
            compiled = torch.compile(reference, dynamic=False)
            times["compile"] = event_time(lambda: compiled(*operands), device, repeats)
        except Exception as error:  # noqa: BLE001 - no compiler here: say so, go on
            print(f"  torch.compile of {op} failed: {type(error).__name__}: {str(error)[:200]}", flush=True)
    times["ours"] = event_time(lambda: ours(*operands), device, repeats)
    return times


def section_kernels(report: Report, devices: list[torch.device], quick: bool, compile_: bool) -> None:
    device = devices[-1]
    if not kernels.native_available() or (device.type == "cuda" and not kernels.cuda_kernels_available()):
        report.add("kernels", f"== fused kernels: skipped, the native {'CUDA ' if device.type == 'cuda' else ''}"
                   "kernels are not built", None)
        return
    measured = copy_bandwidth(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    nominal = next((v for k, v in NOMINAL_BANDWIDTH.items() if k in name), None) if device.type == "cuda" else None
    rows, results = [], []
    repeats = 20 if device.type == "cuda" else (3 if quick else 10)
    for op, reference, operands, nbytes in kernel_cases(device, quick):
        times = op_times(op, reference, operands, device, repeats, compile_)
        achieved = nbytes / times["ours"]
        rows.append([op, fmt(1e6 * times["eager"], 4), fmt(1e6 * times["compile"], 4), fmt(1e6 * times["ours"], 4),
                     fmt(times["eager"] / times["ours"], 3), fmt(achieved / 1e9, 4),
                     fmt(None if nominal is None else achieved / nominal, 2), fmt(achieved / measured, 2)])
        results.append({"op": op, "bytes": nbytes, **{f"{k}_s": v for k, v in times.items()},
                        "achieved_bytes_per_s": achieved, "nominal_bytes_per_s": nominal,
                        "copy_bytes_per_s": measured})
    header = ["op", "eager us", "compile us", "ours us", "eager/ours", "ours GB/s", "of nominal", "of copy"]
    title = (f"fused kernels on {name}: float32, median of {repeats}; copy bandwidth measured "
             f"{measured / 1e9:.0f} GB/s" + (f", nominal {nominal / 1e9:.0f} GB/s" if nominal else ""))
    report.add("kernels", table(title, header, rows), results)


# -- 4. smoothing ----------------------------------------------------------------------------------------------------
def smoothing_rates(path: Path, device: torch.device, samples: int, batch: int, repeats: int) -> tuple[float, float]:
    """Samples/s of a plain batched forward pass (fixed inputs, labels only) and of smoothing's sampling loop."""
    from verifier.smoothing import SmoothedClassifier

    smoothed = SmoothedClassifier(verifier.load_onnx(path), sigma=0.25, seed=0, device=device)
    x = torch.zeros(smoothed.base.input_shape, device=device)
    fixed = torch.randn(batch, *smoothed.base.input_shape, device=device)
    calls = max(1, samples // batch)

    def forward() -> None:
        for _ in range(calls):
            smoothed.base.classify(fixed)

    plain = calls * batch / wall(forward, device, repeats)
    sampling = calls * batch / wall(lambda: smoothed.sample_counts(x, calls * batch, batch), device, repeats)
    return plain, sampling


def section_smoothing(report: Report, data: Path, devices: list[torch.device], quick: bool) -> None:
    rows, results = [], []
    samples = 20_000 if quick else 100_000
    for family, onnx in SMOOTH_CASES:
        path = ROOT / "models" / onnx if family == "models" else data / family / onnx
        for device in devices:
            batch = 1000 if device.type == "cpu" else 10_000
            plain, sampling = smoothing_rates(path, device, samples, batch, 1 if quick else 3)
            rows.append([f"{family}/{Path(onnx).stem}", str(device), str(batch), fmt(plain, 4), fmt(sampling, 4),
                         fmt(sampling / plain, 3)])
            results.append({"model": onnx, "device": str(device), "batch": batch, "forward_per_s": plain,
                            "sampling_per_s": sampling})
    header = ["model", "device", "batch", "forward samples/s", "sampling samples/s", "sampling/forward"]
    report.add("smoothing", table("smoothing: noise, forward pass and votes on the device vs the forward pass alone",
                                  header, rows), results)


# -- 5. hard instances -----------------------------------------------------------------------------------------------
def truth_of(data: Path, family: str, onnx: str, vnnlib: str) -> dict:
    with open(data / family / "ground_truth.csv") as handle:
        for row in csv.DictReader(handle):
            if row["onnx"] == onnx and row["vnnlib"] == vnnlib:
                return row
    return {}


def incorrect(status: str, truth: dict) -> bool:
    consensus, confidence = truth.get("consensus", ""), truth.get("confidence", "")
    return (status == "unsat" and consensus == "sat") or (status == "sat" and consensus == "unsat"
                                                          and confidence == "high")


def section_hard(report: Report, data: Path, device: torch.device, timeout: float | None) -> int:
    rows, results, wrong = [], [], 0
    for family, onnx, vnnlib in HARD_CASES:
        truth = truth_of(data, family, onnx, vnnlib)
        limit = timeout if timeout is not None else float(truth.get("timeout") or 300)
        start = time.perf_counter()
        result = verify(data / family / onnx, data / family / vnnlib, timeout=limit, device=device)
        elapsed = time.perf_counter() - start
        bad = incorrect(result.status, truth)
        wrong += bad
        decided = result.status in ("sat", "unsat")
        rows.append([f"{family}/{Path(onnx).stem} {Path(vnnlib).stem}", truth.get("consensus", "?"), result.status,
                     fmt(elapsed, 3), str(result.stats.get("domains", "-")), "INCORRECT" if bad else
                     ("ok" if decided else "undecided")])
        results.append({"instance": f"{family}/{onnx}:{vnnlib}", "truth": truth.get("consensus"),
                        "status": result.status, "time_s": elapsed, "limit_s": limit,
                        "domains": result.stats.get("domains"), "incorrect": bad, "message": result.message})
    solved = sum(r["status"] in ("sat", "unsat") for r in results)
    header = ["instance", "truth", "ours", "time s", "domains", "check"]
    title = f"hard instances on {device}, {fmt(timeout) if timeout else 'VNN-COMP'} s each: {solved}/{len(results)} " \
            f"decided, {wrong} incorrect"
    report.add(f"hard_{device.type}", table(title, header, rows), results)
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs and fewer repeats (the GPU check)")
    parser.add_argument("--data", help="benchmark folder (default gpu_data/, else ../shared/benchmarks)")
    parser.add_argument("--out", help="write gpu_tables.md and gpu.json here")
    parser.add_argument("--only", default="crown,bab,kernels,smoothing,hard", help="sections to run, comma-separated")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out of the kernel section")
    parser.add_argument("--hard-device", default="auto", help="device of the hard instances (default: the GPU)")
    parser.add_argument("--hard-timeout", default=None,
                        help="seconds per hard instance, or 'full' for their VNN-COMP timeout (default 30 on a GPU, "
                        "5 on the CPU)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = data_folder(args.data)
    report = Report(Path(args.out) if args.out else None)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if len(devices) > 1:  # the CUDA context, cuBLAS and the kernels' module load once here, in no measured time
        warm = torch.randn(64, 64, device="cuda")
        (warm @ warm).sum().item()
    gpu = torch.cuda.get_device_name(0) if len(devices) > 1 else "none"
    header = (f"devices: cpu (1 thread) and GPU {gpu}; torch {torch.__version__}; kernels {kernels.backend()}, "
              f"CUDA kernels {'built' if kernels.cuda_kernels_available() else 'not built'}; data {data}")
    report.add("setup", header, {"gpu": gpu, "torch": torch.__version__, "kernels": kernels.backend(),
                                 "cuda_kernels": kernels.cuda_kernels_available(), "data": str(data),
                                 "quick": args.quick})
    sections = set(args.only.split(","))
    hard_device = resolve_device(args.hard_device)
    hard_timeout = None if args.hard_timeout == "full" else float(args.hard_timeout) if args.hard_timeout else \
        (30.0 if hard_device.type == "cuda" else 5.0)
    wrong = 0
    # in the order of the targets, so a run cut short by its time limit keeps the ones that matter most
    runs: list[tuple[str, Callable[[], object]]] = [
        ("hard", lambda: section_hard(report, data, hard_device, hard_timeout)),
        ("bab", lambda: section_bab(report, data, devices, args.quick)),
        ("kernels", lambda: section_kernels(report, devices, args.quick, not args.no_compile)),
        ("crown", lambda: section_crown(report, data, devices, args.quick)),
        ("smoothing", lambda: section_smoothing(report, data, devices, args.quick)),
    ]
    for name, run in runs:
        if name in sections:
            started = time.perf_counter()
            try:
                outcome = run()
                wrong += outcome if name == "hard" else 0
            except Exception as error:  # noqa: BLE001 - one broken section must not hide the others
                report.add(f"{name}_error", f"== {name}: failed: {type(error).__name__}: {error}", str(error))
            print(f"({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
