"""One instance's branch and bound over the workers of a Dask cluster: the coordinator.

For each problem (box group) the coordinator

1. bounds the root itself, exactly as a single process does (input splitting: CROWN/alpha-CROWN of the box;
   ReLU splitting: full alpha-CROWN, cases refuted on the whole box dropped), and keeps searching locally
   while the workers start (their start-up overlaps the loading, the attack and the root) until there are
   at least as many open domains as worker threads; an easy instance is decided before any task is sent;
2. cuts the open domains into one subtree per worker thread (:func:`verifier.distributed.frontier.split`:
   round robin, so each gets hard and easy ones) and sends them with the run's context, which each worker
   receives once (``scatter(..., broadcast=True)``);
3. keeps every worker busy: a worker searches its subtree for a time slice
   (:func:`verifier.distributed.worker.run_subtree`) and returns refuted, a counterexample, or its open
   domains, which go back into the queue (cut for the idle workers when some wait); an idle worker with
   nothing queued makes the coordinator ask the running subtree with the most domains to yield at once
   (a Dask ``Event``), and its frontier is shared out;
4. stops every worker at the first counterexample confirmed by onnxruntime (on the worker, then again
   here), answers ``unsat`` only when the :class:`~verifier.distributed.ledger.Ledger` says the refuted
   domains weigh exactly 1, and ``timeout`` at the run's deadline, start-up included.

A worker that dies (``KilledWorker``, a cancelled task), hangs past its slice (plus a grace) or disconnects
has its subtree re-queued as it was sent; a late or duplicate result is ignored. A subtree whose tasks
fail with an error of the search itself ``MAX_FAILURES`` times raises :class:`DistributedError` (a bug,
reported in one line, never an answer).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.complete.deadline import Deadline
from verifier.complete.float_sound import SOLVER_REFUTED, count_solver_refutations
from verifier.complete.problem import Problem
from verifier.complete.result import PAUSED, SAT, TIMEOUT, UNKNOWN, UNSAT, Counterexample
from verifier.complete.validate import validate
from verifier.distributed import frontier as frontiers
from verifier.distributed.cluster import Cluster, ClusterStarter, DistributedError
from verifier.distributed.ledger import Ledger, LedgerError, Subtree
from verifier.distributed.worker import SearchContext, SubtreeResult, SubtreeTask, make_search, run_subtree
from verifier.network import Network
from verifier.spec.specification import Specification

#: seconds a worker searches a subtree before it returns its open domains (unless asked to yield earlier)
SLICE_S = 8.0
#: a task that has not answered this long past its slice counts as hung: its subtree is re-queued
HANG_GRACE_S = 20.0
#: a subtree runs at least this long before it may be asked to yield to an idle worker
MIN_RUN_S = 0.5
#: failures of a subtree's tasks that are not lost workers before the run gives up with an error
MAX_FAILURES = 3
#: seconds kept back before the deadline to stop the workers and close a local cluster
SHUTDOWN_S = 2.0
#: errors that mean the worker (not the search) is gone
LOST = ("KilledWorker", "CancelledError", "FutureCancelledError", "CommClosedError", "StreamClosedError",
        "OSError", "TimeoutError")


@dataclass
class _InFlight:
    subtree: int
    attempt: int
    future: Any
    event: str
    started: float
    yielded: bool = False


class ParallelVerifier:
    """The cluster side of one verification run: the cluster (started in the background, or given), the
    context sent to the workers once, and the distributed search of each problem (:meth:`search`)."""

    def __init__(self, starter: ClusterStarter, network: Network, spec: Specification, stats: dict,
                 slice_s: float | None = None, hang_grace_s: float | None = None):
        self.starter = starter
        self.network = network
        self.spec = spec
        self.stats = stats
        self.slice_s = SLICE_S if slice_s is None else slice_s
        self.hang_grace_s = HANG_GRACE_S if hang_grace_s is None else hang_grace_s
        self.token = uuid.uuid4().hex
        self._context: Any = None
        self._context_key: tuple | None = None
        self.books: list[Ledger] = []   # one per search on the cluster (a problem may be searched twice)
        self.info: dict[str, Any] = {"tasks": 0, "results": 0, "yields": 0, "lost": 0, "hung": 0,
                                     "sent_mb": 0.0, "returned_mb": 0.0, "slices_s": self.slice_s}
        stats["distributed"] = self.info

    # -- cluster ----------------------------------------------------------------------------------------
    def _cluster(self, deadline: Deadline) -> Cluster | None:
        cluster = self.starter.get(deadline.end)
        if cluster is not None and "workers_ready_s" not in self.info and self.starter.ready_after is not None:
            self.info["workers_ready_s"] = round(self.starter.ready_after, 3)
        return cluster

    def _threads(self, cluster: Cluster) -> int:
        now = time.monotonic()
        if now - getattr(self, "_threads_at", 0.0) > 1.0:
            self._threads_cache, self._threads_at = cluster.nthreads(), now
            self.info["worker_threads"] = max(self.info.get("worker_threads", 0), self._threads_cache)
        return self._threads_cache

    def _context_future(self, cluster: Cluster, method: str, bound_network: Network, problems: list[Problem],
                        input_options: Any, batch: int | None, search_network: Network | None = None) -> Any:
        """The run's context on the workers, scattered once (again only if every copy was lost)."""
        self._context_args = (method, bound_network, problems, input_options, batch, search_network)
        key = (method, id(bound_network), id(problems), id(search_network))
        if self._context is not None and self._context_key == key and self._context.status == "finished":
            return self._context
        source = self.network.source
        onnx = Path(source).read_bytes() if source is not None else None
        context = SearchContext(self.token, method, bound_network, self.spec, problems, onnx=onnx,
                                reference=None if onnx is not None else self.network, input_options=input_options,
                                batch=batch, search_network=search_network)
        self._context = cluster.client.scatter(context, broadcast=True, hash=False)
        self.info["context_scattered"] = self.info.get("context_scattered", 0) + 1
        self._context_key = key
        return self._context

    def context_again(self, cluster: Cluster) -> Any:
        """The run's context, scattered again when every copy of it was lost (the workers holding it died; tasks
        depending on lost data would wait for ever)."""
        self._context = None
        return self._context_future(cluster, *self._context_args)

    def finish(self) -> None:
        """Note in the statistics a cluster that did not start (a run decided without it says so too)."""
        if self.starter.error is not None:
            self.info["cluster_error"] = str(self.starter.error)

    def elapsed(self) -> float:
        """Seconds since the cluster's start was asked for (the run's start)."""
        return time.monotonic() - self.starter.started_at

    # -- search -----------------------------------------------------------------------------------------
    def search(self, method: str, bound_network: Network, problems: list[Problem], index: int, deadline: Deadline,
               try_candidates: Callable, input_options: Any = None, batch: int | None = None,
               search_network: Network | None = None, milp_strategy: Any = None) -> tuple[str, Counterexample | None]:
        """Decide ``problems[index]`` with ``method`` (``input-split`` or ``relu-split``) over the cluster; returns
        ``(status, counterexample or None)`` as the single-process searches do. ``search_network``: float-sound
        ReLU splitting in a faster type (see :func:`verifier.bab.relu_split.relu_split_search`), on every
        worker too: each confirms its own refutations in float64 over the root bounds sent with its tasks.
        ``milp_strategy`` (ReLU splitting): the exact MILP's turn, as in one process, but run here beside the
        workers' search instead of pausing it (:class:`MilpBeside`)."""
        problem = problems[index]
        stats = self.stats
        local_stats: dict = {}
        local = make_search(SearchContext(self.token, method, bound_network, self.spec, problems,
                                          input_options=input_options, batch=batch, search_network=search_network),
                            bound_network, problem, local_stats, try_candidates)
        found = local.start()
        if found is not None:
            _merge_local(stats, local_stats)
            return found

        # (not without a deadline: HiGHS cannot be interrupted, and a solve could outlive the run by an hour)
        milp = MilpBeside(local, deadline, try_candidates, milp_strategy) \
            if milp_strategy is not None and method == "relu-split" and deadline.end is not None else None

        def grown() -> bool:  # enough open domains for every worker, once they are there (or the MILP decided)
            if milp is not None and milp.poll() is not None:
                return True
            if not self.starter.ready():
                return False
            cluster = self._cluster(deadline)
            return cluster is not None and local.open_count >= max(1, self._threads(cluster))

        status, witness = local.run(deadline, pause=grown)
        _merge_local(stats, local_stats)
        if milp is not None and milp.poll() is not None:
            return milp.answer(stats)
        self.info["coordinator_domains"] = self.info.get("coordinator_domains", 0) + int(local_stats.get("domains", 0))
        if status != PAUSED:
            if milp is not None:
                milp.end(stats)
            return status, witness
        cluster = self._cluster(deadline)
        if cluster is None:
            if milp is not None:
                milp.end(stats)
            return TIMEOUT, None
        ledger = Ledger()
        self.books.append(ledger)
        ledger.close_locally(local.closed, getattr(local, "stuck", {}))
        remaining = frontiers.portable(local.frontier())
        for piece in frontiers.split(remaining, max(1, self._threads(cluster))):
            ledger.open(piece)
        ledger.check()
        keep_cases = getattr(local, "keep_cases", None)
        confirmation = getattr(local, "confirmation", None)
        confirm_bounds = confirmation.root_bounds if confirmation is not None else None
        context = self._context_future(cluster, method, bound_network, problems, input_options, batch,
                                       search_network)
        self.info.setdefault("distributed_from_s", round(self.elapsed(), 3))
        return _Run(self, cluster, context, ledger, problem, index, keep_cases, deadline, confirm_bounds, milp).loop()


