"""The ``verifier`` command line.

Each subcommand lives in ``verifier.commands.<name>`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; only the invoked one is imported, so start-up stays light.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

#: subcommand -> one-line description (the module is imported only when the command runs)
COMMANDS = {
    "bounds": "sound output bounds of an ONNX network over an input box (IBP or CROWN)",
    "verify": "decide a VNN-LIB property: sat (counterexample) / unsat (proof) / unknown / timeout",
    "bench": "run a VNN-COMP instances.csv: resumable, parallel, scored, with plots",
    "smooth": "certify robustness by randomized smoothing (Cohen et al. 2019)",
    "supports": "report supported ONNX operators, element types, VNN-LIB versions and theories",
}
#: the full name printed by ``verifier --name`` (VNN-LIB standard command line)
NAME = "verifier: sound neural-network verification (IBP, CROWN, alpha/beta-CROWN branch and bound)"


def _available() -> dict[str, str]:
    found = {}
    for name, help_text in COMMANDS.items():
        if importlib.util.find_spec(f"verifier.commands.{name}") is not None:
            found[name] = help_text
    return found


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``verifier`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--name"], ["--version"]):  # the VNN-LIB standard's global options
        print(NAME if argv[0] == "--name" else _version())
        return 0
    commands = _available()
    top = argparse.ArgumentParser(
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
        return 2
    name = argv[0]
    module = importlib.import_module(f"verifier.commands.{name}")
    parser = argparse.ArgumentParser(prog=f"verifier {name}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for PyTorch (default: $VERIFIER_THREADS or 1, the fastest on small machines)")
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    from verifier.errors import VerifierError
    from verifier.threads import set_threads

    try:
        set_threads(args.threads)
        return int(module.run(args) or 0)
    except VerifierError as error:
        print(f"verifier {name}: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as error:
        print(f"verifier {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"verifier {name}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    """The package version, without importing the package (which imports torch)."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    return match.group(1) if match else "unknown"


if __name__ == "__main__":
    sys.exit(main())
