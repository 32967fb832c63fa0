"""One instance's branch and bound over a real Dask cluster (a LocalCluster of 2 worker processes, 1 thread each,
started once for this module): the same verdicts as one process, the counterexample confirmed by onnxruntime,
every domain accounted for by the ledger, a worker killed mid-search costs time and never a domain; and
benchmark runs on the cluster give the rows of local runs, a lost worker costing one recorded re-run."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("distributed")

import verifier  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.distributed_cases import ACAS, DIGITS, acas_margin, digits_margin  # noqa: E402
from verifier.bench import BenchOptions, InlineExecutor, read_instances, run_benchmark  # noqa: E402
from verifier.distributed import coordinator, start_local, use_client  # noqa: E402

FAKE = (sys.executable, str(ROOT / "tests" / "bench_fake_verifier.py"))


@pytest.fixture(scope="module")
def cluster():
    started = start_local(2)
    started.wait_for_workers(2, timeout=120)
    yield started
    started.close()


def _runtime_settings(dask_worker) -> tuple[bool, list[str], float, float, str | None]:
    """What a worker's own runtime does beside the search: profiler on?, its periodic jobs, the periods (ms) of
    its system monitor and of its event-loop watchdog tick, and the ``MALLOC_ARENA_MAX`` its process *started*
    with (in ``/proc``, which later changes to ``os.environ`` do not touch; None off Linux)."""
    import os

    import dask

    jobs = dask_worker.periodic_callbacks
    try:
        with open(f"/proc/{os.getpid()}/environ", "rb") as handle:
            start = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
        arenas = start.get(b"MALLOC_ARENA_MAX", b"unset").decode()
    except OSError:
        arenas = None
    return (dask.config.get("distributed.worker.profile.enabled"), sorted(jobs), jobs["monitor"].callback_time,
            jobs["tick"].callback_time, arenas)


def test_local_workers_run_without_dasks_profiler_with_slow_ticks_and_one_malloc_arena(cluster):
    # Dask's sampling profiler (every 10 ms) and 20 ms tick cost a two-worker search 15-30 % on 2 vCPUs; a task
    # thread's own malloc arena page-faults several times as often as the main one
    settings = cluster.client.run(_runtime_settings)
    assert len(settings) == 2
    for profiling, jobs, monitor_ms, tick_ms, arenas in settings.values():
        assert profiling is False and "profile" not in jobs and "profile-cycle" not in jobs
        assert monitor_ms == 5000 and tick_ms == 1000
        assert arenas in ("1", None)


def _books(result) -> dict:
    (ledger,) = result.stats["distributed"]["ledger"]
    return ledger


def test_input_split_over_workers_proves_what_one_process_proves(cluster, tmp_path):
    prop = acas_margin(tmp_path, -0.41)
    alone = verifier.verify(ACAS, prop, timeout=120)
    spread = verifier.verify(ACAS, prop, timeout=120, client=cluster.client)
    assert alone.status == spread.status == "unsat"
    info = spread.stats["distributed"]
    assert info["tasks"] >= 2 and info["worker_domains"] > 0   # the workers did search
    books = _books(spread)
    assert books["refuted_weight"] == "1" and books["open_domains"] == 0 and books["undecided_weight"] == "0"


def test_relu_split_over_workers_proves_what_one_process_proves(cluster, tmp_path):
    prop = digits_margin(tmp_path, 1.44)
    alone = verifier.verify(DIGITS, prop, timeout=120)
    spread = verifier.verify(DIGITS, prop, timeout=120, client=cluster.client)
    assert alone.status == spread.status == "unsat" and spread.stats["method"] == "relu-split"
    assert spread.stats["distributed"]["tasks"] >= 2 and _books(spread)["refuted_weight"] == "1"


def test_float_sound_relu_split_over_workers_confirms_every_refutation_there(cluster, tmp_path):
    """--float-sound with workers: the workers search in float32 and confirm their refutations in float64 over
    the root bounds sent with each task, as one process does; the same verdict, every domain accounted for."""
    prop = digits_margin(tmp_path, 1.44)
    options = verifier.VerifyOptions(float_sound=True)
    alone = verifier.verify(DIGITS, prop, timeout=120, options=options)
    spread = verifier.verify(DIGITS, prop, timeout=120, options=options, client=cluster.client)
    assert alone.status == spread.status == "unsat", spread.message
    assert "distributed_skipped" not in spread.stats and spread.stats["method"] == "relu-split"
    assert spread.stats["search_dtype"] == "float32" and spread.stats["dtype"] == "float64"
    info = spread.stats["distributed"]
    assert info["tasks"] >= 2 and info["worker_domains"] > 0
    assert info["worker_confirmed"] > 0      # refutations made on the workers were confirmed there
    assert _books(spread)["refuted_weight"] == "1" and _books(spread)["open_domains"] == 0


def test_float_sound_input_split_over_workers(cluster, tmp_path):
    prop = acas_margin(tmp_path, -0.41)
    options = verifier.VerifyOptions(float_sound=True)
    spread = verifier.verify(ACAS, prop, timeout=120, options=options, client=cluster.client)
    assert spread.status == "unsat" and "distributed_skipped" not in spread.stats
    assert spread.stats["distributed"]["tasks"] >= 2 and "float_sound" in spread.stats
    assert _books(spread)["refuted_weight"] == "1"


@pytest.mark.parametrize("cores", [2, 64])
def test_the_exact_milp_takes_its_turn_beside_the_workers_and_decides(cluster, tmp_path, monkeypatch, cores):
    """A 60-variable unsatisfiable 3-SAT network (ReLU splitting alone does not finish it in 40 s on one core):
    with workers, the MILP's turn runs in the coordinator beside their branch and bound, as one process runs it
    after its short start, and answers unsat as the independent DPLL solver does. Where the two local workers
    take every core (2), one of them is held back while the MILP runs alone; with cores to spare (64), none."""
    import numpy as np

    from tests import satnet
    from verifier.distributed import coordinator

    n = 60
    formula = satnet.random_formula(n, int(4.5 * n), np.random.default_rng(1))
    assert satnet.dpll(formula, n) is None
    model, prop = satnet.write_instance(tmp_path, "unsat60", formula, n)
    monkeypatch.setattr(coordinator, "available_cores", lambda: cores)
    result = verifier.verify(str(model), str(prop), timeout=60, client=cluster.client)
    assert result.status == "unsat", result.message
    assert result.stats["method"] == "relu-split" and result.stats["decided_by"] == "milp"
    assert result.stats["milp"]["mode"] == "alone" and "distributed_skipped" not in result.stats
    info = result.stats["distributed"]
    if cores == 2:
        assert info["held_for_milp"] == 1
    else:
        assert "held_for_milp" not in info


def _margin_mlp(folder: Path) -> tuple[Path, Path]:
    """An 8-input ReLU network (input splitting, with the MILP's turn after a short start) and "y <= -0.281" on
    [-1, 1]^8: dense sampling puts min y at about -0.231, and proving the bound takes input splitting about
    385 000 sub-boxes."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(8, 24), torch.nn.ReLU(), torch.nn.Linear(24, 24), torch.nn.ReLU(),
                              torch.nn.Linear(24, 1))
    model, prop = folder / "mlp8.onnx", folder / "mlp8.vnnlib"
    with warnings.catch_warnings():   # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 8), str(model), dynamo=False, input_names=["x"], output_names=["y"])
    prop.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(8)) + "(declare-const Y_0 Real)\n"
                    + "".join(f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n" for i in range(8))
                    + "(assert (<= Y_0 -0.281))\n")
    return model, prop