class MilpBeside:
    """The exact MILP's turn of the automatic strategy (:func:`verifier.bab.milp.milp_phase`) in a thread of the
    coordinator, beside the workers' branch and bound: it starts when one process would hand over to it (after
    the search's short start), over the same root bounds (float64 under float soundness), and its budget is
    the same (all the time left when few ReLUs are unstable on few inputs, else its share). One process
    pauses the search for it; here the workers go on (less one thread while the MILP runs alone where the
    workers on this machine take every core: :meth:`_Run._beside_milp`), and whichever decides first
    answers. HiGHS releases the GIL, so the coordinator keeps serving the workers meanwhile. When the search
    ends first, the MILP is told to stop; a solve under way cannot be interrupted and runs on, in a daemon
    thread, to the run's deadline at the latest (so a run without a deadline gets no MILP beside its workers)."""

    def __init__(self, local: Any, deadline: Deadline, try_candidates: Callable, strategy: Any):
        self.local, self.deadline, self.try_candidates, self.strategy = local, deadline, try_candidates, strategy
        self.start_at = strategy.start_time(deadline)
        self.stats: dict = {}
        self.thread: threading.Thread | None = None
        self.result: tuple[str, Counterexample | None] | None = None
        self.finished = False
        self.stopped = threading.Event()

    def poll(self) -> str | None:
        """Start the MILP once its time has come and the root is bounded; ``sat`` or ``unsat`` once it has
        decided the problem, else None."""
        if self.thread is None and not self.stopped.is_set() and self.local.root is not None \
                and time.monotonic() >= self.start_at:
            self.thread = threading.Thread(target=self._run, name="verifier-milp", daemon=True)
            self.thread.start()
        if self.finished and self.result is not None and self.result[0] in (SAT, UNSAT):
            return self.result[0]
        return None

    def _run(self) -> None:
        from verifier.bab.milp import milp_phase

        local = self.local
        try:
            exact = local.confirmation.search if local.confirmation is not None else local.search
            bounds = local.root64.bounds if local.confirmation is not None else local.root.bounds
            self.result = milp_phase(exact.graph, exact.problem, bounds, exact.root_bounds.get(exact.graph.output_name),
                                     self.deadline, self.try_candidates, self.stats, self.strategy,
                                     stop=self.stopped.is_set)
        finally:
            self.finished = True

    @property
    def alone(self) -> bool:
        """Whether the MILP is running with all the time left (few unstable ReLUs on few inputs: the strategy
        that one process would follow without branch and bound beside it)."""
        stats = self.stats if self.stats is not None else {}
        return self.thread is not None and not self.finished and stats.get("milp", {}).get("mode") == "alone"

    def answer(self, stats: dict) -> tuple[str, Counterexample | None]:
        """The MILP's verdict, its statistics merged into the run's."""
        self.merge(stats)
        stats["decided_by"] = "milp"
        return self.result

    def end(self, stats: dict) -> None:
        """The search has ended: no MILP starts any more, a running one gives up before its next case, and a
        finished one's statistics go into the run's."""
        self.stopped.set()
        self.merge(stats)

    def merge(self, stats: dict) -> None:
        """The MILP's statistics (its time, binaries, optima; refutations accepted to its tolerances) into the
        run's, once it has finished (a MILP still running keeps its own)."""
        if not self.finished or self.stats is None:
            return
        for key, value in self.stats.items():
            if key == SOLVER_REFUTED:
                count_solver_refutations(stats, value)
            else:
                stats[key] = value
        self.stats = None


