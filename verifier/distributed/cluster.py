"""Dask clusters for the verifier: a local one of worker processes, or an existing one by its scheduler's address.

Dask (``dask.distributed``) is an optional extra: ``pip install "verifier[distributed]"``. Without it every
function here raises :class:`DistributedError` saying so in one line; nothing else of the package needs it.

A *local* cluster is ``N`` worker processes on this machine (one thread each: one branch-and-bound search or
one benchmark instance per process), with its scheduler in this process, no dashboard, and
``allowed_failures=0``: a task whose worker dies fails at once with ``KilledWorker``, so that the caller, who
keeps the books, re-queues it itself (and counts it) instead of Dask re-running it silently. An *existing*
cluster (``tcp://HOST:PORT``, started with ``dask scheduler`` / ``dask worker``, dask-jobqueue, SSH...) keeps its
own settings; the callers here tolerate a silent re-run too.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from verifier.errors import VerifierError

#: how to get Dask, in one line
INSTALL_HINT = 'Dask is not installed; install the extra: pip install "verifier[distributed]"'


class DistributedError(VerifierError):
    """Dask is missing, a scheduler cannot be reached, no worker joined in time, or a cluster spec is malformed."""


def require_dask() -> Any:
    """The ``distributed`` module, or :class:`DistributedError` with the install hint."""
    try:
        import distributed
    except ImportError:
        raise DistributedError(INSTALL_HINT) from None
    return distributed


def check_dask() -> None:
    """:class:`DistributedError` with the install hint unless ``distributed`` can be found (without importing
    it, which takes about a second: callers import it in the background)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise DistributedError(INSTALL_HINT)