def test_input_splitting_resumed_after_the_milps_turn_goes_over_the_workers_again(cluster, tmp_path, monkeypatch):
    """Input splitting on 6-16 inputs: a short start, the MILP's turn, then the rest. With workers both searches
    run over them; here the MILP is made to give up, so the second search decides, and each search has books
    of its own (its tasks and yield events named apart from the first one's)."""
    import verifier.bab.milp as milp

    model, prop = _margin_mlp(tmp_path)
    expected = verifier.verify(str(model), str(prop), timeout=120, options=verifier.VerifyOptions(method="milp"))
    assert expected.status == "unsat"   # HiGHS's answer, the reference here
    turns = []
    monkeypatch.setattr(milp, "milp_turn", lambda *args, **kwargs: turns.append(1))
    result = verifier.verify(str(model), str(prop), timeout=30, client=cluster.client)
    assert result.status == "unsat", result.message
    assert turns == [1] and result.stats["method"] == "input-split"
    books = result.stats["distributed"]["ledger"]
    assert len(books) == 2 and books[-1]["refuted_weight"] == "1" and books[-1]["open_domains"] == 0
    assert result.stats["distributed"]["tasks"] >= 2


def test_counterexample_found_by_a_worker_is_confirmed_and_stops_the_run(cluster, tmp_path):
    prop = acas_margin(tmp_path, -0.405)  # the smallest Y_0 - Y_1 sampled is -0.4068: violations are rare
    options = verifier.VerifyOptions(attack=False)  # the search, not the attack, must find it
    torch.manual_seed(0)  # the coordinator's PGD inside the root box then misses it: the workers search on
    result = verifier.verify(ACAS, prop, timeout=120, options=options, client=cluster.client)
    assert result.status == "sat"
    assert result.stats["distributed"]["counterexample_from"].startswith("tcp://")  # a worker found it
    y = result.counterexample.y  # from onnxruntime on the original file
    assert y[0] - y[1] <= -0.405


