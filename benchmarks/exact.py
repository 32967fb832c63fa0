"""Exact MILP and float soundness, measured side by side in one run (single thread).

    python benchmarks/exact.py sat                 # 3-SAT networks, 20-60 variables: verdict, time, who decided
    python benchmarks/exact.py float-sound acasxu mnist_fc --limit 4 --timeout 60
                                                   # solve time with and without --float-sound, same instances

``sat``: the instance set of ``tests/satnet.py`` (per size a planted satisfiable formula and a random one at 6
clauses per variable), each verified with the default strategy (60 s) and checked against DPLL.
``float-sound``: ``--limit`` rows spread over each shared family (as ``benchmarks/run_family.py`` picks them),
each verified twice in this process (default, then float-sound), with the time ratio and any answer change;
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


def run_float_sound(families: list[str], limit: int, timeout: float, only: list[str] | None = None) -> None:
    from verifier.complete import VerifyOptions, verify

    # warm-up: the first verification of a process pays for lazy imports and onnxruntime's start
    warm = (str(ROOT / "models" / "digits_mlp.onnx"), str(ROOT / "models" / "digits_mlp_img0_eps0.02.vnnlib"))
    verify(*warm, timeout=30)
    verify(*warm, timeout=30, options=VerifyOptions(float_sound=True))
    print(f"{'family':<10} {'instance':<48} {'default':>16} {'float-sound':>18} {'ratio':>6}")
    totals = [0.0, 0.0]
    changes = 0
    for family in families:
        for model, prop in family_rows(family, limit, only):
            outcome = []
            for sound in (False, True):
                start = time.perf_counter()
                result = verify(str(model), str(prop), timeout=timeout, options=VerifyOptions(float_sound=sound))
                outcome.append((result.status, time.perf_counter() - start))
            (plain, t0), (sound, t1) = outcome
            totals[0] += t0
            totals[1] += t1
            changes += plain != sound
            label = f"{model.stem[:24]}/{prop.stem[:22]}"
            print(f"{family:<10} {label:<48} {plain:>8} {t0:>6.1f}s {sound:>10} {t1:>6.1f}s {t1 / max(t0, 1e-9):>6.2f}",
                  flush=True)
    print(f"total: default {totals[0]:.1f} s, float-sound {totals[1]:.1f} s "
          f"(+{100 * (totals[1] / max(totals[0], 1e-9) - 1):.0f} %), answer changes: {changes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sat", "float-sound"])
    parser.add_argument("families", nargs="*", default=["acasxu", "mnist_fc"])
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", help="comma-separated NETWORK/PROPERTY stems to run instead of a spread sample")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.what == "sat":
        run_sat(args.timeout)
    else:
        run_float_sound(args.families, args.limit, args.timeout, args.only.split(",") if args.only else None)


if __name__ == "__main__":
    main()
