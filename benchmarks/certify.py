"""``verifier certify``: time per input per method and certified accuracy per method, on the shipped digits models
and on mnist_fc 256x2 (public VNN-COMP network) with MNIST inputs recovered from its VNN-LIB boxes.

    python benchmarks/certify.py [--quick] [--count 360] [--complete-timeout 1] [--mnist-timeout 20]
                                 [--figures benchmarks/figures]

1. **Target**: all 360 digits test inputs through ``ibp,crown`` (one epsilon) with ``verifier.certify``, single
   thread, warm (median of 3 calls after one warm-up). Side by side in the same run: the CNN with its
   convolutions kept as convolutions (no densification), and the same bounds one input at a time
   (``Network.bounds`` per input), as ratios.
2. **Certified accuracy and time per input per method**: every method (complete with a per-input budget) on
   digits_mlp and digits_cnn (L-infinity, eps 0.01 / 0.02 / 0.03), digits_orthogonal (L2, eps 0.1 / 0.3 / 0.5:
   where Lipschitz certificates are tight) and mnist_fc 256x2 (L-infinity 0.03 / 0.05, 15 inputs, the complete
   verifier's answers compared with the benchmark's ground truth). Figures go to ``--figures``.

The MNIST inputs: each ``prop_i_0.03.vnnlib`` box is ``[max(x - 0.03, 0), min(x + 0.03, 1)]`` around the image
``x`` (pixels in [0, 1]), so ``x = lower + 0.03`` where the lower end is not clipped, else ``upper - 0.03``; the
label is the class the property's rows protect. Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import verifier  # noqa: E402
from verifier.certification import certify  # noqa: E402
from verifier.certification import model as certification_model  # noqa: E402
from verifier.certification.balls import margin_spec  # noqa: E402

MODELS = ROOT / "models"
MNIST_FC = ROOT.parent / "shared" / "benchmarks" / "mnist_fc"


def mnist_inputs(eps: float = 0.03) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 15 MNIST images and labels behind mnist_fc's properties (see the module docstring)."""
    from verifier.spec import parse_vnnlib

    xs, labels, names = [], [], []
    for i in range(15):
        path = MNIST_FC / "vnnlib" / f"prop_{i}_{eps:g}.vnnlib"
        spec = parse_vnnlib(path, n_inputs=784, n_outputs=10)
        case = spec.cases[0]
        x = np.clip(np.where(case.lower > 0, case.lower + eps, case.upper - eps), 0.0, 1.0)
        label = int(np.flatnonzero((np.stack([c.C[0] for c in spec.cases]) > 0).all(0))[0])
        xs.append(x)
        labels.append(label)
        names.append(path.name)
    return np.array(xs, dtype=np.float32), np.array(labels), names


def ground_truth() -> dict[str, str]:
    import csv

    with open(MNIST_FC / "ground_truth.csv") as handle:
        return {(row["onnx"], row["vnnlib"]): row["consensus"] for row in csv.DictReader(handle)}