def _kill_a_searching_worker(client, done: threading.Event, killed: list) -> None:
    """Wait for a subtree task that has run for a moment, then SIGKILL the worker process running it."""
    seen: dict[str, float] = {}
    while not done.is_set():
        for worker, keys in client.processing().items():
            for key in keys:
                if str(key).startswith("verifier-"):
                    seen.setdefault(key, time.monotonic())
                    if time.monotonic() - seen[key] > 0.5:
                        pid = client.run(os.getpid, workers=[worker])[worker]
                        os.kill(pid, signal.SIGKILL)
                        killed.append((worker, key))
                        return
        time.sleep(0.05)


def _verify_while_killing(killer, cluster, prop):
    """``verify`` on the cluster while ``killer(client, done, killed)`` kills workers in a thread; the result
    and what was killed."""
    done, killed = threading.Event(), []
    thread = threading.Thread(target=killer, args=(cluster.client, done, killed))
    thread.start()
    try:
        result = verifier.verify(ACAS, prop, timeout=300, client=cluster.client)
    finally:
        done.set()
        thread.join()
    return result, killed


def test_a_worker_killed_mid_search_costs_time_never_an_answer_or_a_domain(cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(coordinator, "SLICE_S", 2.0)
    prop = acas_margin(tmp_path, -0.408)  # about 2 500 sub-boxes: long enough to be killed in the middle
    result, killed = _verify_while_killing(_kill_a_searching_worker, cluster, prop)
    assert killed, "the search ended before a worker could be killed"
    assert result.status == "unsat"
    books = _books(result)
    assert result.stats["distributed"]["lost"] >= 1 and books["requeued"] >= 1
    lost = books["requeue_log"][0]
    assert lost["domains"] >= 1 and "KilledWorker" in lost["why"]
    # every domain of the killed task was sent again and settled; the refuted ones tile the root exactly
    assert books["requeued_settled"] and books["requeued_domains"] >= lost["domains"]
    assert books["refuted_weight"] == "1" and books["open_domains"] == 0 and books["open_subtrees"] == 0
    cluster.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker for the next tests


def _kill_every_worker(client, done: threading.Event, killed: list) -> None:
    """Once a subtree task has run for a moment, SIGKILL every worker process at once: every copy of the run's
    scattered context is lost with them."""
    while not done.is_set():
        if any(str(key).startswith("verifier-") for keys in client.processing().values() for key in keys):
            time.sleep(0.5)
            for worker, pid in client.run(os.getpid).items():
                os.kill(pid, signal.SIGKILL)
                killed.append(worker)
            return
        time.sleep(0.05)


def test_every_worker_killed_at_once_the_context_is_sent_again(tmp_path, monkeypatch):
    # a cluster of its own: killing every worker at once must not disturb the module's cluster for the next tests
    own = start_local(2)
    try:
        own.wait_for_workers(2, timeout=120)
        _every_worker_killed(own, tmp_path, monkeypatch)
    finally:
        own.close()


def _every_worker_killed(cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(coordinator, "SLICE_S", 2.0)
    prop = acas_margin(tmp_path, -0.4076)  # some 3 000 sub-boxes: seconds of search
    result, killed = _verify_while_killing(_kill_every_worker, cluster, prop)
    assert len(killed) == 2, "the search ended before the workers could be killed"
    assert result.status == "unsat"
    info = result.stats["distributed"]
    assert info["lost"] >= 1 and info.get("context_scattered", 1) >= 2   # the lost context was scattered again
    books = _books(result)
    assert books["refuted_weight"] == "1" and books["open_domains"] == 0 and books["open_subtrees"] == 0


def _family(tmp_path: Path, kinds: list[str], timeout: float = 5.0) -> Path:
    folder = tmp_path / "fam"
    (folder / "vnnlib").mkdir(parents=True, exist_ok=True)
    prop = (ROOT / "models" / "acasxu_like_prop_2.vnnlib").read_text()
    (folder / "onnx").mkdir(exist_ok=True)   # the network inside the family's folder (bench refuses paths outside it)
    shutil.copy(ROOT / "models" / "acasxu_like.onnx", folder / "onnx" / "acasxu_like.onnx")
    rows = []
    for kind in kinds:
        (folder / "vnnlib" / f"{kind}.vnnlib").write_text(prop)
        rows.append(f"onnx/acasxu_like.onnx,vnnlib/{kind}.vnnlib,{timeout}")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    return folder / "instances.csv"


def _verdicts(report) -> dict[str, tuple[str, str]]:
    return {Path(o.vnnlib).stem: (o.result, o.witness) for o in report.outcomes}


def test_bench_on_the_cluster_records_what_a_local_run_records(cluster, tmp_path):
    from verifier.bench.dask_executor import DaskExecutor

    instances = read_instances(_family(tmp_path, ["ok", "slow3", "crash", "forged", "hang"], timeout=2.0))
    local = run_benchmark(instances, BenchOptions(out=tmp_path / "local", command=FAKE, grace=0.5),
                          executor=InlineExecutor())
    executor = DaskExecutor(use_client(cluster.client))
    try:
        assert executor.jobs == 2
        remote = run_benchmark(instances, BenchOptions(out=tmp_path / "dask", command=FAKE, grace=0.5),
                               executor=executor)
    finally:
        executor.shutdown()
    assert _verdicts(remote) == _verdicts(local)
    assert _verdicts(remote)["ok"] == ("unsat", "") and _verdicts(remote)["crash"][0] == "error"
    assert (tmp_path / "dask" / "results.csv").read_text().count("\n") == 6  # header + one row each


def test_bench_instance_whose_worker_dies_is_run_again_once_and_says_so(cluster, tmp_path):
    from verifier.bench.dask_executor import DaskExecutor

    instances = read_instances(_family(tmp_path, ["slow30_a"], timeout=20.0))
    executor = DaskExecutor(use_client(cluster.client))
    killed = []

    def kill_when_running() -> None:
        for _ in range(600):
            busy = [w for w, keys in cluster.client.processing().items()
                    if any(str(k).startswith("verifier-bench-") for k in keys)]
            if busy:
                time.sleep(0.5)
                pid = cluster.client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(busy[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        report = run_benchmark(instances, BenchOptions(out=tmp_path / "out", command=FAKE, grace=1.0),
                               executor=executor)
    finally:
        killer.join()
        executor.shutdown()
    (outcome,) = report.outcomes
    assert killed and outcome.result == "unsat"
    assert outcome.message.startswith("re-run once: the worker running it was lost")
    cluster.wait_for_workers(2, timeout=120)
