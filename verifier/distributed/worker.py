"""The worker's side of a distributed search: run the existing branch and bound on one subtree for a time slice.

A worker receives the :class:`SearchContext` once (the network, the property, the problems, the search's
options; broadcast by the coordinator and kept in the worker's memory by Dask) and then any number of
:class:`SubtreeTask` (a subtree's open domains, a slice, the time left). For each it builds the search the
problem takes (input splitting, or ReLU splitting with beta-CROWN), adds the domains, runs until the slice
ends, the coordinator asks it to yield (a Dask ``Event``), the deadline passes or a verdict, and returns a
:class:`SubtreeResult`: ``unsat`` (the subtree is refuted), ``sat`` with a counterexample that onnxruntime
confirmed here (the coordinator checks it again), or ``paused`` with the open domains left, always with the
domains refuted and left undecided counted by depth, for the ledger.

Counterexamples are validated exactly as in a single process: the ONNX file travels in the context (as
bytes, written once per worker to a temporary file), so onnxruntime runs on the original model here too.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from verifier.cancel import TimeLimitReached, time_limit
from verifier.complete.deadline import Deadline
from verifier.complete.float_sound import SOLVER_REFUTED
from verifier.complete.problem import Problem
from verifier.complete.result import PAUSED, TIMEOUT, Counterexample
from verifier.complete.validate import validate
from verifier.network import Network
from verifier.spec.specification import Specification

#: seconds between two looks at the coordinator's yield signal (each is a round trip to the scheduler)
YIELD_POLL_S = 0.25


@dataclass
class SearchContext:
    """What every task of one verification run shares, sent to each worker once: ``token`` names the run;
    ``method``: ``input-split`` or ``relu-split``; ``network``: the network the search bounds (its dtype
    chosen by the coordinator); ``onnx``: the original model file's bytes (for onnxruntime), or None with
    ``reference``, the network to run candidates through when there is no file; the property ``spec`` and its
    ``problems`` (one per box group); the searches' options."""

    token: str
    method: str
    network: Network
    spec: Specification
    problems: list[Problem]
    onnx: bytes | None = None
    reference: Network | None = None
    input_options: Any = None
    batch: int | None = None
    #: float-sound ReLU splitting: ``network`` in the faster type the search runs in (``network`` and the
    #: problems are then the float64 ones, with their rounding models, that every refutation is confirmed in)
    search_network: Network | None = None


@dataclass
class SubtreeTask:
    """One subtree to search: its ``subtree`` id and ``attempt`` number (echoed in the result), the
    ``problem`` (index into the context's), the cases still open (``keep_cases``, for ReLU splitting), the
    open ``domains`` (a frontier), the ``slice_s`` after which to stop, the ``deadline_s`` of the whole run
    (seconds left when sent) and the name of the ``yield_event`` the coordinator sets to stop it early."""

    subtree: int
    attempt: int
    problem: int
    domains: Any
    slice_s: float
    deadline_s: float
    keep_cases: torch.Tensor | None = None
    yield_event: str | None = None
    #: float-sound ReLU splitting: the float64 root's pre-activation bounds every confirmation runs over
    confirm_bounds: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None


@dataclass
class SubtreeResult:
    """What a worker made of a subtree: ``status`` (``unsat``, ``sat``, ``paused``, ``unknown`` or ``timeout``),
    the ``witness`` for sat, the open domains ``remaining`` (paused), the domains ``refuted`` and left
    ``undecided`` by depth, the domains bounded (``visited``), seconds spent, the worker's address."""

    subtree: int
    attempt: int
    status: str
    witness: Counterexample | None = None
    remaining: Any = None
    refuted: Counter = field(default_factory=Counter)
    undecided: Counter = field(default_factory=Counter)
    visited: int = 0
    received: int = 0
    seconds: float = 0.0
    worker: str = ""
    reason: str = ""
    #: the worker process's CPU seconds so far, start-up included (its parent may not be the coordinator)
    process_cpu_s: float = 0.0
    #: float-sound ReLU splitting: refuting rows confirmed in float64, and those float64 did not confirm
    confirmed: int = 0
    reopened: int = 0
    #: float_sound="auto": refutations accepted to the LP's tolerances, by solver
    solver_refuted: dict = field(default_factory=dict)


class _WorkerState:
    """What a worker derives from a context once: the network candidates are validated on (with the ONNX
    file written to a private temporary folder)."""

    def __init__(self, context: SearchContext):
        from verifier.threads import ensure_threads

        ensure_threads()   # (and the allocator thresholds, verifier.threads.tune_malloc)
        self.folder = None
        if context.onnx is not None:
            self.folder = tempfile.mkdtemp(prefix="verifier-worker-")
            path = os.path.join(self.folder, "model.onnx")
            with open(path, "wb") as handle:
                handle.write(context.onnx)
            self.reference = Network(context.network.graph, source=path)
        else:
            self.reference = context.reference if context.reference is not None else context.network

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


