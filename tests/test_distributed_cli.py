"""A cluster started exactly as a user would: ``dask scheduler`` and two ``dask worker`` processes on loopback,
separate OS processes; ``verifier verify --scheduler`` and ``verifier bench --scheduler`` run on it from the
command line, ``--cluster local:2`` on a cluster of their own. Without Dask the options say how to install it
(that test runs with or without Dask)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.distributed_cases import ACAS, acas_margin
from tests.standing_cluster import StandingCluster
from verifier.distributed.cluster import quiet_worker_environ

FAKE = f"{sys.executable} {ROOT / 'tests' / 'bench_fake_verifier.py'}"


def _cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env or dict(os.environ, PYTHONPATH=str(ROOT)), timeout=timeout)


#: the command line run as if Dask were not installed (an import hook refuses dask and distributed)
WITHOUT_DASK = """
import sys

class NoDask:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoDask())
from verifier.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli_without_dask(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_DASK, *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)


def test_without_dask_the_options_say_how_to_install_it(tmp_path):
    prop = str(ROOT / "models" / "acasxu_like_prop_1.vnnlib")
    verify = _cli_without_dask("verify", str(ACAS), prop, "--workers", "2")
    assert verify.returncode == 2
    assert verify.stderr.strip().splitlines()[-1].endswith('pip install "verifier[distributed]"')
    assert "Traceback" not in verify.stderr
    instances = tmp_path / "fam" / "instances.csv"
    instances.parent.mkdir()
    instances.write_text(f"{ACAS},{prop},10\n")
    bench = _cli_without_dask("bench", str(instances), "--out", str(tmp_path / "out"), "--cluster", "local:2",
                              "--allow-outside-paths")
    assert bench.returncode == 2 and 'pip install "verifier[distributed]"' in bench.stderr
    plain = _cli_without_dask("verify", str(ACAS), prop)
    assert plain.returncode == 0 and plain.stdout.strip() == "unsat"  # everything else works without it


@pytest.fixture(scope="module")
def loopback_cluster(tmp_path_factory):
    pytest.importorskip("distributed")
    if shutil.which("dask") is None:
        pytest.skip("the dask command is not on PATH")
    # started as the README says, with the quiet worker settings in the environment
    cluster = StandingCluster(2, tmp_path_factory.mktemp("cluster"), env=quiet_worker_environ())
    try:
        yield cluster.address
    finally:
        cluster.close()


def test_the_readmes_environment_quiets_hand_started_workers(loopback_cluster):
    from distributed import Client

    with Client(loopback_cluster, timeout=60) as client:
        settings = client.run(lambda dask_worker: (
            sorted(dask_worker.periodic_callbacks), dask_worker.periodic_callbacks["monitor"].callback_time,
            dask_worker.periodic_callbacks["tick"].callback_time, os.environ.get("MALLOC_ARENA_MAX")))
    assert len(settings) == 2
    for jobs, monitor_ms, tick_ms, arenas in settings.values():
        assert "profile" not in jobs and monitor_ms == 5000 and tick_ms == 1000 and arenas == "1"


def test_verify_on_a_cluster_of_separate_processes(loopback_cluster, tmp_path):
    # the smallest Y_0 - Y_1 lies in (-0.4076, -0.4072): a proof of some 3000 domains, seconds of search (at -0.41
    # the coordinator proves it alone before the workers are ready)
    prop = acas_margin(tmp_path, -0.4076)
    result = _cli("verify", str(ACAS), str(prop), "--scheduler", loopback_cluster, "--json", "--timeout", "200")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["status"] == "unsat"
    info = payload["stats"]["distributed"]
    assert info["tasks"] >= 2 and info["worker_domains"] > 0
    (books,) = info["ledger"]
    assert books["refuted_weight"] == "1" and books["open_domains"] == 0


def _family(tmp_path: Path) -> Path:
    folder = tmp_path / "fam"
    (folder / "vnnlib").mkdir(parents=True)
    prop = (ROOT / "models" / "acasxu_like_prop_2.vnnlib").read_text()
    kinds = ["ok", "slow5", "crash", "forged"]
    for kind in kinds:
        (folder / "vnnlib" / f"{kind}.vnnlib").write_text(prop)
    (folder / "onnx").mkdir()   # the network inside the family's folder (bench refuses paths outside it)
    shutil.copy(ACAS, folder / "onnx" / "acasxu_like.onnx")
    (folder / "instances.csv").write_text("".join(f"onnx/acasxu_like.onnx,vnnlib/{k}.vnnlib,5\n" for k in kinds))
    return folder / "instances.csv"


def _verdicts(out: Path) -> dict[str, str]:
    import csv

    with open(out / "results.csv", newline="") as handle:
        return {Path(r["vnnlib"]).stem: (r["result"], r["witness"]) for r in csv.DictReader(handle)}


@pytest.mark.slow  # three bench runs from the command line; the executor itself is tested in test_distributed.py
def test_bench_on_a_scheduler_and_on_a_local_cluster_records_what_local_jobs_record(loopback_cluster, tmp_path):
    instances = _family(tmp_path)
    runs = {"jobs": ["--jobs", "2"], "scheduler": ["--scheduler", loopback_cluster],
            "cluster": ["--cluster", "local:2"]}
    verdicts = {}
    for name, extra in runs.items():
        done = _cli("bench", str(instances), "--out", str(tmp_path / name), "--command", FAKE, "--grace", "1", *extra)
        assert done.returncode == 1, done.stderr  # the forged witness is an incorrect answer
        verdicts[name] = _verdicts(tmp_path / name)
    assert verdicts["jobs"] == verdicts["scheduler"] == verdicts["cluster"]
    assert verdicts["jobs"]["ok"][0] == "unsat" and verdicts["jobs"]["crash"][0] == "error"
    summary = json.loads((tmp_path / "scheduler" / "summary.json").read_text())
    assert summary["run"]["jobs"] == 2  # the cluster's worker threads
