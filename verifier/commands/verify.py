"""Decide a VNN-LIB property for an ONNX network: sat (counterexample), unsat (proof), unknown or timeout.

The answer comes within --timeout seconds (wall clock, model loading included). A `sat` answer carries
a counterexample that was re-run through onnxruntime on the original file and checked against the
property. --results writes the VNN-COMP result file: the verdict on the first line, then after `sat`
the witness as ((X_0 v) ... (Y_0 v)).

Exit codes: 0 on any verdict (read it from the output), 2 on bad input (unreadable model or property).

Examples:
  verifier verify models/acasxu_like.onnx models/acasxu_like_prop_1.vnnlib --timeout 60
  verifier verify net.onnx prop.vnnlib --results out.txt --json
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("property", help="VNN-LIB property file (the unsafe region)")
    parser.add_argument("--timeout", type=float, default=300.0, help="wall-clock budget in seconds (default 300)")
    parser.add_argument("--results", metavar="FILE", help="write the VNN-COMP result file here")
    parser.add_argument("--json", action="store_true", help="print one JSON object (status, time_s, stats, ...)")
    parser.add_argument("--method", choices=["auto", "input-split", "relu-split", "bounds"], default="auto",
                        help="search method (default auto: chosen from the network and property)")
    parser.add_argument("--no-attack", action="store_true", help="skip the falsification phase")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks (default 0)")


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from verifier.spec.witness import format_result
    from verifier.verify import VerifyOptions, verify

    options = VerifyOptions(method=args.method, attack=not args.no_attack, seed=args.seed)
    remaining = max(0.0, args.timeout - (time.monotonic() - started))
    result = verify(args.model, args.property, timeout=remaining, options=options)
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
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in result.stats.get("phases", {}).items())
        domains = result.stats.get("domains")
        print(f"  {time.monotonic() - started:.2f}s ({phases})" + (f", {domains} domains" if domains else ""),
              file=sys.stderr)
    return 0
