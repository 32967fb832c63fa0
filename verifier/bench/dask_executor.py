"""Benchmark instances on a Dask cluster: each instance is one Dask task that runs the same isolated instance
process under the same hard deadline as a local run (:func:`verifier.bench.worker.run_task`) on one of the
cluster's workers, which only supervises it.

The submitting process keeps the books: the runner appends each outcome to ``results.csv`` (written and
fsync-ed) as its future completes, so ``--resume``, scoring and the reports are the same as for local runs.
The cluster runs as many instances at once as it has worker threads; instances wait in the runner, not in
the scheduler, so results.csv fills in file order as far as the timings allow.

**A worker lost mid-instance** (killed, out of memory, its machine gone) costs that instance one re-run,
recorded in its row's message; lost a second time it is recorded as ``error``. On a local cluster
(``allowed_failures=0``) the loss arrives as ``KilledWorker`` and the task is re-submitted here; a cluster
configured to re-run tasks itself does so silently, which the executor notices from the *start events*
each task logs (``Worker.log_event``) and records the same way, cancelling a third start.

The workers need the benchmark files at the same paths as the submitting machine (a shared filesystem, as
on SLURM clusters); the instance's artifacts (result file, stdout, stderr) are written on the worker, at
the output folder's path.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from typing import Any

from verifier.bench.outcome import Outcome
from verifier.bench.worker import Task, _now, run_task
from verifier.distributed.cluster import Cluster

#: the event topic on which tasks announce their start
TOPIC = "verifier-bench-start"
#: attempts an instance gets when its worker is lost (the first run and one re-run)
MAX_ATTEMPTS = 2


def run_task_on_worker(task: Task, token: str) -> Outcome:
    """The Dask task: announce the start (worker address), check the instance's files are here, run it."""
    import socket

    try:
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(TOPIC, {"token": token, "worker": worker.address})
    except (ImportError, ValueError):  # not on a Dask worker (called directly)
        pass
    instance = task.instance
    for path in (instance.onnx_path, instance.vnnlib_path):
        if not path.is_file():
            return Outcome(instance.category, instance.onnx, instance.vnnlib, result="error", runtime_s=0.0,
                           timeout_s=task.timeout, finished_at=_now(),
                           message=f"{path} not found on the worker at {socket.gethostname()}: the cluster's "
                                   "workers need the benchmark files at the same path (a shared filesystem)")
    return run_task(task)


class _Attempt:
    """One submission of a task: its Dask future, the runner's future it resolves, and what came before."""

    def __init__(self, task: Task, result: Future, number: int, note: str):
        self.task, self.result, self.number, self.note = task, result, number, note
        self.dask_future: Any = None
        self.starts: list[str] = []


