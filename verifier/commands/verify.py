"""Decide a VNN-LIB property for an ONNX network: sat (counterexample), unsat (proof), unknown or timeout.

`unsat` means the property holds: no input in the property's box reaches its unsafe outputs (the VNN-LIB
file describes the unsafe set), and a sound bound proves it. `sat` means a counterexample exists: it was
re-run through onnxruntime on the original file and checked against the property. `unknown`: the search
ended without an answer; `timeout`: the time limit came first. `unknown` and `timeout` carry the best
global lower bound on the property's margin (above 0 would be a proof) and the number of open domains.
Every `unsat` says on stderr what its proof rests on (`proof: float-sound`: it holds in exact arithmetic for
the network as stored; or the engine's arithmetic with tolerance margins, and why): float soundness is on by
default where it costs little (networks of affine maps and ReLUs, or searched in float64 anyway),
--float-sound makes it strict everywhere, --no-float-sound turns it off.

--timeout T is wall-clock time counted from the start of the process (interpreter start-up, imports and
loading included, as VNN-COMP measures it): the answer and the --results file are out by T. Choose T by
what the answer is worth to you: easy properties are decided in well under a second, hard ones may need
minutes, and a longer timeout never changes an answer once given. --results writes the VNN-COMP result
file: the verdict on the first line, then after `sat` the witness as ((X_0 v) ... (Y_0 v)).

Instead of a VNN-LIB file, a classification-robustness property can be given directly: --center X.npy
--label L --eps E [--norm linf|l2]. An L2 ball is verified through the box enclosing it (a proof on the box is
a proof on the ball; a counterexample counts only inside the ball). --smoothing-sigma S is used only for an
L2 ball whose deterministic bounds are out of reach (an operator the bound engine does not handle, or a
network too large for --memory-budget-gib): the Gaussian-smoothed classifier is then certified instead (Cohen
et al. 2019), a probabilistic statement about the smoothed classifier, reported with the verdict `unknown` and
never as `unsat`; in every other case it is ignored.

--workers N spreads the branch and bound of one instance over N local worker processes, --scheduler
tcp://HOST:PORT over an existing Dask cluster (both need the extra: pip install "verifier[distributed]").

Exit codes: 0 on any verdict (read it from the output), 2 on bad input (unreadable model or property, an
invalid option, an unwritable --results file: the verdict is printed first), 130 on Ctrl-C.

Examples:
  verifier verify models/acasxu_like.onnx models/acasxu_like_prop_1.vnnlib --timeout 60
  verifier verify net.onnx prop.vnnlib --results out.txt --json
  verifier verify models/digits_mlp.onnx --center models/digits_mlp_img0.npy --label 2 --eps 0.05
  verifier verify query.vnnlib --network N=net.onnx --timeout 60     (VNN-LIB 2.0, the standard's form)
  verifier verify models/acasxu_like.onnx models/acasxu_like_prop_1.vnnlib --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

from verifier.commands.options import (
    add_device_argument,
    gib_to_bytes,
    load_array,
    nonnegative_number,
    positive_number,
)
from verifier.errors import VerifierError
from verifier.limits import process_started_at

#: seconds before --timeout at which a run still computing is answered `timeout` and the process ends
HARD_MARGIN = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("property", nargs="?", help="VNN-LIB property file (the unsafe region; plain or .gz)")
    parser.add_argument("--timeout", type=positive_number, default=300.0,
                        help="wall-clock budget in seconds from the start of the process (default 300)")
    parser.add_argument("--results", metavar="FILE", help="write the VNN-COMP result file here")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (status, message, lower_bound, open_domains, stats, "
                        "counterexample, time_s: the command's own time, process_s: since the process started); "
                        "strict JSON: a bound that is not finite is null")
    parser.add_argument("--method", choices=["auto", "input-split", "relu-split", "milp", "bounds"], default="auto",
                        help="search method (default auto: chosen from the network and property)")
    parser.add_argument("--no-attack", action="store_true", help="skip the falsification phase")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks (default 0)")
    sound = parser.add_mutually_exclusive_group()
    sound.add_argument("--float-sound", dest="float_sound", action="store_const", const=True, default="auto",
                       help="every unsat rigorous in exact arithmetic: each refutation by a float64 bound past a "
                       "rigorous bound on its rounding error, else unknown (default: so wherever that costs "
                       "little, i.e. networks of affine maps and ReLUs, accepting the LP/MILP's refutations to "
                       "their tolerances; the answer says what its proof rests on)")
    sound.add_argument("--no-float-sound", dest="float_sound", action="store_const", const=False,
                       help="prove in the engine's type with tolerance margins only")
    parser.add_argument("--cuts", action="store_true", help="ReLU splitting learns cuts from refuted domains")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="print the phase, domains done and open, the global lower bound, elapsed and remaining "
                        "time about once a second on stderr (default: when stderr is a terminal)")
    parser.add_argument("--load-limit-gib", type=positive_number, default=None,
                        help="refuse models and properties whose tensors or folded constants need more memory "
                        "than this (default: a quarter of the available memory)")
    add_device_argument(parser)
    standard = parser.add_argument_group("VNN-LIB standard form: verify QUERY.vnnlib --network NAME=MODEL.onnx ...")
    standard.add_argument("--network", action="append", metavar="NAME=MODEL", help="the model of a declared network")
    standard.add_argument("--serialise-assignments", metavar="DIR", help="after sat, write DIR/VARIABLE.pb")
    spread = parser.add_mutually_exclusive_group()
    spread.add_argument("--workers", type=int, default=None, metavar="N",
                        help="search over N local worker processes (Dask; pip install \"verifier[distributed]\")")
    spread.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="search over the workers of this Dask cluster (pip install \"verifier[distributed]\")")
    robust = parser.add_argument_group("robustness property (instead of a VNN-LIB file)")
    robust.add_argument("--center", metavar="X.npy", help="the input whose classification must be robust")
    robust.add_argument("--label", type=int, help="its class")
    robust.add_argument("--eps", type=nonnegative_number, help="radius of the ball around --center")
    robust.add_argument("--norm", choices=["linf", "l2"], default="linf", help="the ball's norm (default linf)")
    robust.add_argument("--smoothing-sigma", type=positive_number, default=None,
                        help="noise level for the randomized-smoothing fallback (L2 only, and only when bounds are "
                             "out of reach; the model must have been trained with Gaussian noise of this sigma)")
    robust.add_argument("--memory-budget-gib", type=positive_number, default=4.0,
                        help="bound computations expected to need more fall back to smoothing (default 4)")


class Answer:
    """Writes the answer once: the run's own, or ``timeout`` from the watchdog thread at the hard deadline,
    whichever comes first (the other is dropped). The watchdog uses the standard library only, so it can answer
    while the main thread is still importing torch."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.started: float | None = None   # when the command's own work began (after the library imports)
        self.lock = threading.Lock()
        self.given = False
        self.monitor = None   # the SearchMonitor whose stats the watchdog reports
        self.link = None      # the pipe to the supervising parent process (verifier.supervisor)

    def give(self, result) -> None:
        """Print ``result`` and write the result file; raises :class:`VerifierError` naming --results if that
        file cannot be written (after the verdict is printed)."""
        with self.lock:
            if self.given:
                return
            self.given = True
            if self.link is not None:
                self.link.answering()
            witness = result.counterexample
            failure = self._write_results(result.status, witness)
            self._print(result)
        if failure:
            raise VerifierError(f"--results {self.args.results}: cannot write the result file: {failure}")

    def watch(self, end: float) -> None:
        """Start the watchdog: at ``end`` (monotonic) a run still computing is answered ``timeout`` and the
        process ends (only for a command line that is its own process)."""

        def expire() -> None:
            delay = end - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self.lock:
                if self.given:
                    return
                self.given = True
                self.answer_timeout(dict(self.monitor.stats) if self.monitor is not None else {})
                os._exit(0)

        threading.Thread(target=expire, name="verifier-deadline", daemon=True).start()

    def _write_results(self, status: str, witness) -> str | None:
        if not self.args.results:
            return None
        if status == "sat":
            from verifier.spec.witness import format_result

            text = format_result(status, witness.x if witness else None, witness.y if witness else None)
        else:
            text = status + "\n"
        try:
            with open(self.args.results, "w") as handle:
                handle.write(text)
        except OSError as error:
            return error.strerror or str(error)
        return None

    def _elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def _print(self, result) -> None:
        try:
            if self.args.json:
                payload = result.to_dict()
                payload["time_s"] = self._elapsed()
                payload["process_s"] = time.monotonic() - process_started_at()
                print(json.dumps(payload, allow_nan=False), flush=True)
            else:
                print(result.status, flush=True)
                _details(result, self._elapsed())
        except (OSError, ValueError):  # stdout closed: the result file is what is left
            pass

    def answer_timeout(self, stats: dict) -> None:
        """Write the ``timeout`` answer (result file and stdout) with what ``stats`` knows (standard library
        only: the supervising parent and the watchdog thread call it)."""
        self._write_results("timeout", None)
        message = "the time limit was reached before an answer"
        bound, open_domains = stats.get("lower_bound"), stats.get("open_domains")
        bound = bound if isinstance(bound, (int, float)) and math.isfinite(bound) else None
        try:
            if self.args.json:
                payload = {"status": "timeout", "message": message, "lower_bound": bound,
                           "open_domains": open_domains if isinstance(open_domains, int) else None,
                           "stats": {"domains": stats.get("domains")} if isinstance(stats.get("domains"), int)
                           else {}, "time_s": self._elapsed() if self.started is not None else None,
                           "process_s": time.monotonic() - process_started_at()}
                print(json.dumps(payload, allow_nan=False), flush=True)
            else:
                print("timeout", flush=True)
                print(f"  {message}", file=sys.stderr, flush=True)
                if bound is not None:
                    print(f"  global lower bound {bound:.6g} (above 0 would prove it), {open_domains or 0} open "
                          "domains", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


def _details(result, elapsed: float) -> None:
    if result.message:
        print(f"  {result.message}", file=sys.stderr)
    if result.certificate is not None:
        print(f"  smoothing certificate: {result.certificate.status} (radius {result.certificate.radius:.4g}, "
              f"confidence {result.certificate.confidence:g})")
    if result.status in ("unknown", "timeout") and (result.lower_bound is not None or result.open_domains):
        bound = "none" if result.lower_bound is None else f"{result.lower_bound:.6g}"
        print(f"  global lower bound {bound} (above 0 would prove it), {result.open_domains or 0} open domains",
              file=sys.stderr)
    if result.status == "unsat" and result.stats.get("proof"):
        print(f"  proof: {result.stats['proof']}", file=sys.stderr)
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in result.stats.get("phases", {}).items())
    domains = result.stats.get("domains")
    print(f"  {elapsed:.2f}s ({phases})" + (f", {domains} domains" if domains else ""), file=sys.stderr, flush=True)


