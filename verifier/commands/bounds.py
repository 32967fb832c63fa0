"""Compute sound bounds on every output of an ONNX network over an input box.

The box is either a centre and an L-infinity radius (--center X.npy --eps E) or explicit corners
(--box LOWER.npy UPPER.npy). Arrays may have the network's input shape, be flat, or carry a leading
batch dimension (one box per row). Every value the network can output on the box lies within the
printed bounds.

Examples:
  verifier bounds models/acasxu_like.onnx --center models/acasxu_like_center.npy --eps 0.05
  verifier bounds net.onnx --box lo.npy hi.npy --method ibp --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from verifier.device import add_device_argument
from verifier.errors import VerifierError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model file")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--center", metavar="X.npy", help="centre of an L-infinity ball (use with --eps)")
    group.add_argument("--box", nargs=2, metavar=("LOWER.npy", "UPPER.npy"), help="lower and upper corners of the box")
    parser.add_argument("--eps", type=float, help="radius of the L-infinity ball around --center")
    parser.add_argument("--method", choices=["ibp", "crown"], default="crown",
                        help="ibp: interval bound propagation (fast, loose); "
                        "crown: backward linear relaxation (default)")
    parser.add_argument("--intermediate", choices=["ibp", "crown"], default="crown",
                        help="how CROWN bounds the pre-activation layers (default crown; ibp is faster, looser)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_device_argument(parser)


def _load_array(path: str, what: str) -> np.ndarray:
    file = Path(path)
    if not file.is_file():
        raise VerifierError(f"{what} file not found: {file}")
    try:
        return np.load(file) if file.suffix == ".npy" else np.loadtxt(file, ndmin=1)
    except Exception as error:
        raise VerifierError(f"cannot read {what} from {file}: {error}") from None


def run(args: argparse.Namespace) -> int:
    from verifier.api import load_onnx

    if args.center is not None:
        if args.eps is None or args.eps < 0:
            raise VerifierError("--center needs a non-negative --eps")
        center = _load_array(args.center, "centre")
        lower, upper = center - args.eps, center + args.eps
    else:
        if args.eps is not None:
            raise VerifierError("--eps only goes with --center")
        lower, upper = _load_array(args.box[0], "lower bound"), _load_array(args.box[1], "upper bound")
    start = time.perf_counter()
    network = load_onnx(args.model).to(args.device)
    load_time = time.perf_counter() - start
    start = time.perf_counter()
    result = network.bounds(lower, upper, method=args.method, intermediate=args.intermediate)
    elapsed = time.perf_counter() - start
    lo, hi = result.lower.cpu().numpy().astype(float), result.upper.cpu().numpy().astype(float)
    if args.json:
        single = lo.shape[0] == 1
        print(json.dumps({
            "model": args.model,
            "method": args.method,
            "intermediate": args.intermediate if args.method == "crown" else None,
            "boxes": int(lo.shape[0]),
            "lower": (lo[0] if single else lo).tolist(),
            "upper": (hi[0] if single else hi).tolist(),
            "time_s": elapsed,
            "load_time_s": load_time,
        }))
        return 0
    out = sys.stdout
    for b in range(lo.shape[0]):
        if lo.shape[0] > 1:
            out.write(f"box {b}\n")
        out.write(f"{'output':>8s} {'lower':>14s} {'upper':>14s} {'width':>12s}\n")
        for j in range(lo.shape[1]):
            out.write(f"{j:>8d} {lo[b, j]:>14.6g} {hi[b, j]:>14.6g} {hi[b, j] - lo[b, j]:>12.4g}\n")
    out.write(f"{args.method} bounds in {elapsed:.3f} s (model loaded in {load_time:.3f} s)\n")
    return 0
