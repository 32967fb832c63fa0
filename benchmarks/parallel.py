"""One hard instance over 1, 2, N local worker processes, and benchmark runs on a Dask cluster, side by side.

    python benchmarks/parallel.py                         # everything below (about 15 min on 2 cores)
    python benchmarks/parallel.py --skip-bench --workers 1,2 --repeats 2
    python benchmarks/parallel.py --only acas --timeout 200

Part 1, for each instance (ACAS Xu 3_3 prop 2 and oval21 cifar_base_kw img 3568, which take 40-60 s on one
core; mnist_fc 256x4 eps 0.05 props 11 and 3 and two shorter oval21 instances, 2-15 s; from
``../shared/benchmarks``, skipped when absent), one fresh ``verifier verify --json`` process per
configuration, one after the other and interleaved: a single process (the engine as it is), ``--workers 1``
(coordinator and one worker process: the distribution's own overhead) and ``--workers 2`` (and N where the
machine has more cores; ``--workers`` picks). Printed: verdict, time to verdict (the verifier's own clock:
loading, attack, root bound, cluster start-up and search), sub-domains bounded and sub-domains per second of
search (domains / search phase), the seconds of the root's bound (ReLU splitting's full alpha-CROWN, serial
in every configuration) and the sub-domains per second after it (domains / (search phase - root): the rate
of branch and bound proper), the seconds until the workers were ready, the tasks sent, the workers'
utilisation while subtrees were out (busy time / threads x time), the CPU seconds of the whole process tree
(the verify process and what it reaped, plus the workers' own CPU reports: forkserver-started workers are
not its children; a worker that never got a task does not report, and the forkserver's one import of torch,
about 2 s, is not counted),
and the ratios of 2 workers (N) to 1 worker and to the single process. Then the same with ``--scheduler`` on a
*standing* cluster of 1 and of 2 (N) workers (``dask scheduler`` and ``dask worker`` processes started and warmed
before the run, as a cluster that serves many runs is, with the README's quiet worker settings; ``--no-standing``
skips them): time to verdict without the workers' start-up, and the ratio of 2 standing workers to 1.

After each instance, the machine's own ceiling: the same plain single-process run N times at once, against
once alone (``N x alone / slowest``): on a machine whose vCPUs share physical cores that is well below N,
and no split of the search can beat it.

Part 2: ``verifier bench`` on the ``test`` family and on ``--bench-limit`` ACAS Xu rows spread over the family
(``--timeout-scale`` on their timeouts), with ``--jobs 2`` and with ``--cluster local:2``: wall time of the
whole command (cluster start-up included), instances per minute, and whether every results.csv verdict is
the same.

All engine processes use 1 thread each (the engine's default). On a shared machine times are noisy: the
ratios measured side by side in one run are what to compare, and ``uptime``'s load is printed before and
after.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED

from tests.standing_cluster import StandingCluster
from verifier.distributed.cluster import quiet_worker_environ

INSTANCES = {
    "acas": ("acasxu", "onnx/ACASXU_run2a_3_3_batch_2000.onnx", "vnnlib/prop_2.vnnlib"),
    "mnist11": ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_11_0.05.vnnlib"),
    "mnist3": ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_3_0.05.vnnlib"),
    "oval6767": ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img6767-eps0.020000000000000004.vnnlib"),
    "oval876": ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img876-eps0.024836601307189544.vnnlib"),
    "oval3568": ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img3568-eps0.030457516339869282.vnnlib"),
}


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def verify(onnx: Path, vnnlib: Path, timeout: float, workers: int | str | None) -> dict:
    """One ``verifier verify --json`` process: plain (``workers`` None), with ``--workers N``, or, for ``"Nw"``,
    with ``--scheduler`` on a standing cluster of N workers started (and timed) outside the run."""
    command = [sys.executable, "-m", "verifier", "verify", str(onnx), str(vnnlib), "--json", "--timeout", str(timeout)]
    if not isinstance(workers, str):
        if workers:
            command += ["--workers", str(workers)]
        return _run_verify(command, timeout, workers)
    with tempfile.TemporaryDirectory(prefix="parallel-cluster-") as folder:
        try:
            # started as the README says: one thread per worker, Dask's profiler off and its ticks slower
            cluster = StandingCluster(int(workers[:-1]), Path(folder),
                                      env={"VERIFIER_THREADS": "1", **quiet_worker_environ()})
        except FileNotFoundError as error:
            raise SystemExit(str(error)) from None
        try:
            return _run_verify(command + ["--scheduler", cluster.address], timeout, workers)
        finally:
            cluster.close()


def _run_verify(command: list[str], timeout: float, workers: int | str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFIER_THREADS="1")
    started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 120)
    wall, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the process and of every process it started and reaped (its cluster's workers)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"status": "error", "message": (done.stderr.strip().splitlines() or ["?"])[-1], "wall_s": wall,
                "cpu_s": cpu}
    payload = json.loads(lines[-1])
    # local workers started by a forkserver, and a standing cluster's, are not this process's children: their own
    # reports count them
    forked = isinstance(workers, str) or (
        os.environ.get("VERIFIER_WORKER_START", "forkserver") == "forkserver" and workers)  # (verify's default)
    extra = (payload.get("stats", {}).get("distributed") or {}).get("worker_cpu_s", 0.0) if forked else 0.0
    payload["wall_s"], payload["cpu_s"] = wall, cpu + extra
    return payload


def verify_side_by_side(onnx: Path, vnnlib: Path, timeout: float, count: int) -> list[dict]:
    """``count`` plain single-process runs of the same instance at the same time (the machine's own ceiling)."""
    command = [sys.executable, "-m", "verifier", "verify", str(onnx), str(vnnlib), "--json", "--timeout", str(timeout)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFIER_THREADS="1")
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for _ in range(count)]
    payloads = []
    for run in runs:
        out, _ = run.communicate(timeout=timeout + 120)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        payloads.append(json.loads(lines[-1]) if lines else {"status": "error"})
    return payloads


