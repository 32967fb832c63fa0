"""Exact MILP and float soundness, measured side by side in one run (single thread).

    python benchmarks/exact.py sat                 # 3-SAT networks, 20-60 variables: verdict, time, who decided
    python benchmarks/exact.py float-sound acasxu mnist_fc --limit 4 --timeout 60
                                                   # solve time off / default (auto) / --float-sound

``sat``: the instance set of ``tests/satnet.py`` (per size a planted satisfiable formula and a random one at 6
clauses per variable), each verified with the default strategy (60 s) and checked against DPLL.
``float-sound``: ``--limit`` rows spread over each shared family (as ``benchmarks/run_family.py`` picks them),
each verified in this process once per float-soundness mode (``--modes``: off, the default auto, strict), with
the time ratios to the first mode, any answer change and how many ``unsat`` rest on float-sound proofs;
``--only NET/PROP,...`` names the instances instead.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, SHARED


def run_sat(timeout: float) -> None:
    from tests import satnet
    from verifier.complete import verify

    folder = Path(tempfile.mkdtemp())
    print(f"{'instance':<18} {'truth':<6} {'ours':<8} {'time_s':>7} {'unstable':>8}  decided by")
    wrong = 0
    for name, formula, n, satisfiable in satnet.instance_set():
        model, prop = satnet.write_instance(folder, name, formula, n)
        start = time.perf_counter()
        result = verify(str(model), str(prop), timeout=timeout)
        elapsed = time.perf_counter() - start
        truth = "sat" if satisfiable else "unsat"
        wrong += result.status in ("sat", "unsat") and result.status != truth
        print(f"{name:<18} {truth:<6} {result.status:<8} {elapsed:>7.1f} {result.stats.get('root_unstable', '-')!s:>8}"
              f"  {result.stats.get('decided_by', 'search')}", flush=True)
    print(f"incorrect: {wrong}")


def family_rows(family: str, limit: int, only: list[str] | None = None) -> list[tuple[Path, Path]]:
    with open(SHARED / family / "instances.csv") as handle:
        rows = [r for r in csv.reader(handle) if r and r[0].lower() != "onnx"]
    if only:
        rows = [r for r in rows if any(f"{Path(r[0]).stem}/{Path(r[1]).stem}" == name for name in only)]
    step = max(1, math.ceil(len(rows) / limit))
    return [(SHARED / family / r[0], SHARED / family / r[1]) for r in rows[::step][:limit]]


MODES = {"off": False, "auto": "auto", "strict": True}


def run_float_sound(families: list[str], limit: int, timeout: float, only: list[str] | None = None,
                    modes: tuple[str, ...] = ("off", "auto", "strict")) -> None:
    """Each instance verified once per float-soundness mode, in this process, one after the other: ``off``
    (``float_sound=False``), ``auto`` (the default) and ``strict`` (``--float-sound``); times, the ratio of
    each mode to the first, answer changes against the first, and how many ``unsat`` of the others rest on a
    float-sound proof (``stats["proof"]``)."""
    from verifier.complete import VerifyOptions, verify

    # warm-up: the first verification of a process pays for lazy imports and onnxruntime's start
    warm = (str(ROOT / "models" / "digits_mlp.onnx"), str(ROOT / "models" / "digits_mlp_img0_eps0.02.vnnlib"))
    for mode in modes:
        verify(*warm, timeout=30, options=VerifyOptions(float_sound=MODES[mode]))
    print(f"{'family':<10} {'instance':<48} " + " ".join(f"{mode:>17}" for mode in modes)
          + " " + " ".join(f"{mode + '/' + modes[0]:>11}" for mode in modes[1:]))
    totals = dict.fromkeys(modes, 0.0)
    changes = dict.fromkeys(modes, 0)
    sound_proofs = dict.fromkeys(modes, 0)
    proofs = 0
    for family in families:
        for model, prop in family_rows(family, limit, only):
            outcome = {}
            for mode in modes:
                start = time.perf_counter()
                result = verify(str(model), str(prop), timeout=timeout, options=VerifyOptions(float_sound=MODES[mode]))
                outcome[mode] = (result.status, time.perf_counter() - start)
                totals[mode] += outcome[mode][1]
                changes[mode] += result.status != outcome[modes[0]][0]
                sound_proofs[mode] += result.status == "unsat" and result.stats.get("proof") == "float-sound"
            proofs += outcome[modes[0]][0] == "unsat"
            label = f"{model.stem[:24]}/{prop.stem[:22]}"
            t0 = outcome[modes[0]][1]
            print(f"{family:<10} {label:<48} " + " ".join(f"{status:>9} {t:>6.1f}s" for status, t in outcome.values())
                  + " " + " ".join(f"{outcome[mode][1] / max(t0, 1e-9):>11.2f}" for mode in modes[1:]), flush=True)
    base = totals[modes[0]]
    print(f"total ({proofs} unsat by {modes[0]}): " + ", ".join(
        f"{mode} {totals[mode]:.1f} s ({100 * (totals[mode] / max(base, 1e-9) - 1):+.0f} %, {changes[mode]} answer "
        f"changes, {sound_proofs[mode]} float-sound unsat)" for mode in modes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sat", "float-sound"])
    parser.add_argument("families", nargs="*", default=["acasxu", "mnist_fc"])
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", help="comma-separated NETWORK/PROPERTY stems to run instead of a spread sample")
    parser.add_argument("--modes", default="off,auto,strict",
                        help="float-soundness modes to compare, the first is the reference (default off,auto,strict)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what == "sat":
        run_sat(args.timeout)
    else:
        modes = tuple(args.modes.split(","))
        if not modes or any(mode not in MODES for mode in modes):
            parser.error(f"--modes takes a comma-separated subset of {', '.join(MODES)}")
        run_float_sound(args.families, args.limit, args.timeout, args.only.split(",") if args.only else None, modes)


if __name__ == "__main__":
    main()
