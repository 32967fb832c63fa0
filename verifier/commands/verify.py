"""Decide a VNN-LIB property for an ONNX network: sat (counterexample), unsat (proof), unknown or timeout.

The answer comes within --timeout seconds (wall clock, model loading included). A `sat` answer carries
a counterexample that was re-run through onnxruntime on the original file and checked against the
property. --results writes the VNN-COMP result file: the verdict on the first line, then after `sat`
the witness as ((X_0 v) ... (Y_0 v)).

Instead of a VNN-LIB file, a classification-robustness property can be given directly: --center X.npy
--label L --eps E [--norm linf|l2]. For an L2 ball, when deterministic bounds are out of reach (an operator
the bound engine does not handle, or a network too large for the memory budget), --smoothing-sigma S
certifies the Gaussian-smoothed classifier instead (Cohen et al. 2019): a probabilistic statement about the
smoothed classifier, reported with the verdict `unknown` and never as `unsat`.

--workers N spreads the branch and bound of one instance over N local worker processes, --scheduler
tcp://HOST:PORT over an existing Dask cluster (both need the extra: pip install "verifier[distributed]").

Exit codes: 0 on any verdict (read it from the output), 2 on bad input (unreadable model or property).

Examples:
  verifier verify models/acasxu_like.onnx models/acasxu_like_prop_1.vnnlib --timeout 60
  verifier verify net.onnx prop.vnnlib --results out.txt --json
  verifier verify models/digits_mlp.onnx --center models/digits_mlp_img0.npy --label 2 --eps 0.05
  verifier verify models/acasxu_like.onnx models/acasxu_like_prop_1.vnnlib --workers 2
"""

from __future__ import annotations

import argparse
import sys
import time

from verifier.errors import VerifierError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("property", nargs="?", help="VNN-LIB property file (the unsafe region)")
    parser.add_argument("--timeout", type=float, default=300.0, help="wall-clock budget in seconds (default 300)")
    parser.add_argument("--results", metavar="FILE", help="write the VNN-COMP result file here")
    parser.add_argument("--json", action="store_true", help="print one JSON object (status, time_s, stats, ...)")
    parser.add_argument("--method", choices=["auto", "input-split", "relu-split", "bounds"], default="auto",
                        help="search method (default auto: chosen from the network and property)")
    parser.add_argument("--no-attack", action="store_true", help="skip the falsification phase")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks (default 0)")
    spread = parser.add_mutually_exclusive_group()
    spread.add_argument("--workers", type=int, default=None, metavar="N",
                        help="search over N local worker processes (Dask; pip install \"verifier[distributed]\")")
    spread.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="search over the workers of this Dask cluster (pip install \"verifier[distributed]\")")
    robust = parser.add_argument_group("robustness property (instead of a VNN-LIB file)")
    robust.add_argument("--center", metavar="X.npy", help="the input whose classification must be robust")
    robust.add_argument("--label", type=int, help="its class")
    robust.add_argument("--eps", type=float, help="radius of the ball around --center")
    robust.add_argument("--norm", choices=["linf", "l2"], default="linf", help="the ball's norm (default linf)")
    robust.add_argument("--smoothing-sigma", type=float, default=None,
                        help="noise level for the randomized-smoothing fallback (L2 only; the model must have "
                             "been trained with Gaussian noise of this sigma)")
    robust.add_argument("--memory-budget-gib", type=float, default=4.0,
                        help="bound computations expected to need more fall back to smoothing (default 4)")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from verifier.complete import VerifyOptions, verify
    from verifier.spec.witness import format_result

    options = VerifyOptions(method=args.method, attack=not args.no_attack, seed=args.seed)
    remaining = max(0.0, args.timeout - (time.monotonic() - started))
    if args.property is not None:
        if args.center is not None:
            raise VerifierError("give either a VNN-LIB property or --center/--label/--eps, not both")
        result = verify(args.model, args.property, timeout=remaining, options=options, workers=args.workers,
                        scheduler=args.scheduler)
    else:
        if args.center is None or args.label is None or args.eps is None:
            raise VerifierError("give a VNN-LIB property file, or --center X.npy --label L --eps E")
        if args.workers is not None or args.scheduler is not None:
            raise VerifierError("--workers and --scheduler apply to VNN-LIB properties (give the property as a file)")
        from pathlib import Path

        import numpy as np

        from verifier.complete import verify_robustness

        if not Path(args.center).is_file():
            raise VerifierError(f"centre file not found: {args.center}")
        result = verify_robustness(args.model, np.load(args.center), args.label, args.eps, norm=args.norm,
                                   timeout=remaining, options=options, smoothing_sigma=args.smoothing_sigma,
                                   memory_budget=int(args.memory_budget_gib * 2**30))
    if args.results:
        witness = result.counterexample
        text = format_result(result.status, witness.x if witness else None, witness.y if witness else None)
        with open(args.results, "w") as handle:
            handle.write(text)
    if args.json:
        payload = result.to_dict()
        payload["time_s"] = time.monotonic() - started
        import json

        print(json.dumps(payload))
    else:
        print(result.status)
        if result.message:
            print(f"  {result.message}", file=sys.stderr)
        if result.certificate is not None:
            print(f"  smoothing certificate: {result.certificate.status} (radius {result.certificate.radius:.4g}, "
                  f"confidence {result.certificate.confidence:g})")
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in result.stats.get("phases", {}).items())
        domains = result.stats.get("domains")
        print(f"  {time.monotonic() - started:.2f}s ({phases})" + (f", {domains} domains" if domains else ""),
              file=sys.stderr)
    return 0