def describe(payload: dict) -> dict:
    stats = payload.get("stats", {})
    phases = stats.get("phases", {})
    search = phases.get("search") or 0.0
    domains = stats.get("domains") or 0
    info = stats.get("distributed") or {}
    root = stats.get("root_s") or 0.0
    branching = search - root   # the search phase after the root's bound: branch and bound proper
    return {"status": payload.get("status"), "time": payload.get("time_s", payload["wall_s"]), "domains": domains,
            "rate": domains / search if search else 0.0, "root": root,
            "bab_rate": domains / branching if branching > 0 else 0.0, "ready": info.get("workers_ready_s"),
            "tasks": info.get("tasks"), "lost": info.get("lost"), "cpu": payload.get("cpu_s", 0.0),
            "use": info.get("utilisation")}


def _label(config: int | str | None) -> str:
    if config is None:
        return "1 process"
    if isinstance(config, str):
        return f"{config[:-1]} standing"
    return f"{config} worker" + ("s" if config > 1 else "")


def part_instances(args: argparse.Namespace, truth: dict) -> None:
    configs: list[int | str | None] = [None] + args.workers
    if args.standing:
        configs += [f"{w}w" for w in args.workers]
    names = [n for n in INSTANCES if not args.only or any(o in n for o in args.only.split(","))]
    print(f"== one instance over worker processes (timeout {args.timeout:g} s, {args.repeats} run(s) each, "
          f"load {load()})")
    header = f"{'instance':10s} {'config':10s} {'verdict':8s} {'truth':7s} {'time s':>8s} {'domains':>8s} " \
             f"{'dom/s':>8s} {'root s':>6s} {'bab/s':>7s} {'ready s':>8s} {'tasks':>6s} {'use':>5s} {'cpu s':>7s}"
    print(header)
    for name in names:
        family, onnx, vnnlib = INSTANCES[name]
        onnx, vnnlib = SHARED / family / onnx, SHARED / family / vnnlib
        if not onnx.is_file():
            print(f"{name:10s} skipped: {onnx} not found")
            continue
        expected = truth.get((family, onnx.name, vnnlib.name), "?")
        runs: dict[int | str | None, list[dict]] = {c: [] for c in configs}
        for _ in range(args.repeats):
            for config in configs:
                runs[config].append(describe(verify(onnx, vnnlib, args.timeout, config)))
        best = {}
        for config in configs:
            label = _label(config)
            for row in runs[config]:
                print(f"{name:10s} {label:10s} {row['status']:8s} {expected:7s} {row['time']:8.2f} {row['domains']:8d} "
                      f"{row['rate']:8.1f} {row['root']:6.2f} {row['bab_rate']:7.1f} {_num(row['ready']):>8s} "
                      f"{_num(row['tasks']):>6s} {_num(row['use']):>5s} {row['cpu']:7.1f}")
            solved = [r for r in runs[config] if r["status"] in ("sat", "unsat")]
            best[config] = min(solved, key=lambda r: r["time"]) if solved else None
            wrong = [r for r in runs[config] if r["status"] in ("sat", "unsat") and expected in ("sat", "unsat")
                     and r["status"] != expected]
            if wrong:
                print(f"!!! {name} {label}: {len(wrong)} INCORRECT verdict(s) against the ground truth ({expected})")
        one, base = best.get(1), best.get(None)
        if base is not None and args.ceiling and max(args.workers) > 1:
            # what this machine gives two processes at all: the same plain run twice at the same time
            count = max(args.workers)
            pair = [p for p in verify_side_by_side(onnx, vnnlib, args.timeout, count) if "time_s" in p]
            if len(pair) == count:
                slowest = max(p["time_s"] for p in pair)
                print(f"{name:10s} machine: {count} plain processes side by side took "
                      + "/".join(f"{p['time_s']:.2f}" for p in pair)
                      + f" s against {base['time']:.2f} s alone: at most {count * base['time'] / slowest:.2f}x "
                      f"from {count} processes here")
        for config in args.workers:
            row = best.get(config)
            if config == 1 or row is None:
                continue
            parts = []
            if one is not None:
                parts.append(f"vs 1 worker: time {one['time'] / row['time']:.2f}x faster, "
                             f"dom/s {row['rate'] / max(one['rate'], 1e-9):.2f}x, "
                             f"after the root {row['bab_rate'] / max(one['bab_rate'], 1e-9):.2f}x")
            if base is not None:
                parts.append(f"vs 1 process: time {base['time'] / row['time']:.2f}x, "
                             f"dom/s {row['rate'] / max(base['rate'], 1e-9):.2f}x, "
                             f"after the root {row['bab_rate'] / max(base['bab_rate'], 1e-9):.2f}x")
            print(f"{name:10s} {config} workers: " + "; ".join(parts))
            warm, warm_one = best.get(f"{config}w"), best.get("1w")
            if warm is not None and warm_one is not None:
                print(f"{name:10s} {config} standing: vs 1 standing: time {warm_one['time'] / warm['time']:.2f}x "
                      f"faster, dom/s {warm['rate'] / max(warm_one['rate'], 1e-9):.2f}x"
                      + (f"; vs 1 process: time {base['time'] / warm['time']:.2f}x" if base is not None else ""))
    print(f"(load after: {load()})")