def warm_up() -> None:
    """Load what every verification needs, so that none of it starts late: torch, onnx and the verification
    modules, the native kernels (registering them costs 0.2 s at the first bound otherwise), ONNX's operator
    schemas (0.1 s at the first shape inference) and what ``torch.broadcast_shapes`` imports on its first call
    (sympy, 0.2 s). Computes nothing, starts no thread: the bench's fork server calls it before forking."""
    import onnx
    import torch

    import verifier.api  # noqa: F401  (the loaders)
    import verifier.bounds.crown  # noqa: F401
    import verifier.complete  # noqa: F401
    import verifier.spec.vnnlib  # noqa: F401
    from verifier.kernels.library import native_available

    native_available()
    torch.broadcast_shapes((1,), (1,))
    tiny = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "warm",
                                  [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                  [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.shape_inference.infer_shapes(onnx.helper.make_model(tiny), data_prop=True)


def run(args: argparse.Namespace) -> int:
    from verifier.commands import standard

    if standard.is_standard(args):  # VNN-LIB 2.0 / the standard command line: verifier.commands.standard
        return standard.run(args)
    deadline = (getattr(args, "started_at", None) or process_started_at()) + args.timeout
    answer = Answer(args)
    if getattr(args, "standalone", False):  # a process of its own: a supervisor enforces the deadline
        from verifier.supervisor import supervise

        answer.link = supervise(deadline - HARD_MARGIN, answer.answer_timeout)
        if answer.link is None:  # no fork here: a watchdog thread does what it can
            answer.watch(deadline - HARD_MARGIN)
    if args.property is not None and args.center is not None:
        raise VerifierError("give either a VNN-LIB property or --center/--label/--eps, not both")
    if args.property is None and (args.center is None or args.label is None or args.eps is None):
        raise VerifierError("give a VNN-LIB property file, or --center X.npy --label L --eps E")
    # the libraries every run needs are loaded first, as part of the start-up: the command's own clock
    # (time_s) starts after them, the deadline counts them
    warm_up()
    from verifier.complete import VerifyOptions, verify
    from verifier.progress import SearchMonitor

    answer.started = time.monotonic()
    answer.monitor = SearchMonitor(enabled=sys.stderr.isatty() if args.progress is None else args.progress,
                                   on_update=answer.link.report if answer.link is not None else None)
    limit = gib_to_bytes(args.load_limit_gib)
    options = VerifyOptions(method=args.method, attack=not args.no_attack, seed=args.seed, memory_limit=limit,
                            monitor=answer.monitor, float_sound=args.float_sound, cuts=args.cuts)
    remaining = max(0.0, deadline - HARD_MARGIN - time.monotonic())
    if args.property is not None:
        result = verify(args.model, Path(args.property), timeout=remaining, options=options, device=args.device,
                        workers=args.workers, scheduler=args.scheduler)
    else:
        if args.workers is not None or args.scheduler is not None:
            raise VerifierError("--workers and --scheduler apply to VNN-LIB properties (give the property as a file)")
        from verifier.complete import verify_robustness

        center = load_array(args.center, "--center", limit)
        remaining = max(0.0, deadline - HARD_MARGIN - time.monotonic())
        result = verify_robustness(args.model, center, args.label, args.eps, norm=args.norm,
                                   timeout=remaining, options=options, smoothing_sigma=args.smoothing_sigma,
                                   memory_budget=int(args.memory_budget_gib * 2**30), device=args.device)
    answer.give(result)
    return 0
