"""Run one instance in a process of its own, under a hard deadline, and turn what it left into an Outcome.

The verifier's contract is a command (by default ``python -m verifier verify``)::

    COMMAND ONNX VNNLIB --timeout T' --results FILE --json

where ``T'`` is the instance's timeout less the expected start-up, so that the answer, start-up included,
comes within the timeout as VNN-COMP counts it. It runs in one of two ways (``Task.isolation``):

- ``process``: a fresh process of the command, in its own process group (any program can be benchmarked);
- ``fork``: a child forked by a warm fork server that has imported the verifier once
  (:mod:`verifier.bench.forkclient`); only for Python commands of this interpreter (``PYTHON -m MODULE`` or
  ``PYTHON SCRIPT.py``), run in the child as the interpreter would run them, at a start-up of milliseconds.

Either way the instance's process group is killed when it is still running ``grace`` seconds after the
timeout, and it dies with the process supervising it. A crash, a kill (out of memory: SIGKILL), a hang or
missing output becomes an ``error`` outcome with a message; nothing of it reaches the caller as an
exception. The verdict is read from the last JSON line of its standard output, else from the first line of
the result file.

:func:`run_task` is the unit of work an executor runs; it takes and returns plain picklable data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from verifier.bench.forkclient import Exit, ForkServer, ForkServerError, python_target, shared_server
from verifier.bench.instances import Instance
from verifier.bench.outcome import Outcome
from verifier.bench.processes import PARENT_DEATH_SIGNAL, child_env, die_with_parent, kill_group, signal_name
from verifier.bench.witness import WitnessVerdict, _one_line, check_result_text, check_witness
from verifier.errors import OptionError

__all__ = ["ISOLATIONS", "Task", "default_command", "die_with_parent", "measure_startup", "resolve_isolation",
           "run_task"]

#: how an instance is isolated: its own process, or a child of a warm fork server
ISOLATIONS = ("process", "fork")
#: the start-up expected of an instance forked by a warm server (measured: 10-30 ms), kept off its budget
FORK_STARTUP = 0.05

#: verdict words other tools write in result files, mapped to ours (VNN-COMP 2021 used holds/violated)
VERDICT_ALIASES = {"holds": "unsat", "violated": "sat", "unsat": "unsat", "sat": "sat", "unknown": "unknown",
                   "timeout": "timeout"}


def default_command() -> tuple[str, ...]:
    """``python -m verifier verify`` with this interpreter."""
    return (sys.executable, "-m", "verifier", "verify")


def resolve_isolation(isolation: str | None, command: tuple[str, ...] = ()) -> str:
    """The isolation to use: ``fork`` by default where ``os.fork`` exists and no other command is given,
    else ``process``; an explicit ``fork`` needs ``os.fork`` and a command a fork server can run."""
    if isolation is None:
        return "fork" if hasattr(os, "fork") and not command else "process"
    if isolation not in ISOLATIONS:
        raise OptionError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
    if isolation == "fork":
        if not hasattr(os, "fork"):
            raise OptionError("fork isolation needs os.fork (Linux, macOS); use process isolation")
        if command and python_target(command) is None:
            raise OptionError(f"fork isolation runs only 'PYTHON -m MODULE ...' or 'PYTHON SCRIPT.py ...' with "
                             f"this interpreter ({sys.executable}); {' '.join(command)!r} needs process isolation")
    return isolation


@dataclass(frozen=True)
class Task:
    """One instance to run: what, under which limits, and where its files go.

    ``timeout``: seconds (already scaled) within which the answer must come, process start-up included;
    ``grace``: how long past it the process may run before it is killed; ``startup``: the expected process
    start-up, subtracted from the budget handed to the verifier; ``artifacts``: folder for the instance's
    result file (``NAME.result``), standard output (``NAME.json``) and standard error (``NAME.log``);
    ``isolation``: ``process`` or ``fork`` (see the module docstring; resolved by :func:`resolve_isolation`);
    ``device``: passed to the command as ``--device`` when set.
    """

    instance: Instance
    timeout: float
    artifacts: Path
    command: tuple[str, ...] = ()
    grace: float = 5.0
    startup: float = 0.0
    env: tuple[tuple[str, str], ...] = ()
    isolation: str = "process"
    device: str | None = None


def run_task(task: Task) -> Outcome:
    """Run ``task``'s instance in a process of its own and return its outcome; never raises for the instance's
    faults."""
    instance = task.instance
    task.artifacts.mkdir(parents=True, exist_ok=True)
    result_file = task.artifacts / f"{instance.name}.result"
    stdout_file = task.artifacts / f"{instance.name}.json"
    stderr_file = task.artifacts / f"{instance.name}.log"
    result_file.unlink(missing_ok=True)
    budget = max(task.timeout - task.startup, min(1.0, task.timeout))
    arguments = [str(instance.onnx_path), str(instance.vnnlib_path), "--timeout", f"{budget:.3f}", "--results",
                 str(result_file), "--json"] + (["--device", task.device] if task.device else [])
    command = task.command or default_command()
    outcome = Outcome(instance.category, instance.onnx, instance.vnnlib, result="error", runtime_s=0.0,
                      timeout_s=task.timeout)
    start = time.monotonic()
    try:
        if task.isolation == "fork":
            server = shared_server()
            server.ensure_started()  # a fresh server's imports are paid once, on no instance's clock
            start = time.monotonic()
            ended = _run_forked(server, command, arguments, stdout_file, stderr_file, task.env,
                                start + task.timeout + task.grace)
        else:
            ended = _run_process([*command, *arguments], stdout_file, stderr_file, task.env,
                                 start + task.timeout + task.grace)
    except OSError as error:
        outcome.message = f"could not start {command[0]}: {_one_line(error)}"
        outcome.finished_at = _now()
        return outcome
    except ForkServerError as error:
        outcome.runtime_s = time.monotonic() - start
        outcome.message = _one_line(error)
        outcome.finished_at = _now()
        return outcome
    exit_code, killed = ended.code, ended.killed
    outcome.runtime_s = time.monotonic() - start
    outcome.exit_code = exit_code
    outcome.peak_rss_mb = ended.peak_rss_kib / 1024.0
    outcome.finished_at = _now()
    stderr_tail = _last_line(stderr_file)
    if killed:
        outcome.message = (f"hung: no answer {task.grace:g} s past the {task.timeout:g} s timeout, killed"
                           + (f"; last output: {stderr_tail}" if stderr_tail else ""))
        return outcome
    if exit_code < 0:
        name = signal_name(-exit_code)
        hint = " (out of memory?)" if -exit_code == signal.SIGKILL else ""
        outcome.message = f"killed by {name}{hint}" + (f"; last output: {stderr_tail}" if stderr_tail else "")
        return outcome
    if exit_code != 0:
        outcome.message = f"exit code {exit_code}: {stderr_tail or 'no error message'}"
        return outcome
    payload = _json_payload(stdout_file)
    said = payload.get("status") if payload else _first_line(result_file)
    if not said:
        outcome.message = "no verdict: neither a JSON line with 'status' on stdout nor a result file"
        return outcome
    status = VERDICT_ALIASES.get(str(said).strip().lower())
    if status is None:
        outcome.message = f"unrecognised verdict {_one_line(str(said))!r}"
        return outcome
    _copy_stats(outcome, payload or {})
    outcome.result = status
    outcome.message = _one_line(payload.get("message", "")) if payload and payload.get("message") else ""
    if outcome.runtime_s > task.timeout and status != "timeout":
        outcome.message = f"late: {status} after {outcome.runtime_s:.1f} s (timeout {task.timeout:g} s)"
        outcome.result = "timeout"
        return outcome
    if status == "sat":
        outcome.witness = _check(task, result_file, payload).describe()
    return outcome


def _check(task: Task, result_file: Path, payload: dict[str, Any] | None) -> WitnessVerdict:
    """The witness from the result file (what VNN-COMP scores), else from the JSON counterexample."""
    instance = task.instance
    if result_file.is_file() and result_file.read_text().strip().lower().startswith("sat"):
        return check_result_text(instance.onnx_path, instance.vnnlib_path, result_file.read_text())
    counterexample = (payload or {}).get("counterexample")
    if isinstance(counterexample, dict) and "x" in counterexample and "y" in counterexample:
        return check_witness(instance.onnx_path, instance.vnnlib_path, counterexample["x"], counterexample["y"])
    return WitnessVerdict(False, "sat without a counterexample")


def _run_process(argv: list[str], stdout_file: Path, stderr_file: Path, env: tuple[tuple[str, str], ...],
                 deadline: float) -> Exit:
    """Run ``argv`` in a fresh process (own session, dies with us) until it ends or ``deadline`` passes."""
    with open(stdout_file, "wb") as out, open(stderr_file, "wb") as err:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env(env),
                                   start_new_session=True, preexec_fn=PARENT_DEATH_SIGNAL)
        try:
            return _wait(process, deadline)
        except BaseException:  # interrupted: the instance must not outlive its supervisor's task
            kill_group(process.pid)
            process.wait()
            raise


def _run_forked(server: ForkServer, command: tuple[str, ...], arguments: list[str], stdout_file: Path,
                stderr_file: Path, env: tuple[tuple[str, str], ...], deadline: float) -> Exit:
    """Run ``command arguments`` as a child of the warm fork ``server``."""
    found = python_target(command)
    if found is None:
        raise ForkServerError(f"fork isolation cannot run {' '.join(command)!r}; use process isolation")
    target, leading = found
    argv = [target[1], *leading, *arguments]
    return server.run(target, argv, str(stdout_file), str(stderr_file), child_env(env), deadline)


def _wait(process: subprocess.Popen, deadline: float) -> Exit:
    """Wait for ``process`` until ``deadline`` (monotonic), then kill its process group.

    The group is also killed after a normal exit so nothing the instance left running survives it.
    """
    pause, killed = 0.005, False
    while True:
        try:
            info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = None
        if info is not None:
            break
        if time.monotonic() >= deadline:
            killed = True
            kill_group(process.pid)
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    kill_group(process.pid)  # the leader is a zombie until reaped, so its group id cannot be reused yet
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Exit(process.returncode, int(usage.ru_maxrss), killed)


def _json_payload(path: Path) -> dict[str, Any] | None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                payload = json.loads(line)
            except ValueError:
                continue
            if isinstance(payload, dict) and "status" in payload:
                return payload
    return None


def _copy_stats(outcome: Outcome, payload: dict[str, Any]) -> None:
    stats = payload.get("stats") if isinstance(payload.get("stats"), dict) else {}
    phases = stats.get("phases", {}) if isinstance(stats.get("phases"), dict) else {}
    load = [phases[k] for k in ("load_model", "load_property") if isinstance(phases.get(k), (int, float))]
    outcome.load_s = sum(load) if load else None
    outcome.attack_s = phases.get("attack")
    outcome.search_s = phases.get("search")
    outcome.method = str(stats.get("method", ""))
    domains = stats.get("domains")
    outcome.domains = int(domains) if isinstance(domains, (int, float)) else None
    own_time = payload.get("time_s", stats.get("time_s"))
    if isinstance(own_time, (int, float)):
        outcome.verify_s = float(own_time)
        outcome.startup_s = max(outcome.runtime_s - float(own_time), 0.0)
    outcome.stats = stats


def _first_line(path: Path) -> str | None:
    try:
        with open(path, errors="replace") as handle:
            return handle.readline().strip() or None
    except OSError:
        return None


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 8192))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    # indented lines are source lines quoted by tracebacks and warnings; the message is the last unindented one
    lines = [line for line in lines if line.strip() and not line[:1].isspace()]
    return _one_line(lines[-1]) if lines else ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def measure_startup(command: tuple[str, ...] = ()) -> float:
    """Seconds an empty ``python -c 'import verifier'`` takes: the start-up each instance's process pays before
    the verifier's own clock starts. 0 for a command other than this package's verifier (not measurable)."""
    if command and tuple(command) != default_command():
        return 0.0
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import verifier"], env=child_env(),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.monotonic() - start