def timed(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def convolutions_kept(path: Path, x, labels, eps: float) -> float:
    """Seconds of the same certify call with the convolutions left as convolutions (no densification)."""
    limit = certification_model.DENSE_CONV_LIMIT
    certification_model.DENSE_CONV_LIMIT = 0
    try:
        return timed(lambda: certify(path, x, labels, eps, methods="ibp,crown"), repeats=1)
    finally:
        certification_model.DENSE_CONV_LIMIT = limit


def one_input_at_a_time(path: Path, x, labels, eps: float) -> float:
    """Seconds of IBP and CROWN through ``Network.bounds``, one input (and its spec rows) per call."""
    net = verifier.load_onnx(path)
    batch = net.as_batch(x)
    spec = margin_spec(torch.as_tensor(labels), 10, net.dtype)

    def run():
        for i in range(len(labels)):
            lo, hi = (batch[i] - eps).clamp(0, 1), (batch[i] + eps).clamp(0, 1)
            net.bounds(lo, hi, "ibp", C=spec[i : i + 1])
            net.bounds(lo, hi, "crown", C=spec[i : i + 1])

    return timed(run, repeats=1)


def target(x: np.ndarray, labels: np.ndarray, eps: float) -> None:
    print(f"\n== {len(labels)} digits test inputs through ibp,crown at L-infinity eps {eps:g} (single thread, warm) ==")
    print(f"{'model':20s} {'certify s':>10s} {'ms/input':>9s} {'crown acc':>9s}  side by side")
    for name in ("digits_mlp", "digits_cnn", "digits_orthogonal"):
        path = MODELS / f"{name}.onnx"
        result = certify(path, x, labels, eps, methods="ibp,crown")
        seconds = timed(lambda path=path: certify(path, x, labels, eps, methods="ibp,crown"))
        extra = ""
        if name == "digits_cnn":
            conv = convolutions_kept(path, x, labels, eps)
            extra = f"convolutions kept: {conv:.2f} s ({conv / seconds:.1f}x slower)"
        if name == "digits_mlp":
            single = one_input_at_a_time(path, x, labels, eps)
            extra = f"one input at a time (Network.bounds): {single:.2f} s ({single / seconds:.1f}x slower)"
        print(f"{name:20s} {seconds:>10.3f} {1000 * seconds / len(labels):>9.3f} "
              f"{result.accuracy('crown', eps):>9.3f}  {extra}")


def accuracy_table(title: str, result, figure: Path | None) -> None:
    print(f"\n== {title} ==")
    print(result.table())
    if figure is not None:
        from verifier.certification.plot import plot_certified_accuracy

        figure.parent.mkdir(parents=True, exist_ok=True)
        plot_certified_accuracy(result, figure, title=title)
        print(f"figure: {figure.relative_to(ROOT) if figure.is_relative_to(ROOT) else figure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 digits inputs, no mnist_fc complete search")
    parser.add_argument("--count", type=int, default=360, help="digits inputs (default all 360)")
    parser.add_argument("--complete-timeout", type=float, default=1.0, help="digits: complete budget per input (s)")
    parser.add_argument("--mnist-timeout", type=float, default=20.0, help="mnist_fc: complete budget per input (s)")
    parser.add_argument("--figures", default=str(ROOT / "benchmarks" / "figures"), help="where the figures go")
    args = parser.parse_args()
    torch.set_num_threads(1)
    verifier.set_threads(1)
    data = np.load(MODELS / "digits_test.npz")
    count = 60 if args.quick else args.count
    x, labels = data["x"][:count], data["labels"][:count]
    figures = Path(args.figures)
    target(data["x"], data["labels"], 0.01)

    work = Path(tempfile.mkdtemp(prefix="certify_bench_"))
    try:
        for name in ("digits_mlp", "digits_cnn"):
            result = certify(MODELS / f"{name}.onnx", x, labels, [0.01, 0.02, 0.03],
                             timeout_per_input=args.complete_timeout, out=work / name)
            accuracy_table(f"{name}, {count} inputs, L-infinity", result, figures / f"certify_{name}.png")
        result = certify(MODELS / "digits_orthogonal.onnx", x, labels, [0.1, 0.3, 0.5], norm="l2",
                         methods="pgd,ibp,crown,alpha,lipschitz,complete", timeout_per_input=args.complete_timeout,
                         radius=True, out=work / "orthogonal")
        accuracy_table(f"digits_orthogonal, {count} inputs, L2 (radius mode)", result,
                       figures / "certify_digits_orthogonal.png")
        if MNIST_FC.is_dir():
            mx, mlabels, names = mnist_inputs()
            methods = "pgd,ibp,crown,alpha,lipschitz" + ("" if args.quick else ",complete")
            result = certify(MNIST_FC / "onnx" / "mnist-net_256x2.onnx", mx, mlabels, [0.03, 0.05], methods=methods,
                             timeout_per_input=args.mnist_timeout, out=work / "mnist")
            accuracy_table("mnist_fc 256x2, 15 inputs from its VNN-LIB boxes, L-infinity", result,
                           figures / "certify_mnist_fc_256x2.png")
            if "complete" in result.methods:
                truth = ground_truth()
                agree = disagree = 0
                for eps in (0.03, 0.05):
                    for row, name in zip(result.rows, names):
                        vnnlib = f"vnnlib/{name.replace('0.03', f'{eps:g}')}"
                        expected = truth.get(("onnx/mnist-net_256x2.onnx", vnnlib))
                        status = row[f"complete_status@{eps:g}"]
                        ours = {"certified": "unsat", "falsified": "sat", "attacked": "sat",
                                "misclassified": "sat"}.get(status)
                        if ours is None or expected not in ("sat", "unsat"):
                            continue
                        agree += ours == expected
                        disagree += ours != expected
                print(f"complete vs ground truth: {agree} agree, {disagree} disagree (decided answers only)")
        else:
            print(f"\n(mnist_fc not found at {MNIST_FC}: skipped)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
