"""Executors: where benchmark tasks run. The runner needs only ``submit(task) -> Future[Outcome]``.

:class:`LocalExecutor` runs tasks on this machine through the standard library's process pool
(:class:`concurrent.futures.ProcessPoolExecutor`, ``jobs`` workers, spawned). Each worker only *supervises*:
it starts the instance's own verifier process (fresh, or forked by the worker's own warm fork server),
enforces the deadline and checks the witness (:func:`verifier.bench.worker.run_task`), so a crash, hang or
out-of-memory kill of an instance never takes a worker, the pool or the run down with it; workers, their fork
servers and instances die with the run if it is killed.

A distributed engine (a cluster queue, Ray, Dask...) takes the place of :class:`LocalExecutor` by
implementing :class:`Executor` around the same :func:`run_task`.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol

from verifier.bench.outcome import Outcome
from verifier.bench.worker import Task, die_with_parent, run_task
from verifier.errors import OptionError


class Executor(Protocol):
    """Runs benchmark tasks somewhere and hands back futures of their outcomes.

    ``jobs``: how many tasks it runs at once (the runner keeps that many submitted). ``restart()``: replace a
    broken executor (e.g. a worker process died) by a fresh one; tasks in flight are lost and resubmitted.
    ``shutdown(wait)``: release the workers, after the running tasks end if ``wait``.
    """

    jobs: int

    def submit(self, task: Task) -> Future[Outcome]: ...

    def restart(self) -> None: ...

    def shutdown(self, wait: bool = True) -> None: ...


class LocalExecutor:
    """``jobs`` instances at a time on this machine, each supervised by a worker of a process pool."""

    def __init__(self, jobs: int = 1):
        if jobs < 1:
            raise OptionError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the runner has torch loaded, and a worker needs none of it
        return ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=die_with_parent)

    def submit(self, task: Task) -> Future[Outcome]:
        return self._pool.submit(run_task, task)

    def restart(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers; with ``wait`` after the tasks running now (the others are cancelled)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


class InlineExecutor:
    """Runs each task at once in the calling process (still one verifier process per instance); for tests and
    debugging, where a pool's start-up is not worth it."""

    jobs = 1

    def submit(self, task: Task) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        try:
            future.set_result(run_task(task))
        except BaseException as error:  # noqa: BLE001 - handed to the runner like a pool would
            future.set_exception(error)
        return future

    def restart(self) -> None:
        pass

    def shutdown(self, wait: bool = True) -> None:
        pass
