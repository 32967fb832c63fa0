"""IBP and CROWN per network family: median time per call (single thread, warm) and mean bound width.

    python benchmarks/bounds.py [--families acasxu mnist_fc ...] [--batch B]

Each network is bounded over B boxes (default 1) of a fixed radius around uniform random inputs in [0, 1].
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse

import torch

from common import ROOT, SHARED, family_networks, median_time

import verifier

FAMILIES = ["acasxu", "mnist_fc", "eran", "oval21", "cifar10_resnet", "sri_resnet_a", "rl_benchmarks",
            "collins_rul_cnn", "test"]


def radius(network: verifier.Network) -> float:
    return 0.004 if network.input_size >= 3072 else 0.01 if network.input_size >= 400 else 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="*", default=FAMILIES + ["models"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--per-family", type=int, default=3, help="networks per family (default 3)")
    args = parser.parse_args()
    verifier.set_threads(1)
    print(f"{'family':16s} {'network':34s} {'ibp ms':>9s} {'crown ms':>9s} {'ibp width':>11s} {'crown width':>12s}")
    for family in args.families:
        paths = sorted((ROOT / "models").glob("*.onnx")) if family == "models" else family_networks(family)
        if not paths:
            print(f"{family:16s} (not available under {SHARED})")
            continue
        for path in paths[: args.per_family]:
            network = verifier.load_onnx(path)
            generator = torch.Generator().manual_seed(0)
            center = torch.rand(args.batch, *network.input_shape, generator=generator)
            lower, upper = center - radius(network), center + radius(network)
            results = {}
            times = {}
            for method in ("ibp", "crown"):
                times[method] = median_time(lambda m=method: results.__setitem__(m, network.bounds(lower, upper, m)))
            width = {m: (b.upper - b.lower).mean().item() for m, b in results.items()}
            print(f"{family:16s} {path.name[:34]:34s} {1e3 * times['ibp']:9.2f} {1e3 * times['crown']:9.1f} "
                  f"{width['ibp']:11.4g} {width['crown']:12.4g}")


if __name__ == "__main__":
    main()
