"""Run public VNN-COMP families with `verifier bench` and print their scores next to the competition's.

    python benchmarks/run_family.py test
    python benchmarks/run_family.py acasxu --limit 10 --timeout-scale 0.25
    python benchmarks/run_family.py acasxu mnist_fc --limit 5 --jobs 2
    python benchmarks/run_family.py all --limit 3

Each family (``../shared/benchmarks/<family>/``; missing ones are skipped) is run by one ``verifier bench``
process into ``bench_out/<family>/`` (results.csv, summary.md, cactus.png); ``--limit K`` takes K rows spread
evenly over the family (every n/K-th row) rather than the first K, which in most families share one network.
``--resume`` continues an interrupted run. At the end, per family: the score table and how much of our
runtime is start-up (each instance's wall time less the verifier's own clock; in process isolation also an
empty ``python -c 'import verifier'``, measured once per run) and the run's wall time.
``--isolation process|fork`` compares the two ways instances are isolated (``verifier bench --help``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from common import ROOT, SHARED


def family_rows(family: str) -> int:
    with open(SHARED / family / "instances.csv") as handle:
        return sum(1 for line in handle if line.strip() and not line.lower().startswith("onnx,vnnlib"))


def run_family(family: str, args: argparse.Namespace) -> dict | None:
    instances = SHARED / family / "instances.csv"
    if not instances.is_file():
        print(f"{family}: skipped, no {instances}", file=sys.stderr)
        return None
    out = Path(args.out) / family
    command = [sys.executable, "-m", "verifier", "bench", str(instances), "--out", str(out), "--jobs",
               str(args.jobs), "--timeout-scale", str(args.timeout_scale), "--progress"]
    if args.limit:
        step = max(1, math.ceil(family_rows(family) / args.limit))
        command += ["--rows", f"::{step}", "--limit", str(args.limit)]
    if args.resume:
        command.append("--resume")
    elif args.overwrite:
        command.append("--overwrite")
    if args.command:
        command += ["--command", args.command]
    if args.isolation:
        command += ["--isolation", args.isolation]
    print(f"== {family}: {' '.join(command[1:])}", flush=True)
    finished = subprocess.run(command, cwd=ROOT)
    if finished.returncode not in (0, 1):
        print(f"{family}: verifier bench failed with exit code {finished.returncode}", file=sys.stderr)
        return None
    return json.loads((out / "summary.json").read_text())


def startup_share(summary: dict, out: Path) -> str:
    """One line: the measured start-up and its share of our total runtime on the family."""
    import csv

    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    wall = sum(float(r["runtime_s"] or 0) for r in rows)
    measured_rows = [float(r["startup_s"]) for r in rows if r["startup_s"]]  # errors report no own time
    startup = sum(measured_rows)
    run = summary["run"]
    measured = run.get("startup_s")
    measured_text = f"{measured:.3f} s" if measured is not None else "not measured"
    how = ("fork of a warm server, median" if run.get("isolation") == "fork"
           else "process, empty 'import verifier'")
    share = f"{100 * startup / wall:.0f}%" if wall else "-"
    return (f"start-up ({how}): {measured_text}; per instance (wall - verifier's own time) "
            f"{startup / max(len(measured_rows), 1):.3f} s on average, {share} of our {wall:.1f} s total "
            f"runtime; wall time of the run {run.get('wall_s', 0):.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("families", nargs="+", help="family names under ../shared/benchmarks, or 'all'")
    parser.add_argument("--limit", type=int, help="run K rows per family, spread evenly over it")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--timeout-scale", type=float, default=1.0)
    parser.add_argument("--out", default=str(ROOT / "bench_out"), help="parent folder of the runs")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier runs of these families")
    parser.add_argument("--command", help="verifier command passed to verifier bench --command")
    parser.add_argument("--isolation", choices=["process", "fork"],
                        help="passed to verifier bench --isolation (default: its own, fork where possible)")
    args = parser.parse_args()
    families = args.families
    if families == ["all"]:
        families = sorted(p.parent.name for p in SHARED.glob("*/instances.csv"))
        if not families:
            print(f"no families under {SHARED}", file=sys.stderr)
            return 0
    for family in families:
        summary = run_family(family, args)
        if summary is not None:
            print(startup_share(summary, Path(args.out) / family), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