def available_cores() -> int:
    """The CPU cores this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _merge_local(stats: dict, local_stats: dict) -> None:
    """The coordinator's own search statistics into the run's (domains add up over problems)."""
    for key, value in local_stats.items():
        if key == "domains":
            stats["domains"] = stats.get("domains", 0) + value
        elif key == "max_open":
            stats["max_open"] = max(stats.get("max_open", 0), value)
        elif key != "open_domains":
            stats[key] = value


class _Run:
    """The coordinator's loop for one problem (see the module docstring)."""

    def __init__(self, owner: ParallelVerifier, cluster: Cluster, context: Any, ledger: Ledger, problem: Problem,
                 index: int, keep_cases: Any, deadline: Deadline, confirm_bounds: dict | None = None,
                 milp: MilpBeside | None = None):
        self.milp = milp
        self.owner, self.cluster, self.client, self.context = owner, cluster, cluster.client, context
        self.confirm_bounds = confirm_bounds
        self.ledger, self.problem, self.index, self.keep_cases, self.deadline = ledger, problem, index, keep_cases, \
            deadline
        self.info = owner.info
        self.in_flight: dict[str, _InFlight] = {}
        self.search_number = len(owner.books)   # this search's ledger is the last of the run's books
        # kept back to stop the workers (and close a local cluster) before the deadline
        total = 0.0 if deadline.end is None else deadline.end - deadline.start
        self.reserve = min(SHUTDOWN_S, 0.05 * total)
        self.done: queue.Queue[str] = queue.Queue()
        self.threads_here: int | None = None   # worker threads on this machine, asked once when needed

    def loop(self) -> tuple[str, Counterexample | None]:
        stats, ledger = self.owner.stats, self.ledger
        started, cpu_started = time.monotonic(), time.process_time()
        try:
            while True:
                if ledger.proved():
                    return UNSAT, None
                if self.milp is not None and self.milp.poll() is not None:
                    return self.milp.answer(stats)
                if not ledger.open_subtrees():  # all settled, some undecided
                    stats["unknown_reason"] = (f"{ledger.undecided_domains} domains with every ReLU phase fixed "
                                               "were neither proved by the linear program nor gave a valid "
                                               "counterexample")
                    return UNKNOWN, None
                if self.deadline.expired(self.reserve):
                    stats["open_domains"] = ledger.open_domains()
                    return TIMEOUT, None
                threads = self._beside_milp(max(1, self.owner._threads(self.cluster)))
                self._dispatch(threads)
                self._ask_to_yield(threads)
                self._check_hung()
                try:
                    key = self.done.get(timeout=max(0.0, min(0.2, self.deadline.remaining())))
                except queue.Empty:
                    continue
                answer = self._handle(key)
                if answer is not None:
                    return answer
        finally:
            self._stop_all()
            if self.milp is not None:
                self.milp.end(stats)
            self.info["ledger"] = [book.summary() for book in self.owner.books]
            spent = time.monotonic() - started
            self.info["distributed_s"] = round(self.info.get("distributed_s", 0.0) + spent, 3)
            # this process's CPU seconds so far: loading, root, its own search, and the scheduler's and nannies'
            # threads of a local cluster; during the distributed phase it competes with the workers for cores
            self.info["coordinator_cpu_s"] = round(time.process_time(), 3)
            self.info["coordinator_cpu_distributed_s"] = round(
                self.info.get("coordinator_cpu_distributed_s", 0.0) + time.process_time() - cpu_started, 3)
            threads = max(1, self.info.get("worker_threads", 1))
            # the share of the worker threads' time spent searching while subtrees were farmed out
            self.info["utilisation"] = round(self.info.get("worker_busy_s", 0.0)
                                             / max(1e-9, threads * self.info["distributed_s"]), 3)

    def _beside_milp(self, threads: int) -> int:
        """The worker threads to use: ``threads``, less one while the MILP runs alone where the workers on this
        machine already take every core, so that HiGHS has a core to itself (as in one process) and the search
        goes on on the others. A task beyond the threads left is asked to yield its domains."""
        if self.milp is None or not self.milp.alone:
            return threads
        if self.threads_here is None:
            self.threads_here = self.cluster.threads_on_this_machine()
        held = 1 if self.threads_here + 1 > available_cores() else 0
        if held and "held_for_milp" not in self.info:
            self.info["held_for_milp"] = held
            self.info["held_for_milp_at_s"] = round(self.owner.elapsed(), 3)
        running = [e for e in self.in_flight.values() if not e.yielded]
        for entry in sorted(running, key=lambda e: e.started)[: max(0, len(running) - (threads - held))]:
            self._signal(entry)
        return threads - held

    # -- sending ----------------------------------------------------------------------------------------
    def _dispatch(self, threads: int) -> None:
        """Send the largest queued subtrees while worker threads are free."""
        while len(self.in_flight) < threads:
            queued = self.ledger.queued()
            if not queued:
                return
            self._send(max(queued, key=lambda s: s.count))

    def _send(self, subtree: Subtree) -> None:
        attempt = self.ledger.start(subtree)
        # unique within the run: a problem searched again (input splitting resumed after the MILP's turn)
        # starts its subtree ids afresh, and a key or yield event of the earlier search must not be reused
        name = f"verifier-{self.owner.token}-{self.search_number}-{self.index}-{subtree.id}-{attempt}"
        task = SubtreeTask(subtree.id, attempt, self.index, subtree.domains, self.owner.slice_s,
                           max(0.0, self.deadline.remaining()), keep_cases=self.keep_cases, yield_event=name,
                           confirm_bounds=self.confirm_bounds)
        if self.context.status != "finished":  # lost with the workers that held it: send it again first
            self.context = self.owner.context_again(self.cluster)
        with warnings.catch_warnings():   # a subtree of a few MiB is what the task is for, not a misuse of Dask
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            future = self.client.submit(run_subtree, self.context, task, key=name, pure=False)
        self.in_flight[name] = _InFlight(subtree.id, attempt, future, name, time.monotonic())
        future.add_done_callback(lambda _, key=name: self.done.put(key))
        self.info["tasks"] += 1
        self.info["sent_mb"] += frontiers.nbytes(subtree.domains) / 2**20

    def _signal(self, entry: _InFlight) -> None:
        """Ask a running task to stop at its next step (it then returns its open domains)."""
        from distributed import Event

        try:
            Event(entry.event, client=self.client).set()
            entry.yielded = True
        except Exception:  # noqa: BLE001 - its slice ends it anyway
            pass

    def _ask_to_yield(self, threads: int) -> None:
        """Idle worker threads and nothing queued: the longest-running subtrees with the most domains yield."""
        idle = threads - len(self.in_flight)
        if idle <= 0 or self.ledger.queued():
            return
        now = time.monotonic()
        asked = sum(1 for e in self.in_flight.values() if e.yielded)
        candidates = [e for e in self.in_flight.values()
                      if not e.yielded and now - e.started >= MIN_RUN_S and self.ledger.is_open(e.subtree)]
        candidates.sort(key=lambda e: -self.ledger.subtrees[e.subtree].count)
        for entry in candidates[: max(0, idle - asked)]:
            self._signal(entry)
            self.info["yields"] += 1

    def _check_hung(self) -> None:
        limit = self.owner.slice_s + self.owner.hang_grace_s
        now = time.monotonic()
        for name, entry in list(self.in_flight.items()):
            if now - entry.started > limit:
                self.in_flight.pop(name)
                entry.future.cancel()
                if self.ledger.requeue(entry.subtree, entry.attempt, f"no answer {limit:g} s after it was sent"):
                    self.info["hung"] += 1

    def _stop_all(self) -> None:
        """Stop every task in flight: tell it to yield (for an existing cluster's running threads) and cancel."""
        entries = list(self.in_flight.values())
        self.in_flight.clear()
        for entry in entries:
            self._signal(entry)
        if entries:
            try:
                self.client.cancel([e.future for e in entries])
            except Exception:  # noqa: BLE001 - a scheduler gone away
                pass
        if entries:
            threading.Thread(target=_clear_events, args=(self.client, [e.event for e in entries]),
                             daemon=True).start()

    # -- receiving --------------------------------------------------------------------------------------
    def _handle(self, name: str) -> tuple[str, Counterexample | None] | None:
        entry = self.in_flight.pop(name, None)
        if entry is None:  # given up on already (hung) or stopped
            return None
        future, ledger = entry.future, self.ledger
        if entry.yielded:
            _clear_events(self.client, [entry.event])
        if future.status != "finished":
            error = future.exception() if future.status == "error" else None
            kind = type(error).__name__ if error is not None else "CancelledError"
            lost = error is None or kind in LOST or isinstance(error, (OSError, TimeoutError))
            if ledger.requeue(entry.subtree, entry.attempt, f"{kind}: {error}" if error else "cancelled"):
                if lost:
                    self.info["lost"] += 1
                else:
                    subtree = ledger.subtrees[entry.subtree]
                    if subtree.failures >= MAX_FAILURES:
                        raise DistributedError(f"subtree {subtree.id} failed {subtree.failures} times on the workers; "
                                               f"last: {kind}: {str(error).splitlines()[0] if str(error) else ''}")
            return None
        result: SubtreeResult = future.result()
        self.info["results"] += 1
        stats = self.owner.stats
        stats["domains"] = stats.get("domains", 0) + result.visited
        self.info["worker_domains"] = self.info.get("worker_domains", 0) + result.visited
        self.info["worker_busy_s"] = round(self.info.get("worker_busy_s", 0.0) + result.seconds, 3)
        cpu = self.info.setdefault("worker_cpu", {})   # per worker, the latest (largest) process CPU time
        cpu[result.worker] = max(cpu.get(result.worker, 0.0), round(result.process_cpu_s, 3))
        self.info["worker_cpu_s"] = round(sum(cpu.values()), 3)
        self.info.setdefault("first_result_s", round(self.owner.elapsed(), 3))
        self.info["returned_mb"] += frontiers.nbytes(result.remaining) / 2**20
        if result.confirmed or result.reopened:  # float-sound: the workers' float64 confirmations
            self.info["worker_confirmed"] = self.info.get("worker_confirmed", 0) + result.confirmed
            self.info["worker_reopened"] = self.info.get("worker_reopened", 0) + result.reopened
        if not ledger.is_open(result.subtree):
            ledger.ignored += 1
            return None
        count_solver_refutations(stats, result.solver_refuted)   # float_sound="auto": the proof's label counts them
        if result.status == SAT:
            witness = self._confirm(result.witness)
            if witness is not None:
                self.info["counterexample_from"] = result.worker
                return SAT, witness
            ledger.requeue(entry.subtree, entry.attempt, "its counterexample was not confirmed by the coordinator")
            return None
        if result.status == TIMEOUT:  # out of time there: the subtree stays open (the run's deadline decides)
            ledger.requeue(entry.subtree, entry.attempt, "the worker ran out of time")
            return None
        if result.status == UNKNOWN and frontiers.size(result.remaining):
            stats["unknown_reason"] = result.reason or "a worker gave up on its subtree"
            return UNKNOWN, None
        threads = max(1, self.owner._threads(self.cluster))
        idle = threads - len(self.in_flight) - len(ledger.queued())
        try:
            ledger.settle(result.subtree, result.refuted, result.undecided, result.remaining, pieces=max(1, idle))
        except LedgerError as error:
            raise DistributedError(f"the distributed search lost track of its domains: {error}") from None
        for other_name, other in list(self.in_flight.items()):  # other attempts of it are moot now
            if other.subtree == result.subtree:
                self.in_flight.pop(other_name)
                self._signal(other)
                other.future.cancel()
        return None

    def _confirm(self, witness: Counterexample | None) -> Counterexample | None:
        """The worker's counterexample checked once more here, by onnxruntime on the original model."""
        if witness is None:
            return None
        return validate(self.owner.network, self.owner.spec, witness.x, self.problem.exact_lower,
                        self.problem.exact_upper)


def _clear_events(client: Any, names: list[str]) -> None:
    """Forget yield events on the scheduler (they are kept until cleared)."""
    from distributed import Event

    for name in names:
        try:
            Event(name, client=client).clear()
        except Exception:  # noqa: BLE001 - best effort
            pass
