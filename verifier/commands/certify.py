"""Certified accuracy of a model over a dataset, by every certification method.

For each input of DATA.npz (arrays 'x': [N, *input shape] or [N, input size], 'labels': [N]) and each
epsilon, every chosen method says whether the top class provably stays the label on the ball (L-infinity
or L2, intersected with the valid input domain):

  clean      the prediction (accuracy at epsilon 0)
  pgd        a strong batched attack: robust under attack, an upper bound on certified accuracy
  ibp        interval bound propagation              crown      CROWN (L2: the ball's dual norm)
  alpha      alpha-CROWN (optimised slopes)          complete   the full verifier, --timeout-per-input each
  lipschitz  margin / certified Lipschitz constant of each logit difference (closed-form radius)
  smoothing  randomized smoothing at --sigma (probabilistic, about the smoothed classifier; reported apart)

A cheaper method's certificate is reused by the more expensive ones (ibp -> crown -> alpha -> complete,
lipschitz -> complete), and inputs PGD breaks are sent to no certifier. --radius finds, per input and
method, the largest epsilon certified (bisection up to the largest --eps; closed form for lipschitz and
smoothing): certified accuracy against epsilon and the average certified radius.

Writes DIR/certify.csv (one row per input, flushed as each batch is done; --resume continues a killed
run), DIR/summary.json and DIR/certified_accuracy.png, and prints the summary table (or JSON with --json).

Examples:
  verifier certify models/digits_mlp.onnx models/digits_test.npz --eps 0.01,0.03,0.05
  verifier certify models/digits_orthogonal.onnx models/digits_test.npz --eps 0.25,0.5 --norm l2 \\
      --methods pgd,crown,lipschitz --radius --out results/ortho
  verifier certify net.onnx cifar.npz --eps 2/255,8/255 --mean 0.49,0.48,0.45 --std 0.25,0.24,0.26
"""

from __future__ import annotations

import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

from verifier.errors import VerifierError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from verifier.certification.defaults import DEFAULT_METHODS, DEFAULT_TIMEOUT

    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("data", metavar="DATA.npz", help="NumPy .npz file with arrays 'x' and 'labels'")
    parser.add_argument("--eps", required=True,
                        help="comma-separated radii in raw input units; fractions allowed (0.01,0.03 or 2/255,8/255)")
    parser.add_argument("--norm", choices=["linf", "l2"], default="linf", help="the ball's norm (default linf)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated methods (default {','.join(DEFAULT_METHODS)}; also smoothing)")
    parser.add_argument("--timeout-per-input", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds of the complete verifier per input and epsilon (default {DEFAULT_TIMEOUT:g}; "
                        "per input in --radius mode)")
    parser.add_argument("--radius", action="store_true",
                        help="per input and method the largest certified epsilon (bisection up to the largest --eps)")
    parser.add_argument("--radius-tol", type=float, default=None,
                        help="bisection tolerance of --radius (default: largest eps / 128)")
    parser.add_argument("--mean", default=None, help="per-channel mean the model subtracts (comma-separated)")
    parser.add_argument("--std", default=None, help="per-channel std the model divides by (comma-separated)")
    parser.add_argument("--clip", default="auto",
                        help="valid input domain 'low,high', or 'none'; default auto: 0,1 when the data lies in it")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: cpu, the model's)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N inputs")
    parser.add_argument("--batch", type=int, default=128, help="inputs bounded and written together (default 128)")
    parser.add_argument("--pgd-steps", type=int, default=50, help="PGD steps (default 50)")
    parser.add_argument("--pgd-restarts", type=int, default=8, help="PGD restarts (default 8)")
    parser.add_argument("--alpha-iterations", type=int, default=30, help="alpha-CROWN Adam steps (default 30)")
    parser.add_argument("--no-reuse", action="store_true",
                        help="run every method on every correctly classified input (to compare methods)")
    parser.add_argument("--sigma", type=float, default=None, help="smoothing noise level (the model's training sigma)")
    parser.add_argument("--n0", type=int, default=100, help="smoothing: selection samples (default 100)")
    parser.add_argument("--n", type=int, default=100_000, help="smoothing: estimation samples (default 100000)")
    parser.add_argument("--smoothing-alpha", type=float, default=0.001,
                        help="smoothing: failure probability of each certificate (default 0.001)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks and smoothing noise (default 0)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory (default certify_out/MODEL_NAME)")
    parser.add_argument("--resume", action="store_true", help="continue the run recorded in DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace the run recorded in DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object (summary and rows)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")


def parse_numbers(text: str | None, what: str) -> list[float] | None:
    """Comma-separated numbers or fractions (``2/255``)."""
    if text is None:
        return None
    try:
        return [float(Fraction(part.strip())) for part in text.split(",") if part.strip()]
    except (ValueError, ZeroDivisionError):
        raise VerifierError(f"{what} must be comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from verifier.certification import CertifyOptions, certify
    from verifier.certification.data import load_npz

    if args.resume and args.overwrite:
        raise VerifierError("--resume and --overwrite exclude each other")
    x, labels = load_npz(args.data)
    options = CertifyOptions(
        batch=args.batch, pgd_steps=args.pgd_steps, pgd_restarts=args.pgd_restarts,
        alpha_iterations=args.alpha_iterations, reuse=not args.no_reuse, radius_tol=args.radius_tol,
        sigma=args.sigma, n0=args.n0, n=args.n, smoothing_alpha=args.smoothing_alpha, seed=args.seed,
    )
    out = Path(args.out) if args.out else Path("certify_out") / Path(args.model).stem
    result = certify(
        args.model, x, labels, parse_numbers(args.eps, "--eps"), norm=args.norm, methods=args.methods,
        timeout_per_input=args.timeout_per_input, radius=args.radius, mean=parse_numbers(args.mean, "--mean"),
        std=parse_numbers(args.std, "--std"), clip=args.clip, device=args.device, out=out, resume=args.resume,
        overwrite=args.overwrite, limit=args.limit, options=options, progress=args.progress,
        names={"model": args.model, "data": args.data},
    )
    if args.json:
        from verifier.certification.runner import json_ready

        summary = result.summary()
        summary["rows"] = result.rows
        print(json.dumps(json_ready(summary)))
        return 0
    sys.stdout.write(result.table() + "\n")
    for kind, path in result.extras.get("files", {}).items():
        sys.stdout.write(f"wrote {kind}: {path}\n")
    return 0
