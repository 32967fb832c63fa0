"""Compute sound bounds on every output of an ONNX network over an input box.

The box is either a centre and an L-infinity radius (--center X.npy --eps E) or explicit corners
(--box LOWER.npy UPPER.npy). Arrays may have the network's input shape, be flat, or carry a leading
batch dimension (one box per row). Every value the network can output on the box lies within the
printed bounds.

--json prints one strict-JSON object: model, method, intermediate, boxes, lower and upper (one entry per
output; a list per box when several boxes are given), time_s, load_time_s. A bound that is not finite (an
output unbounded on the box, e.g. 1/x across 0) is null: in `lower` it means minus infinity, in `upper`
plus infinity.

Examples:
  verifier bounds models/acasxu_like.onnx --center models/acasxu_like_center.npy --eps 0.05
  verifier bounds net.onnx --box lo.npy hi.npy --method ibp --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from verifier.commands.options import add_device_argument, gib_to_bytes, load_array, nonnegative_number, positive_number
from verifier.errors import OptionError, VerifierError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model file")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--center", metavar="X.npy", help="centre of an L-infinity ball (use with --eps)")
    group.add_argument("--box", nargs=2, metavar=("LOWER.npy", "UPPER.npy"), help="lower and upper corners of the box")
    parser.add_argument("--eps", type=nonnegative_number, help="radius of the L-infinity ball around --center")
    parser.add_argument("--method", choices=["ibp", "crown"], default="crown",
                        help="ibp: interval bound propagation (fast, loose); "
                        "crown: backward linear relaxation (default)")
    parser.add_argument("--intermediate", choices=["ibp", "crown"], default="crown",
                        help="how CROWN bounds the pre-activation layers (default crown; ibp is faster, looser)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of a table (strict JSON: an infinite bound is null)")
    parser.add_argument("--load-limit-gib", type=positive_number, default=None,
                        help="refuse models whose tensors or folded constants need more memory than this "
                        "(default: a quarter of the available memory)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    from verifier.api import load_onnx

    limit = gib_to_bytes(args.load_limit_gib)
    if args.center is not None:
        if args.eps is None:
            raise VerifierError("--center needs a non-negative --eps")
        center = load_array(args.center, "--center", limit)
        lower, upper = center - args.eps, center + args.eps
    else:
        if args.eps is not None:
            raise VerifierError("--eps only goes with --center")
        lower, upper = load_array(args.box[0], "--box lower", limit), load_array(args.box[1], "--box upper", limit)
        if lower.shape == upper.shape and bool((lower > upper).any()):
            raise OptionError("--box: the box is empty (some lower bound exceeds its upper bound)")
    start = time.perf_counter()
    network = load_onnx(args.model, memory_limit=limit).to(args.device)
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
            "lower": _finite_or_null((lo[0] if single else lo).tolist()),
            "upper": _finite_or_null((hi[0] if single else hi).tolist()),
            "time_s": elapsed,
            "load_time_s": load_time,
        }, allow_nan=False))
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


def _finite_or_null(values):
    """Nested lists of floats with every non-finite value as None (JSON null)."""
    if isinstance(values, list):
        return [_finite_or_null(v) for v in values]
    return values if math.isfinite(values) else None
