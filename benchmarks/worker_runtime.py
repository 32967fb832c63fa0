"""Why local Dask workers start quiet and with one malloc arena (``verifier.distributed.cluster``): side by side
in one run.

    python benchmarks/worker_runtime.py                   # ACAS Xu 3_3 prop 2, 3 pairs / 2 rounds (about 12 min)
    python benchmarks/worker_runtime.py --pairs 1 --rounds 1

Part 1, threads and arenas: one process verifies the instance alternately in its main thread and in a fresh
thread (``--pairs`` times each), as a Dask task runs in a thread; printed per run: seconds and the page faults
of the thread that searched. Once in a process started with glibc's own arenas (``MALLOC_ARENA_MAX`` unset),
once with ``MALLOC_ARENA_MAX=1`` (what the workers now start with).

Part 2, Dask's own runtime: the same whole verification as two tasks at once on a local cluster of two
one-thread workers, with Dask's defaults and as the verifier starts its workers
(:func:`~verifier.distributed.cluster.start_local`: no profiler, slower ticks, one arena), against two plain
processes side by side (``--rounds`` times each, interleaved). Printed: seconds per task or process (from
after loading; each first verifies a bundled small network, untimed), and the ratio of each cluster's slowest
to the plain processes' slowest.

Every engine process uses one thread. Asserts nothing; from ``../shared/benchmarks``, skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ROOT, SHARED

INSTANCE = ("acasxu", "onnx/ACASXU_run2a_3_3_batch_2000.onnx", "vnnlib/prop_2.vnnlib")
#: verified first, untimed, in every measuring process: imports and first calls out of the way
WARM_UP = (str(ROOT / "models" / "acasxu_like.onnx"), str(ROOT / "models" / "acasxu_like_prop_1.vnnlib"))


def verify_here(onnx: str, vnnlib: str) -> dict:
    """One verification in the calling thread: status, seconds after loading the model and the property (the
    first load in a process also pays for imports), and that thread's minor page faults."""
    import verifier

    before, started = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt, time.perf_counter()
    result = verifier.verify(onnx, vnnlib, timeout=600, device="cpu")
    loading = sum(result.stats.get("phases", {}).get(phase, 0.0) for phase in ("load_model", "load_property"))
    return {"status": result.status, "seconds": time.perf_counter() - started - loading,
            "faults": resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before}


def threads_child(onnx: str, vnnlib: str, pairs: int) -> None:
    """Part 1 inside one process: main thread and fresh thread, alternately; one JSON line."""
    from verifier.threads import set_threads

    set_threads(1)
    verify_here(*WARM_UP)
    rows: dict[str, list] = {"main": [], "thread": []}
    for _ in range(pairs):
        rows["main"].append(verify_here(onnx, vnnlib))
        box: list = []
        worker = threading.Thread(target=lambda out=box: out.append(verify_here(onnx, vnnlib)))
        worker.start()
        worker.join()
        rows["thread"].append(box[0])
    print(json.dumps(rows))


def part_threads(onnx: Path, vnnlib: Path, pairs: int) -> None:
    print(f"== the search in the main thread and in a fresh thread ({pairs} pair(s) per process)")
    for label, arenas in (("glibc's arenas", None), ("MALLOC_ARENA_MAX=1", "1")):
        env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFIER_THREADS="1")
        env.pop("MALLOC_ARENA_MAX", None)
        if arenas:
            env["MALLOC_ARENA_MAX"] = arenas
        done = subprocess.run([sys.executable, __file__, "--threads-child", str(onnx), str(vnnlib), str(pairs)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            print(f"{label}: failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        rows = json.loads(lines[-1])
        for where in ("main", "thread"):
            runs = ", ".join(f"{r['seconds']:.2f} s / {r['faults'] / 1e3:.0f} k" for r in rows[where])
            print(f"{label:20s} {where:6s} {runs}   (status {rows[where][0]['status']})")


def _task(onnx: str, vnnlib: str) -> float:
    from verifier.threads import set_threads

    set_threads(1)
    verify_here(*WARM_UP)
    return verify_here(onnx, vnnlib)["seconds"]


def _on_cluster(onnx: Path, vnnlib: Path, ours: bool) -> list[float]:
    from distributed import Client, LocalCluster

    from verifier.distributed.cluster import start_local

    if ours:
        cluster = start_local(2)
        client, close = cluster.client, cluster.close
    else:
        local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                             memory_limit=0)
        client = Client(local)

        def close() -> None:
            client.close()
            local.close()
    try:
        client.wait_for_workers(2)
        futures = [client.submit(_task, str(onnx), str(vnnlib), pure=False, workers=[address])
                   for address in client.scheduler_info()["workers"]]
        return [future.result() for future in futures]
    finally:
        close()


def _plain_pair(onnx: Path, vnnlib: Path) -> list[float]:
    """The task's own measurement, in two fresh processes side by side."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFIER_THREADS="1")
    processes = [subprocess.Popen([sys.executable, __file__, "--task-child", str(onnx), str(vnnlib)], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for _ in range(2)]
    return [float(process.communicate()[0].split()[-1]) for process in processes]


def part_dask(onnx: Path, vnnlib: Path, rounds: int) -> None:
    print(f"== two whole searches at once: as two Dask tasks, and as two plain processes ({rounds} round(s))")
    slowest: dict[str, list[float]] = {"Dask defaults": [], "verifier's workers": [], "plain processes": []}
    for _ in range(rounds):
        for label in slowest:
            times = _plain_pair(onnx, vnnlib) if label == "plain processes" else \
                _on_cluster(onnx, vnnlib, ours=label == "verifier's workers")
            slowest[label].append(max(times))
            print(f"{label:20s} {' / '.join(f'{t:.2f}' for t in times)} s")
    plain = min(slowest["plain processes"])
    for label in ("Dask defaults", "verifier's workers"):
        print(f"{label}: slowest task {min(slowest[label]):.2f} s, {min(slowest[label]) / plain:.2f}x the plain "
              f"processes' {plain:.2f} s (best round each)")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--threads-child":
        threads_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--task-child":
        print(_task(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="main/fresh thread pairs per process (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of part 2 (default 2)")
    parser.add_argument("--only", choices=("threads", "dask"), help="run one part only")
    parser.add_argument("--onnx", help="another instance: its ONNX file (with --vnnlib)")
    parser.add_argument("--vnnlib")
    args = parser.parse_args()
    if args.onnx and args.vnnlib:
        onnx, vnnlib = Path(args.onnx).resolve(), Path(args.vnnlib).resolve()
    else:
        family, model, prop = INSTANCE
        onnx, vnnlib = SHARED / family / model, SHARED / family / prop
        if not onnx.is_file():
            raise SystemExit(f"{onnx} is absent: the shared benchmarks are not here (or pass --onnx/--vnnlib)")
    print(f"instance: {onnx.name} {vnnlib.name}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.only != "dask":
        part_threads(onnx, vnnlib, args.pairs)
    if args.only != "threads":
        part_dask(onnx, vnnlib, args.rounds)


if __name__ == "__main__":
    main()
