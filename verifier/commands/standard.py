"""The VNN-LIB standard's ``verify`` command (reached through ``verifier verify``).

    verifier verify QUERY.vnnlib --network NAME=MODEL.onnx [--network ...] [--timeout SECONDS]
                    [--serialise-assignments DIR]

The first line on stdout is ``sat``, ``unsat``, ``unknown`` or ``timed-out``; after ``sat`` come every declared
variable in declaration order, ``NAME TYPE [SHAPE]`` and then its values in row-major order, one per line
(or, with ``--serialise-assignments DIR``, one ``DIR/NAME.pb`` ONNX TensorProto per variable). Messages go to
stderr; bad input (a malformed query, a wrong ``--network`` set, a shape or element type the model does not
have) is one line ``file:line:col: ...`` and exit code 2.

``verifier verify MODEL.onnx QUERY.vnnlib`` with a VNN-LIB 2.0 query of one network answers the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from verifier.errors import VerifierError
from verifier.limits import process_started_at


def is_standard(args: argparse.Namespace) -> bool:
    """Whether a ``verify`` invocation is the standard form (``--network``) or names a VNN-LIB 2.0 query."""
    if getattr(args, "network", None):
        return True
    return args.property is not None and _version(args.property) is not None


def _version(path: str):
    from verifier.spec.vnnlib2 import vnnlib_version

    try:
        if path.endswith(".gz"):
            import gzip

            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return vnnlib_version(handle.read(4096))
        with open(path, encoding="utf-8", errors="replace") as handle:
            return vnnlib_version(handle.read(4096))
    except Exception:  # noqa: BLE001 - unreadable or corrupt (zlib.error...): the 1.0 reader names the problem
        return None


def _networks(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The query path and the ``NAME -> MODEL`` map of the invocation."""
    if not args.network:  # verify MODEL QUERY: the query's single network
        from verifier.spec.vnnlib2 import parse_query

        query = parse_query(args.property)
        roots = [n.name for n in query.networks if not n.equal_to]
        if len(roots) != 1:
            raise VerifierError(f"{args.property} declares {len(roots)} networks ({', '.join(roots)}); give each "
                                "one as --network NAME=MODEL.onnx")
        return args.property, {roots[0]: args.model}
    if args.property is not None:
        raise VerifierError("give the query and --network NAME=MODEL.onnx, or a model and a query, not both")
    networks: dict[str, str] = {}
    for item in args.network:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise VerifierError(f"--network {item!r}: expected NAME=MODEL.onnx")
        if name in networks:
            raise VerifierError(f"--network {name} is given twice")
        networks[name] = path
    return args.model, networks


def run(args: argparse.Namespace) -> int:
    """Run the standard ``verify`` command for ``verifier verify`` arguments (see the module docstring)."""
    query_path, networks = _networks(args)
    started = getattr(args, "started_at", None) or process_started_at()
    budget = None if args.timeout is None else max(0.0, args.timeout - (time.monotonic() - started))
    # keep back time to write the answer before a caller's kill at exactly --timeout
    budget = None if budget is None else max(0.0, budget * 0.97 - 0.3)
    if _version(query_path) is None:
        return _run_vnnlib1(args, query_path, networks, budget)
    from verifier.frontend.query_verify import verify_query

    result = verify_query(query_path, networks, timeout=budget, options=_options(args), device=args.device)
    for line in result.warnings:
        print(line, file=sys.stderr)
    serialise = getattr(args, "serialise_assignments", None)
    text = result.standard_text()
    if result.status == "sat" and serialise:
        result.serialise(serialise)
        text = text.splitlines()[0] + "\n"
    if args.json:
        payload = {"status": result.status, "message": result.message,
                   "assignment": None if result.assignment is None else
                   {k: v.astype(float).tolist() for k, v in result.assignment.items()},
                   "time_s": time.monotonic() - started}
        print(json.dumps(payload))
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if args.results:
        with open(args.results, "w") as handle:
            handle.write(result.standard_text())
    if result.message:
        print(f"  {result.message}", file=sys.stderr)
    return 0


def _options(args: argparse.Namespace):
    """The search's options from the command line (``verify``'s parser: method, attack, seed, float soundness)."""
    from verifier.complete import VerifyOptions

    return VerifyOptions(method=args.method, attack=not args.no_attack, seed=args.seed, float_sound=args.float_sound)


def _run_vnnlib1(args: argparse.Namespace, query_path: str, networks: dict[str, str], budget) -> int:
    """A VNN-LIB 1.0 property through the standard command line: one network; the witness as ``((X_0 v) ...)``."""
    from verifier.complete import verify
    from verifier.frontend.query_verify import STANDARD_WORDS
    from verifier.spec.witness import format_counterexample

    if len(networks) != 1:
        raise VerifierError(f"{query_path} is a VNN-LIB 1.0 property, about one network; got {len(networks)}")
    model = next(iter(networks.values()))
    result = verify(model, query_path, timeout=budget, options=_options(args), device=args.device)
    lines = [STANDARD_WORDS[result.status]]
    if result.counterexample is not None:
        lines.append(format_counterexample(result.counterexample.x, result.counterexample.y))
    sys.stdout.write("\n".join(lines) + "\n")
    if result.message:
        print(f"  {result.message}", file=sys.stderr)
    return 0