def dask_available() -> bool:
    """Whether ``dask.distributed`` can be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def parse_local(spec: str) -> int:
    """The worker count of a ``local:N`` cluster spec."""
    kind, _, count = spec.partition(":")
    if kind != "local" or not count.isdigit() or int(count) < 1:
        raise DistributedError(f"--cluster takes local:N with N >= 1 worker processes (e.g. local:4), got {spec!r}")
    return int(count)


class Cluster:
    """A connected Dask client, and the local cluster it owns (if any), closed together by :meth:`close`."""

    def __init__(self, client: Any, owned: Any = None, description: str = ""):
        self.client = client
        self.owned = owned
        self.description = description

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    def nthreads(self) -> int:
        """Worker threads connected now (each runs one task at a time)."""
        try:
            return int(sum(self.client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a scheduler gone away has no workers
            return 0

    def threads_on_this_machine(self) -> int:
        """Worker threads whose worker process runs on this machine (a loopback address or one of this host's
        names), which share its cores with the coordinator; 0 where the scheduler cannot be asked."""
        import socket

        hosts = {"127.0.0.1", "::1", "localhost", socket.gethostname()}
        try:
            hosts.add(socket.gethostbyname(socket.gethostname()))
        except OSError:
            pass
        try:
            workers = self.client.scheduler_info()["workers"]
        except Exception:  # noqa: BLE001 - a scheduler gone away has no workers
            return 0
        return int(sum(info.get("nthreads", 1) for info in workers.values() if info.get("host") in hosts))

    def wait_for_workers(self, count: int = 1, timeout: float | None = 60.0) -> None:
        """Block until ``count`` workers are connected, or raise :class:`DistributedError` after ``timeout``."""
        try:
            self.client.wait_for_workers(count, timeout=timeout)
        except Exception as error:  # noqa: BLE001 - dask raises TimeoutError or OSError variants
            raise DistributedError(f"no Dask worker joined {self.description or self.address} within "
                                   f"{timeout:g} s ({type(error).__name__})") from None

    def close(self, timeout: float = 2.0) -> None:
        """Disconnect; stop the workers and scheduler of an owned local cluster (a worker still busy after
        ``timeout`` seconds is killed)."""
        try:
            self.client.close(timeout=timeout)
        except Exception:  # noqa: BLE001 - closing what already broke
            pass
        if self.owned is not None:
            try:
                self.owned.close(timeout=timeout)
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Dask settings that keep a worker's own runtime off the search's cores: no statistical profiler (it samples
#: every thread's stack every 10 ms, for the dashboard's profile page) and the event loop's watchdog tick and
#: system monitor at 1 s and 5 s instead of 20 ms and 500 ms. Measured on 2 vCPUs (``benchmarks/parallel.py``'s
#: question, two whole ACAS Xu 3_3 prop 2 searches as two tasks on two one-thread workers at once, two runs):
#: 38.4-44.7 s per task with Dask's defaults, 33.6-35.2 s with these, 32.7-33.9 s as two plain processes.
QUIET_WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}


#: the environment a worker process must *start* with (glibc reads it once, at start-up): one malloc arena.
#: The search runs in a Dask worker's task thread, and glibc gives a thread other than the main one an arena of
#: its own, made of mmap-ed heaps that it gives back by rules of its own, beside the thresholds
#: :func:`verifier.threads.tune_malloc` sets, so the search page-faults over and over: on 2 vCPUs, two workers
#: on ACAS Xu 3_3 prop 2 had 1.6-3.2 million page faults in their search threads (33.0-36.4 CPU s) with their own
#: arenas, 0.44-0.73 million (30.4-36.1 CPU s) with one (three runs each, interleaved); but whole searches in a
#: thread and in the main thread (``benchmarks/worker_runtime.py``) showed no consistent difference there.
WORKER_MALLOC = {"MALLOC_ARENA_MAX": "1"}


def quiet_worker_environ() -> dict[str, str]:
    """The environment of a ``dask scheduler`` / ``dask worker`` process started by hand: :data:`WORKER_MALLOC`
    and :data:`QUIET_WORKER_CONFIG` as variables (``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False`` ...)."""
    return {**WORKER_MALLOC, **{"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
                                for key, value in QUIET_WORKER_CONFIG.items()}}


def start_local(workers: int, threads_per_worker: int = 1, quiet: bool = True, warm: bool = True,
                start: str | None = None) -> Cluster:
    """A cluster of ``workers`` processes on this machine, ``threads_per_worker`` threads each, started and
    connected (its start-up, about 1.5 s, and with ``warm`` each worker's import of torch and the search,
    happen here)."""
    require_dask()
    from distributed import Client, LocalCluster

    if workers < 1:
        raise DistributedError(f"the number of workers must be at least 1, got {workers}")
    import dask

    if quiet:  # the command line ends with os._exit once it has answered: the semaphores Dask's process pool
        # made are then reported as leaked by multiprocessing's resource tracker, a separate process that
        # takes its warning filters from these options when it starts
        option = "ignore::UserWarning:multiprocessing.resource_tracker"
        if option not in sys.warnoptions:
            sys.warnoptions.append(option)
    method = worker_start_method(start)
    if method == "forkserver":
        _preload_forkserver()
    # no MALLOC_TRIM_THRESHOLD_ for our workers: it slows the search down twice (see verifier.threads.tune_malloc);
    # one malloc arena (WORKER_MALLOC); and the quiet settings above: Dask's profiler and 20 ms tick took 15-30 %
    # of a two-worker search
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                          **{f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()},
                          "distributed.worker.multiprocessing-method": method, **QUIET_WORKER_CONFIG}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=None, memory_limit=0,
                               silence_logs=logging.CRITICAL if quiet else logging.WARNING,
                               scheduler_kwargs={"allowed_failures": 0})
    try:
        client = Client(cluster)
        if warm:
            warm_up(client)
    except BaseException:
        cluster.close()
        raise
    return Cluster(client, cluster, f"a local cluster of {workers} worker processes")


def worker_start_method(preferred: str | None = None) -> str:
    """How local worker processes start: ``VERIFIER_WORKER_START`` if set, else ``preferred``, else
    ``forkserver`` where the platform has it, else ``spawn``. With ``forkserver`` one server process imports
    torch, onnxruntime and the search once and forks every worker from it: for one instance, whose
    coordinator bounds the root meanwhile, measured on 2 cores: 2 workers ready in 3.3 s instead of 4.8 s,
    oval21 img 876 decided in 12.1-12.5 s instead of 14.0-16.0 s. ``spawn`` (a fresh interpreter each,
    importing in parallel) suits a benchmark run, whose submitting process has nothing else to do: the test
    family took 5.0-5.5 s on ``--cluster local:2`` spawned against 6.8-6.9 s forkserver-started."""
    import multiprocessing
    import os

    chosen = os.environ.get("VERIFIER_WORKER_START", "").strip() or preferred
    available = multiprocessing.get_all_start_methods()
    if chosen:
        if chosen not in available:
            raise DistributedError(f"VERIFIER_WORKER_START must be one of {', '.join(available)}, got {chosen!r}")
        return chosen
    return "forkserver" if "forkserver" in available else "spawn"


def _preload_forkserver() -> None:
    """Dask's forkserver preloads ``distributed``; ours adds torch and the search modules, imported once. (The
    server itself starts with the first worker, after Dask's nanny has put its ``pre-spawn-environ``, and so
    :data:`WORKER_MALLOC`, into this process's environment: the forked workers inherit its allocator.)"""
    import dask
    from distributed.utils import get_mp_context

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        context = get_mp_context()   # Dask's own preload list first (it sets it once), then ours on top
    context.set_forkserver_preload(["distributed", *WARM_UP])


