"""The benchmark run: instances -> executor -> results.csv (as each ends) -> scores -> summary.md, cactus.png.

:func:`run_benchmark` keeps ``executor.jobs`` instances in flight, appends each outcome to ``results.csv`` as
soon as it arrives, shows progress (done, solved so far, time left), and at the end scores every recorded
outcome of the selected instances against the ground truth and writes the reports. With ``resume`` the
instances already in ``results.csv`` are skipped, so a run killed at any point continues where it stopped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from verifier.bench.executor import Executor, LocalExecutor
from verifier.bench.instances import Instance
from verifier.bench.outcome import Outcome
from verifier.bench.report import disagreement_lines, plot_cactus, summary_dict, write_summary
from verifier.bench.score import FamilyScore, score_family
from verifier.bench.store import ResultStore
from verifier.bench.truth import GroundTruth, read_ground_truth
from verifier.bench.worker import FORK_STARTUP, Task, _now, measure_startup, resolve_isolation
from verifier.progress import Progress

#: a task whose executor broke this many times (its worker died each time) is recorded as an error
MAX_ATTEMPTS = 2


@dataclass
class BenchOptions:
    """How to run: ``out`` folder, parallel ``jobs``, ``timeout_scale`` on every row's timeout, ``grace``
    seconds past it before a kill, ``resume``/``overwrite`` of an existing results.csv, the verifier
    ``command`` (default ``python -m verifier verify``), ``progress`` bar (None: when stderr is a terminal),
    the ``command_line`` recorded in the summary, extra ``env`` variables for the instances' processes,
    their ``isolation`` (``process`` or ``fork``; None: fork where possible unless a ``command`` is given) and
    the ``device`` handed to each instance as ``--device`` (None: the verifier's default, ``auto``)."""

    out: Path
    jobs: int = 1
    timeout_scale: float = 1.0
    grace: float = 5.0
    resume: bool = False
    overwrite: bool = False
    command: tuple[str, ...] = ()
    progress: bool | None = None
    command_line: str = ""
    env: tuple[tuple[str, str], ...] = ()
    isolation: str | None = None
    device: str | None = None


@dataclass
class BenchReport:
    """What a run leaves: the outcomes of the selected instances, the scores per family, the summary data."""

    outcomes: list[Outcome]
    scores: list[FamilyScore]
    summary: dict[str, Any]
    disagreements: list[str] = field(default_factory=list)


def run_benchmark(instances: Sequence[Instance], options: BenchOptions, executor: Executor | None = None,
                  truth_files: dict[str, Path] | None = None, stream: TextIO | None = None) -> BenchReport:
    """Run every instance not yet in ``options.out/results.csv``, then score and report on all of them.

    ``truth_files`` maps a category to its ``ground_truth.csv``; ``executor`` defaults to a
    :class:`LocalExecutor` with ``options.jobs`` workers. Outcomes are durable as soon as they are recorded.
    """
    stream = stream or sys.stderr
    started = time.monotonic()
    out = Path(options.out)
    store = ResultStore(out / "results.csv")
    recorded = store.open(resume=options.resume, overwrite=options.overwrite)   # holds the folder's lock
    try:
        return _run_and_report(instances, options, executor, truth_files, stream, started, out, store, recorded)
    finally:
        store.close()


def _run_and_report(instances, options, executor, truth_files, stream, started, out, store, recorded) -> BenchReport:
    selected = {instance.key for instance in instances}
    pending = [instance for instance in instances if instance.key not in recorded]
    resumed = len(instances) - len(pending)
    isolation = resolve_isolation(options.isolation, options.command)
    startup = None
    if pending:
        # what each instance pays before the verifier's clock starts, kept off its budget
        budget_startup = measure_startup(options.command) if isolation == "process" else FORK_STARTUP
        own = executor is None
        executor = executor or LocalExecutor(options.jobs)
        try:
            _run_pending(pending, options, executor, store, budget_startup, isolation, stream, resumed,
                         len(instances), [o for k, o in recorded.items() if k in selected])
        except BaseException:  # interrupted: leave at once; the workers and their instances die with us
            if own:
                executor.shutdown(wait=False)
            raise
        if own:
            executor.shutdown()
    by_key = store.load()
    if not pending:
        startup, isolation = _earlier_run(out, "startup_s"), _earlier_run(out, "isolation") or isolation
    elif isolation == "process":
        startup = budget_startup
    else:  # fork start-up is too short to measure apart: the median of this run's instances
        startup = _median_startup(by_key, pending)
    outcomes = [by_key[instance.key] for instance in instances if instance.key in by_key]
    scores = _score(instances, by_key, truth_files or {})
    run = {"command": options.command_line, "out": str(out), "instances": len(instances), "ran": len(pending),
           "resumed": resumed, "jobs": options.jobs, "isolation": isolation, "timeout_scale": options.timeout_scale,
           "grace_s": options.grace, "startup_s": startup, "wall_s": time.monotonic() - started,
           "verifier": " ".join(options.command) if options.command else "python -m verifier verify",
           "finished_at": _now()}
    summary = summary_dict(scores, run)
    write_summary(scores, run, out / "summary.md")
    (out / "summary.json").write_text(_json(summary))
    plot_cactus(scores, out / "cactus.png")
    return BenchReport(outcomes, scores, summary, disagreement_lines(scores))


def _run_pending(pending: list[Instance], options: BenchOptions, executor: Executor, store: ResultStore,
                 startup: float, isolation: str, stream: TextIO, resumed: int, total: int,
                 earlier: list[Outcome]) -> None:
    artifacts = Path(options.out) / "instances"
    queue = [Task(instance, instance.timeout * options.timeout_scale, artifacts / instance.category,
                  options.command, options.grace, startup, options.env, isolation, options.device)
             for instance in pending]
    queue.reverse()  # pop() from the end runs them in file order
    attempts: dict[tuple[str, str, str], int] = {}
    in_flight: dict[Future, Task] = {}
    counts = {"unsat": 0, "sat": 0, "error": 0, "invalid witness": 0}

    def count(outcome: Outcome) -> None:
        kind = "invalid witness" if outcome.witness_valid is False else outcome.result
        if kind in counts:
            counts[kind] += 1

    for outcome in earlier:
        count(outcome)

    def record(outcome: Outcome) -> None:
        store.append(outcome)
        count(outcome)
        solved = counts["unsat"] + counts["sat"]
        status = f"solved {solved} (unsat {counts['unsat']}, sat {counts['sat']})" + "".join(
            f", {kind} {counts[kind]}" for kind in ("error", "invalid witness") if counts[kind])
        bar.update(1, status)

    def submit(task: Task) -> None:
        attempts[task.instance.key] = attempts.get(task.instance.key, 0) + 1
        in_flight[executor.submit(task)] = task

    with Progress(total, label="bench", stream=stream, enabled=options.progress, initial=resumed) as bar:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < executor.jobs:
                    submit(queue.pop())
                finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                broken = []
                for future in finished:
                    task = in_flight.pop(future)
                    try:
                        record(future.result())
                    except BrokenProcessPool:
                        broken.append(task)
                    except Exception as error:  # noqa: BLE001 - the executor's fault; the run goes on
                        record(_lost(task, f"the executor failed: {type(error).__name__}: {error}"))
                if broken:  # a worker died: every task in flight was lost with the pool
                    broken += list(in_flight.values())
                    in_flight.clear()
                    executor.restart()
                    for task in broken:
                        if attempts[task.instance.key] >= MAX_ATTEMPTS:
                            record(_lost(task, f"the worker supervising it died {MAX_ATTEMPTS} times"))
                        else:
                            queue.append(task)
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise


def _lost(task: Task, message: str) -> Outcome:
    instance = task.instance
    return Outcome(instance.category, instance.onnx, instance.vnnlib, result="error", runtime_s=0.0,
                   timeout_s=task.timeout, message=message, finished_at=_now())


def _score(instances: Sequence[Instance], by_key: dict[tuple[str, str, str], Outcome],
           truth_files: dict[str, Path]) -> list[FamilyScore]:
    families: dict[str, list[Outcome]] = {}
    for instance in instances:
        outcomes = families.setdefault(instance.category, [])
        if instance.key in by_key:
            outcomes.append(by_key[instance.key])
    scores = []
    for family, outcomes in families.items():
        truth: dict[tuple[str, str], GroundTruth] | None = None
        if family in truth_files:
            truth = read_ground_truth(truth_files[family])
        scores.append(score_family(family, outcomes, truth))
    return scores


def _median_startup(by_key: dict[tuple[str, str, str], Outcome], ran: list[Instance]) -> float | None:
    """The median start-up (wall time less the verifier's own clock) of the instances run now."""
    import statistics

    measured = [by_key[i.key].startup_s for i in ran if i.key in by_key and by_key[i.key].startup_s is not None]
    return statistics.median(measured) if measured else None


def _earlier_run(out: Path, key: str) -> Any:
    """``key`` of the run that wrote ``out/summary.json`` (nothing left to run now), or None."""
    import json

    try:
        return json.loads((out / "summary.json").read_text())["run"][key]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _json(data: Any) -> str:
    from verifier.jsonout import dumps

    return dumps(data, indent=2) + "\n"