class DaskExecutor:
    """The runner's :class:`verifier.bench.executor.Executor` on a Dask cluster (see the module docstring).

    ``jobs`` is the cluster's worker threads (at least 1), looked up at most once a second, so a cluster
    that grows (dask-jobqueue, adaptive) gets more instances at once. :meth:`shutdown` cancels what is in
    flight and closes the connection (and the cluster, if it owns a local one).
    """

    def __init__(self, cluster: Cluster, wait_for_workers: float = 120.0):
        self.cluster = cluster
        self.client = cluster.client
        if wait_for_workers:
            cluster.wait_for_workers(1, timeout=wait_for_workers)
        self._lock = threading.Lock()
        self._attempts: dict[str, _Attempt] = {}
        self._closed = False
        self._jobs, self._jobs_at = 1, 0.0
        self.reruns = 0
        self.client.subscribe_topic(TOPIC, self._on_start)

    @property
    def jobs(self) -> int:
        now = time.monotonic()
        if now - self._jobs_at > 1.0:
            self._jobs, self._jobs_at = max(1, self.cluster.nthreads()), now
        return self._jobs

    def submit(self, task: Task) -> Future[Outcome]:
        result: Future[Outcome] = Future()
        self._launch(_Attempt(task, result, 1, ""))
        return result

    def _launch(self, attempt: _Attempt) -> None:
        token = f"verifier-bench-{uuid.uuid4().hex}"
        with self._lock:
            self._attempts[token] = attempt
        try:
            attempt.dask_future = self.client.submit(run_task_on_worker, attempt.task, token, key=token, pure=False)
        except Exception as error:  # noqa: BLE001 - the scheduler is gone: the runner records it
            with self._lock:
                self._attempts.pop(token, None)
            _fail(attempt.result, error)
            return
        attempt.dask_future.add_done_callback(lambda done: self._on_done(token, done))

    def _on_start(self, event: tuple[float, dict]) -> None:
        """A task started on a worker (runs in the client's event loop: quick, no blocking calls)."""
        _, message = event
        token, worker = message.get("token"), message.get("worker", "?")
        with self._lock:
            attempt = self._attempts.get(token)
            if attempt is None:
                return
            attempt.starts.append(worker)
            third = len(attempt.starts) + attempt.number - 1 > MAX_ATTEMPTS
        if third:  # the cluster re-ran it on its own after a second loss
            threading.Thread(target=self._give_up, args=(token, "the cluster started it a third time"),
                             daemon=True).start()

    def _give_up(self, token: str, why: str) -> None:
        with self._lock:
            attempt = self._attempts.pop(token, None)
        if attempt is None:
            return
        attempt.dask_future.cancel()
        lost = ", ".join(attempt.starts)
        self._resolve(attempt, self._lost(attempt.task, f"the worker running it was lost twice ({lost}); {why}"))

    def _on_done(self, token: str, done: Any) -> None:
        with self._lock:
            attempt = self._attempts.pop(token, None)
        if attempt is None:  # given up on already
            return
        status = done.status
        if status == "finished":
            try:
                outcome = done.result()
            except Exception as error:  # noqa: BLE001 - the result could not be fetched
                _fail(attempt.result, error)
                return
            note = attempt.note
            if len(attempt.starts) > 1:  # the cluster re-ran it itself: the first worker was lost
                note = f"re-run once: the worker running it ({attempt.starts[0]}) was lost"
                self.reruns += 1
            if note:
                outcome = replace(outcome, message=f"{note}; {outcome.message}" if outcome.message else note)
            self._resolve(attempt, outcome)
            return
        if self._closed:
            attempt.result.cancel()
            return
        error = done.exception() if status == "error" else None
        if error is not None and type(error).__name__ != "KilledWorker":
            _fail(attempt.result, error)  # the task itself failed (run_task never raises for an instance)
            return
        where = getattr(getattr(error, "last_worker", None), "address", None) or (attempt.starts or ["?"])[-1]
        why = "the worker running it was lost" if status == "error" else "its task was cancelled by the cluster"
        if attempt.number + max(0, len(attempt.starts) - 1) >= MAX_ATTEMPTS:
            self._resolve(attempt, self._lost(attempt.task, f"{why} twice (last {where})"))
            return
        self.reruns += 1
        self._launch(_Attempt(attempt.task, attempt.result, attempt.number + 1, f"re-run once: {why} ({where})"))

    @staticmethod
    def _resolve(attempt: _Attempt, outcome: Outcome) -> None:
        try:
            attempt.result.set_result(outcome)
        except InvalidStateError:  # the runner cancelled it meanwhile
            pass

    @staticmethod
    def _lost(task: Task, message: str) -> Outcome:
        instance = task.instance
        return Outcome(instance.category, instance.onnx, instance.vnnlib, result="error", runtime_s=0.0,
                       timeout_s=task.timeout, message=message, finished_at=_now())

    def restart(self) -> None:
        """Nothing to restart: a lost worker costs only its own task, handled above."""

    def shutdown(self, wait: bool = True) -> None:
        """Cancel the tasks in flight and disconnect (closing an owned local cluster)."""
        self._closed = True
        with self._lock:
            attempts = list(self._attempts.values())
            self._attempts.clear()
        futures = [a.dask_future for a in attempts if a.dask_future is not None]
        try:
            if futures:
                self.client.cancel(futures)
            self.client.unsubscribe_topic(TOPIC)
        except Exception:  # noqa: BLE001 - a scheduler already gone
            pass
        for attempt in attempts:
            attempt.result.cancel()
        self.cluster.close()


def _fail(result: Future, error: BaseException) -> None:
    try:
        result.set_exception(error)
    except InvalidStateError:  # the runner cancelled it meanwhile
        pass