#: what a worker imports before its first task (torch and the search: about 1.5 s per fresh process)
WARM_UP = ("torch", "verifier.distributed.worker", "verifier.bab.input_split", "verifier.bab.relu_split",
           "verifier.distributed.frontier", "onnxruntime")


def _import_search_modules() -> None:
    import importlib

    from verifier.threads import tune_malloc

    tune_malloc()
    for name in WARM_UP:
        importlib.import_module(name)
    from verifier.threads import ensure_threads

    ensure_threads()


def warm_up(client: Any) -> None:
    """Import torch and the search modules on every worker connected now (they would otherwise be imported
    on each worker's first task, on the search's clock)."""
    client.run(_import_search_modules)


def connect(address: str, timeout: float = 30.0) -> Cluster:
    """A client of the existing Dask cluster whose scheduler listens at ``address`` (``tcp://HOST:PORT``)."""
    require_dask()
    from distributed import Client

    try:
        client = Client(address, timeout=timeout)
    except Exception as error:  # noqa: BLE001 - OSError, TimeoutError, ValueError for a bad address
        raise DistributedError(f"cannot reach the Dask scheduler at {address}: {type(error).__name__}: "
                               f"{str(error).splitlines()[0] if str(error) else 'no answer'}") from None
    return Cluster(client, None, f"the Dask scheduler at {address}")


def use_client(client: Any) -> Cluster:
    """Wrap a caller's own ``dask.distributed.Client`` (closing the result leaves the client open)."""
    wrapped = Cluster(client, None, f"the Dask scheduler at {client.scheduler.address}")
    wrapped.close = lambda timeout=10.0: None  # type: ignore[method-assign] - the caller owns it
    return wrapped


class ClusterStarter:
    """Starts a cluster in a background thread, so that its start-up overlaps the caller's own work (loading,
    attack, root bound); :meth:`get` waits for it until a monotonic ``end``, then returns it (or None)."""

    def __init__(self, start: Any):
        self._start = start
        self._cluster: Cluster | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self.started_at = time.monotonic()
        self.ready_after: float | None = None
        self._thread = threading.Thread(target=self._run, name="verifier-cluster-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._cluster = self._start()
            self.ready_after = time.monotonic() - self.started_at
        except VerifierError as error:
            self._error = error
        except BaseException as error:  # noqa: BLE001 - handed to whoever asks for the cluster, in one line
            detail = str(error).strip().splitlines()
            self._error = DistributedError(f"the Dask cluster could not start: {type(error).__name__}"
                                           + (f": {detail[0]}" if detail else ""))
        finally:
            self._done.set()

    def ready(self) -> bool:
        return self._done.is_set()

    @property
    def error(self) -> BaseException | None:
        """Why the start failed (None while it runs or when it succeeded)."""
        return self._error if self._done.is_set() else None

    def get(self, end: float | None = None) -> Cluster | None:
        """The cluster once started; None if ``end`` passes first; the start's error, if it failed."""
        timeout = None if end is None else max(0.0, end - time.monotonic())
        if not self._done.wait(timeout):
            return None
        if self._error is not None:
            raise self._error
        return self._cluster

    def close(self) -> None:
        """Close the cluster, also one whose start is still under way (in the background)."""
        if self._done.is_set():
            if self._cluster is not None:
                self._cluster.close()
            return

        def close_when_started() -> None:
            self._done.wait()
            if self._cluster is not None:
                self._cluster.close()

        threading.Thread(target=close_when_started, name="verifier-cluster-close", daemon=True).start()
