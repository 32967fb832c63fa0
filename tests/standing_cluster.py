"""A Dask cluster started exactly as a user starts one that outlives any run: ``dask scheduler`` and ``dask
worker`` processes (one thread each) on loopback, separate OS processes, warmed (torch and the search imported
on every worker). Used by the command-line tests and by ``benchmarks/parallel.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class StandingCluster:
    """``workers`` ``dask worker`` processes and their ``dask scheduler``, logging to ``folder/cluster.log``;
    ``address`` is the scheduler's. ``env``: extra environment variables of the processes."""

    def __init__(self, workers: int, folder: Path, env: dict[str, str] | None = None):
        dask = shutil.which("dask")
        if dask is None:
            raise FileNotFoundError("the dask command is not on PATH (pip install 'verifier[distributed]')")
        address_file = folder / "scheduler.json"
        environment = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.log = open(folder / "cluster.log", "w")
        self.processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                            "--no-dashboard", "--scheduler-file", str(address_file)], cwd=ROOT,
                                           env=environment, stdout=self.log, stderr=subprocess.STDOUT)]
        try:
            self.address = _scheduler_address(address_file, time.monotonic() + 120)
            for index in range(workers):
                self.processes.append(subprocess.Popen(
                    [dask, "worker", self.address, "--nthreads", "1", "--name", f"w{index}", "--no-dashboard",
                     "--memory-limit", "0"], cwd=ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT))
            from distributed import Client

            from verifier.distributed.cluster import warm_up

            with Client(self.address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
                # a cluster already up is warm: a run's own warm-up is then instant, and a seconds-long search
                # is not over before its workers are asked
                warm_up(client)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Terminate the workers and the scheduler (killed after 20 s)."""
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.log.close()


def _scheduler_address(path: Path, deadline: float) -> str:
    """The address in the scheduler's file, once the file is there and whole (it may be caught half written)."""
    while True:
        try:
            return json.loads(path.read_text())["address"]
        except (OSError, ValueError, KeyError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Dask scheduler wrote no address to {path} in 120 s") from None
            time.sleep(0.1)
