"""Why the engine defaults to one thread: CROWN and small matrix products with 1 vs N intra-op threads.

    python benchmarks/threads.py [--threads 2]

Prints, for a few networks and ops, the time with 1 thread, with N threads and the ratio N/1 (> 1 means
more threads are slower). Measured side by side in one run; asserts nothing.
"""

from __future__ import annotations

import argparse
import os

import torch

from common import ROOT, SHARED, median_time

import verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    cases = []
    for path in [SHARED / "acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx", SHARED / "mnist_fc/onnx/mnist-net_256x4.onnx",
                 SHARED / "oval21/onnx/cifar_base_kw.onnx", ROOT / "models/digits_cnn.onnx"]:
        if not path.is_file():
            continue
        network = verifier.load_onnx(path)
        for batch in (1, 256):
            center = torch.rand(batch, *network.input_shape, generator=torch.Generator().manual_seed(0))
            eps = 0.004 if network.input_size >= 3072 else 0.01
            cases.append((f"crown {path.name[:24]} B={batch}",
                          lambda n=network, c=center, e=eps: n.bounds(c - e, c + e, "crown")))
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    cases.append(("matmul 64x64", lambda: a @ b))
    big_a, big_b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    cases.append(("matmul 1024x1024", lambda: big_a @ big_b))
    print(f"{'case':42s} {'1 thread ms':>12s} {f'{args.threads} threads ms':>14s} {'ratio':>8s}")
    for name, fn in cases:
        verifier.set_threads(1)
        one = median_time(fn, repeats=7)
        verifier.set_threads(args.threads)
        many = median_time(fn, repeats=7)
        print(f"{name:42s} {1e3 * one:12.3f} {1e3 * many:14.3f} {many / one:8.2f}")
    verifier.set_threads(1)


if __name__ == "__main__":
    main()
