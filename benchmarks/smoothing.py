"""Randomized smoothing: sampling throughput against the raw forward pass, and certified accuracy on digits.

    python benchmarks/smoothing.py [--n 100000] [--count 360] [--skip-accuracy] [--budget-mib 1024]

1. Throughput (single thread): for each demo model and backend, samples/s of the raw batched forward pass
   (a fixed batch, forward only), of the Gaussian noise alone, and of the whole sampling loop
   (noise + forward + argmax + vote counting) -- the last over the first is the share of the time the
   forward pass takes.
2. Certified accuracy (Cohen et al. 2019, n0 = 100, alpha = 0.001) of the digits MLPs trained at sigma
   0.25 and 0.5, at L2 radii 0.25 / 0.5 / 1.0 in pixel units ([0, 1] pixels, 8x8 images), on the 360
   held-out test digits; the curves go to bench_out/smoothing_certified_accuracy.png.
3. The fallback decision: worst-case CROWN memory of the first network of each public family (when
   ../shared/benchmarks is present) and whether smoothing would be chosen under the budget.

Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import verifier  # noqa: E402
from verifier.smoothing import SmoothedClassifier, estimate_bound_memory, should_fall_back  # noqa: E402
from verifier.smoothing.report import CertifiedRow, certified_accuracy, plot_certified_accuracy  # noqa: E402

MODELS = ROOT / "models"
SHARED = ROOT.parent / "shared" / "benchmarks"
DEMOS = ["digits_smooth_mlp_sigma0.25", "digits_smooth_mlp_sigma0.5", "digits_smooth_cnn_sigma0.25"]
FAMILIES = ["acasxu", "mnist_fc", "eran", "oval21", "cifar10_resnet", "sri_resnet_a", "collins_rul_cnn"]


def interleaved_rates(works: dict[str, tuple], rounds: int = 7) -> dict[str, float]:
    """Items per second of each ``work`` (name -> (work, items)): the best of ``rounds`` rounds that run
    every work once in turn, so that load from other processes hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in works}
    for work, _ in works.values():
        work()
    for _ in range(rounds):
        for name, (work, _) in works.items():
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    return {name: works[name][1] / min(times[name]) for name in works}


def repeat(work, times: int):
    """``work`` run ``times`` times in a row (so every measured work covers the same number of samples)."""
    def run() -> None:
        for _ in range(times):
            work()
    return run


def throughput(batch: int, samples: int) -> None:
    x = np.load(MODELS / "digits_test.npz")["x"][0]
    calls = samples // batch
    print(f"== throughput, samples/s (batch {batch}, {calls * batch} samples per measurement, best of 7, 1 thread)")
    print(f"{'model':30s} {'backend':12s} {'raw forward':>12s} {'noise only':>12s} {'sampling':>12s} {'ratio':>6s}")
    for name in DEMOS:
        for backend in ("ir", "onnxruntime"):
            smoothed = SmoothedClassifier(MODELS / f"{name}.onnx", sigma=0.25, seed=0, backend=backend)
            center = smoothed.as_batch(x)[0]
            fixed = center + 0.25 * torch.randn(batch, *center.shape, generator=torch.Generator().manual_seed(0))
            buffer = torch.empty_like(fixed)
            rates = interleaved_rates({
                "forward": (repeat(partial(smoothed.base.scores, fixed), calls), calls * batch),
                "noise": (repeat(partial(torch.randn, buffer.shape, generator=smoothed.generator, out=buffer), calls),
                          calls * batch),
                "sampling": (partial(smoothed.sample_counts, center, calls * batch, batch), calls * batch),
            })
            print(f"{name:30s} {backend:12s} {rates['forward']:12.3g} {rates['noise']:12.3g} {rates['sampling']:12.3g} "
                  f"{rates['sampling'] / rates['forward']:6.2f}")


def accuracy(n: int, count: int, radii: list[float]) -> None:
    data = np.load(MODELS / "digits_test.npz")
    x, labels = data["x"][:count], data["labels"][:count]
    print(f"\n== certified accuracy on {len(x)} test digits (n0 = 100, n = {n}, alpha = 0.001; L2, pixels in [0, 1])")
    print(f"{'model':30s} {'sigma':>5s} " + " ".join(f"{'r=' + format(r, 'g'):>7s}" for r in radii)
          + f" {'abstain':>8s} {'s/input':>8s}")
    curves = {}
    for name, sigma in (("digits_smooth_mlp_sigma0.25", 0.25), ("digits_smooth_mlp_sigma0.5", 0.5)):
        smoothed = SmoothedClassifier(MODELS / f"{name}.onnx", sigma=sigma, seed=0)
        rows = []
        for index, (image, label) in enumerate(zip(x, labels)):
            result = smoothed.certify(image, n0=100, n=n, alpha=0.001, batch_size=1000)
            rows.append(CertifiedRow(index, int(label), result.label, result.radius, result.label == label,
                                     result.time_s))
        table = certified_accuracy(rows, radii)
        abstained = sum(row.prediction == -1 for row in rows)
        per_input = statistics.mean(row.time_s for row in rows)
        print(f"{name:30s} {sigma:5.2f} " + " ".join(f"{table[r]:7.3f}" for r in radii)
              + f" {abstained:8d} {per_input:8.3f}")
        curves[f"sigma {sigma:g}"] = rows
    out = ROOT / "bench_out"
    out.mkdir(exist_ok=True)
    plot_certified_accuracy(curves, out / "smoothing_certified_accuracy.png",
                            title=f"digits MLP, n0=100, n={n}, alpha=0.001")
    print(f"plot: {out / 'smoothing_certified_accuracy.png'}")


def fallback(budget_mib: int) -> None:
    budget = budget_mib * 2**20
    print(f"\n== fallback decision, worst case (all ReLUs unstable), one box, budget {budget_mib} MiB")
    print(f"{'network':40s} {'unchunked peak':>15s} {'1-row peak':>11s}  decision")
    paths = [MODELS / "digits_cnn.onnx"]
    for family in FAMILIES:
        found = sorted((SHARED / family / "onnx").glob("*.onnx")) if (SHARED / family).is_dir() else []
        paths += found[:1]
    for path in paths:
        try:
            network = verifier.load_onnx(path)
        except verifier.VerifierError as error:
            print(f"{path.name[:40]:40s} {'-':>15s} {'-':>11s}  fall back: {error}")
            continue
        estimate = estimate_bound_memory(network, spec_rows=network.output_size - 1)
        decision, reason = should_fall_back(network, budget, spec_rows=network.output_size - 1)
        print(f"{path.name[:40]:40s} {estimate.peak_bytes / 2**20:12.1f} MiB {estimate.min_peak_bytes / 2**20:7.2f} MiB"
              f"  {'fall back' if decision else 'CROWN'}: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="estimation samples per input (default 100000)")
    parser.add_argument("--count", type=int, default=360, help="test digits to certify (default all 360)")
    parser.add_argument("--batch", type=int, default=1000, help="samples per forward pass (default 1000)")
    parser.add_argument("--skip-accuracy", action="store_true", help="only measure throughput and the fallback")
    parser.add_argument("--budget-mib", type=int, default=1024, help="memory budget of the fallback decision")
    args = parser.parse_args()
    verifier.set_threads(1)
    throughput(args.batch, 20 * args.batch)
    if not args.skip_accuracy:
        accuracy(args.n, args.count, [0.0, 0.25, 0.5, 1.0])
    fallback(args.budget_mib)


if __name__ == "__main__":
    main()