_states: dict[str, _WorkerState] = {}
_lock = threading.Lock()
#: contexts a worker keeps derived state for (the oldest is dropped beyond this)
KEEP_CONTEXTS = 4


def _state(context: SearchContext) -> _WorkerState:
    with _lock:
        state = _states.get(context.token)
        if state is None:
            while len(_states) >= KEEP_CONTEXTS:
                _states.pop(next(iter(_states))).close()
            state = _states[context.token] = _WorkerState(context)
        return state


@atexit.register
def _cleanup() -> None:
    for state in _states.values():
        state.close()


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _yield_signal(name: str | None):
    """A function telling whether the coordinator has set the event ``name`` (looked up at most every
    ``YIELD_POLL_S``); None outside a Dask worker."""
    if name is None:
        return None
    try:
        from distributed import Event, get_worker

        get_worker()
        event = Event(name)
    except (ImportError, ValueError):
        return None
    seen, last = [False], [0.0]

    def is_set() -> bool:
        now = time.monotonic()
        if not seen[0] and now - last[0] >= YIELD_POLL_S:
            last[0] = now
            try:
                seen[0] = bool(event.is_set())
            except Exception:  # noqa: BLE001 - scheduler unreachable: the slice's end stops us anyway
                pass
        return seen[0]

    return is_set


def make_search(context: SearchContext, network: Network, problem: Problem, stats: dict, try_candidates,
                confirm_bounds: dict | None = None):
    """The search object the context's method takes, for ``problem``. Under float-sound ReLU splitting
    (``context.search_network``) it searches in that network's type and confirms in ``network``'s, over the
    float64 root bounds ``confirm_bounds`` (a worker's; the coordinator's search bounds the root itself)."""
    if context.method == "input-split":
        from verifier.bab.input_split import InputSplitOptions, InputSplitSearch

        options = copy.copy(context.input_options) if context.input_options is not None else InputSplitOptions()
        return InputSplitSearch(network, problem, options, stats, try_candidates)
    from verifier.bab.relu_split import ReluSplitSearch

    search = ReluSplitSearch(network, problem, stats, try_candidates, context.batch,
                             search_network=context.search_network)
    if search.confirmation is not None and confirm_bounds is not None:
        search.confirmation.root_bounds = confirm_bounds
    return search


def candidate_checker(reference: Network, spec: Specification, problem: Problem):
    """``try_candidates(points)``: the first of (up to 8) points that onnxruntime confirms violates the property,
    as a :class:`Counterexample`, or None (as in the single-process search)."""

    def try_candidates(points: torch.Tensor) -> Counterexample | None:
        for point in points[:8]:
            witness = validate(reference, spec, point.detach().double().numpy(), problem.exact_lower,
                               problem.exact_upper)
            if witness is not None:
                return witness
        return None

    return try_candidates


def run_subtree(context: SearchContext, task: SubtreeTask) -> SubtreeResult:
    """The Dask task: search ``task``'s subtree until its slice ends (see the module docstring)."""
    received = time.monotonic()
    state = _state(context)
    problem = context.problems[task.problem]
    stats: dict = {}
    search = make_search(context, context.network, problem, stats,
                         candidate_checker(state.reference, context.spec, problem), task.confirm_bounds)
    if getattr(search, "confirmation", None) is not None and task.confirm_bounds is None:
        raise ValueError("a float-sound subtree was sent without the float64 root bounds its confirmations need")
    if task.keep_cases is not None:
        search.restrict(task.keep_cases)
    deadline = Deadline(max(0.0, task.deadline_s - (time.monotonic() - received)))
    slice_end = received + task.slice_s
    signal = _yield_signal(task.yield_event)

    first = [True]

    def pause() -> bool:  # never before the first step: every task makes progress, however soon it is asked
        if first[0]:
            first[0] = False
            return False
        return time.monotonic() >= slice_end or (signal is not None and signal())

    result = SubtreeResult(task.subtree, task.attempt, TIMEOUT, worker=_worker_address())
    try:
        with time_limit(deadline.end):
            search.add(task.domains)
            result.received = search.open_count
            status, witness = search.run(deadline, pause)
    except TimeLimitReached:
        status, witness = TIMEOUT, None
    result.status, result.witness = status, witness
    result.refuted, result.undecided = Counter(search.closed), Counter(getattr(search, "stuck", Counter()))
    result.visited = int(stats.get("domains", 0))
    result.reason = str(stats.get("unknown_reason", ""))
    if status == PAUSED or (status != TIMEOUT and search.open_count):
        from verifier.distributed.frontier import portable

        remaining = search.frontier()
        result.remaining = None if remaining is None else portable(remaining)
    confirmation = stats.get("float_sound_confirmation")
    if confirmation is not None:
        result.confirmed, result.reopened = int(confirmation["confirmed"]), int(confirmation["reopened"])
    result.solver_refuted = dict(stats.get(SOLVER_REFUTED, {}))
    result.seconds = time.monotonic() - received
    result.process_cpu_s = time.process_time()
    return result
