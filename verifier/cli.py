"""The ``verifier`` command line.

Each subcommand lives in ``verifier.commands.<name>`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; only the invoked one is imported, so start-up stays light (``--help`` imports no torch).

Whatever the input, the command line answers in one line: an error in the input is printed as
``verifier COMMAND: error: ...`` with exit code 2 (never a traceback; ``VERIFIER_DEBUG=1`` shows one for
errors that are not the input's), Ctrl-C as ``verifier COMMAND: interrupted`` with exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time

from verifier.limits import process_started_at

#: subcommand -> one-line description (the module is imported only when the command runs)
COMMANDS = {
    "bounds": "sound output bounds of an ONNX network over an input box (IBP or CROWN)",
    "verify": "decide a VNN-LIB property: sat (counterexample) / unsat (proof) / unknown / timeout",
    "bench": "run a VNN-COMP instances.csv: resumable, parallel, scored, with plots",
    "smooth": "certify robustness by randomized smoothing (Cohen et al. 2019)",
    "certify": "certified accuracy of a model over a dataset, per epsilon and certification method",
    "supports": "report supported ONNX operators, element types, VNN-LIB versions and theories",
}
#: the full name printed by ``verifier --name`` (VNN-LIB standard command line)
NAME = "verifier: sound neural-network verification (IBP, CROWN, alpha/beta-CROWN branch and bound)"

#: exit codes: bad input (and any error), interrupted by Ctrl-C
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``PROG: error: MESSAGE (see PROG --help)``), exit 2."""

    def error(self, message: str):
        from verifier.errors import shorten

        self.exit(EXIT_ERROR, f"{self.prog}: error: {shorten(message, 300)} (see '{self.prog} --help')\n")


def _available() -> dict[str, str]:
    found = {}
    for name, help_text in COMMANDS.items():
        if importlib.util.find_spec(f"verifier.commands.{name}") is not None:
            found[name] = help_text
    return found


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``verifier`` console script; returns the process exit code.

    Called without ``argv`` it is the process itself (console script, ``python -m verifier``): deadlines
    are then enforced by ending the process (see :mod:`verifier.commands.verify`); with ``argv`` (tests,
    scripts) it never exits the interpreter."""
    process_started_at()  # read the start time before anything slow
    standalone = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in COMMANDS else None
    prog = f"verifier {name}" if name else "verifier"
    restore = _catch_interrupts() if threading.current_thread() is threading.main_thread() else None
    try:
        code = _main(argv, name, standalone, time.monotonic())
        if standalone and name == "verify":  # the answer is out: end without the interpreter's slow teardown
            _say_nothing_and_exit(code)
        return code
    except SystemExit as leaving:  # argparse's --help and errors
        return leaving.code if isinstance(leaving.code, int) else (0 if leaving.code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away: nothing left to tell
        _quiet_stdout()
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the one-line promise holds for anything left
        if os.environ.get("VERIFIER_DEBUG"):
            raise
        from verifier.errors import shorten

        what = "out of memory" if isinstance(error, MemoryError) else f"{type(error).__name__}: {shorten(error, 200)}"
        _say(f"{prog}: error: {what} (an internal error; VERIFIER_DEBUG=1 shows where)")
        return EXIT_ERROR
    finally:
        if restore is not None:
            restore()


def _main(argv: list[str], name: str | None, standalone: bool, started: float) -> int:
    if argv[:1] in (["--name"], ["--version"]):  # the VNN-LIB standard's global options
        print(NAME if argv[0] == "--name" else _version())
        return 0
    commands = _available()
    top = OneLineParser(
        prog="verifier",
        description="Neural-network verification engine: prove properties of ONNX networks or find counterexamples.",
        epilog="Commands:\n" + "\n".join(f"  {n:8s} {h}" for n, h in commands.items())
        + "\n\nRun 'verifier COMMAND --help' for the options of a command; 'verifier --name' and 'verifier "
        "--version' print the name and version.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("command", choices=sorted(commands), metavar="COMMAND", help="one of: " + ", ".join(commands))
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        top.parse_args(argv[:1] or ["--help"])
        return EXIT_ERROR
    from verifier.commands.options import positive_int
    from verifier.errors import VerifierError

    module = importlib.import_module(f"verifier.commands.{name}")
    parser = OneLineParser(prog=f"verifier {name}", description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for PyTorch (default: $VERIFIER_THREADS or 1, the fastest on small machines)")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    args.standalone = standalone
    # deadlines count from the process start; called in-process (tests, scripts), from this call
    args.started_at = process_started_at() if standalone else started
    try:
        if standalone:  # applied when the first network loads: torch is not imported before it is needed
            if args.threads is not None:
                os.environ["VERIFIER_THREADS"] = str(args.threads)
        else:
            from verifier.threads import set_threads

            set_threads(args.threads)
        return int(module.run(args) or 0)
    except VerifierError as error:
        _say(f"verifier {name}: error: {_one_line(error)}")
        return EXIT_ERROR
    except MemoryError:
        _say(f"verifier {name}: error: out of memory (--load-limit-gib lowers what a model may take)")
        return EXIT_ERROR
    except RecursionError:
        _say(f"verifier {name}: error: the input is nested too deeply")
        return EXIT_ERROR


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _say(line: str) -> None:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _say_nothing_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _quiet_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _catch_interrupts():
    """Ctrl-C raises KeyboardInterrupt once (reported in one line by :func:`main`); another one more than a
    second later, while that is being handled, ends the process at once with exit code 130. Returns the
    function restoring the handler."""
    pressed: list[float] = []

    def interrupted(signum, frame):
        if pressed:
            if time.monotonic() - pressed[0] < 1.0:  # the same Ctrl-C, passed on by a supervising parent too
                return
            os._exit(EXIT_INTERRUPTED)
        pressed.append(time.monotonic())
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    return lambda: signal.signal(signal.SIGINT, previous)


def _version() -> str:
    """The package version, without importing the package (which imports torch)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    return match.group(1) if match else "unknown"


if __name__ == "__main__":
    sys.exit(main())