def _num(value) -> str:
    if value is None:
        return "-"
    return (f"{value:.2f}" if value < 10 else f"{value:.1f}") if isinstance(value, float) else str(value)


def read_truth() -> dict:
    truth = {}
    for family in {spec[0] for spec in INSTANCES.values()}:
        path = SHARED / family / "ground_truth.csv"
        if path.is_file():
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    truth[(family, Path(row["onnx"]).name, Path(row["vnnlib"]).name)] = row.get("consensus", "?")
    return truth


def bench(instances: Path, out: Path, extra: list[str], rows: list[str]) -> tuple[float, dict]:
    command = [sys.executable, "-m", "verifier", "bench", str(instances), "--out", str(out), "--json", *rows, *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"verifier bench failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    with open(out / "results.csv", newline="") as handle:
        verdicts = {(r["onnx"], r["vnnlib"]): r["result"] for r in csv.DictReader(handle)}
    return wall, verdicts


def part_bench(args: argparse.Namespace) -> None:
    print(f"\n== verifier bench: --jobs 2 against --cluster local:2 (load {load()})")
    print(f"{'family':8s} {'executor':16s} {'instances':>9s} {'wall s':>8s} {'per min':>8s}  verdicts")
    with tempfile.TemporaryDirectory(prefix="parallel-bench-") as folder:
        for family in ("test", "acasxu"):
            instances = SHARED / family / "instances.csv"
            if not instances.is_file():
                print(f"{family:8s} skipped: {instances} not found")
                continue
            rows = [] if family == "test" else ["--rows", f"::{max(1, 186 // args.bench_limit)}", "--limit",
                                                str(args.bench_limit), "--timeout-scale", str(args.timeout_scale)]
            results = {}
            for label, extra in (("--jobs 2", ["--jobs", "2"]), ("--cluster local:2", ["--cluster", "local:2"])):
                wall, verdicts = bench(instances, Path(folder) / f"{family}-{label.split()[0][2:]}", extra, rows)
                results[label] = verdicts
                count = len(verdicts)
                tally = ", ".join(f"{v} {list(verdicts.values()).count(v)}" for v in sorted(set(verdicts.values())))
                print(f"{family:8s} {label:16s} {count:9d} {wall:8.1f} {60 * count / wall:8.1f}  {tally}")
            same = results["--jobs 2"] == results["--cluster local:2"]
            print(f"{family:8s} same verdicts in results.csv: {'yes' if same else 'NO'}")
    print(f"(load after: {load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default=None,
                        help="worker counts to compare, e.g. 1,2,4 (default: 1,2 and the core count if larger)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per verify run (default 300 s)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration (the fastest is compared)")
    parser.add_argument("--only", help="instances whose name contains one of these (comma-separated): "
                        + ", ".join(INSTANCES))
    parser.add_argument("--bench-limit", type=int, default=10, help="ACAS Xu rows for the bench part (default 10)")
    parser.add_argument("--timeout-scale", type=float, default=0.25, help="bench part: on the rows' timeouts")
    parser.add_argument("--skip-instances", action="store_true")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip the machine's own ceiling (N plain runs of the instance at the same time)")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--no-standing", dest="standing", action="store_false",
                        help="skip the runs on a standing cluster (dask scheduler and N dask workers started and "
                        "warmed before the run, as a cluster that serves many runs is)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    args.workers = [int(w) for w in args.workers.split(",")] if args.workers else sorted({1, 2, cores})
    print(f"machine: {cores} cores, load {load()}; every engine process uses 1 thread")
    if not args.skip_instances:
        part_instances(args, read_truth())
    if not args.skip_bench:
        part_bench(args)


if __name__ == "__main__":
    main()
