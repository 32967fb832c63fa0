"""Run one instance in its own process, under a hard deadline, and turn what it left behind into an Outcome.

The verifier runs as a separate command (by default ``python -m verifier verify``) in its own process group::

    COMMAND ONNX VNNLIB --timeout T' --results FILE --json

where ``T'`` is the instance's timeout less the measured process start-up, so that the answer, start-up
included, comes within the timeout as VNN-COMP counts it. The process is killed (its whole group) when it is
still running ``grace`` seconds after the timeout; it also dies with the process supervising it. A crash, a
kill (out of memory: SIGKILL), a hang or missing output becomes an ``error`` outcome with a message; nothing
of it reaches the caller as an exception. Any command that follows this contract can be benchmarked; the
verdict is read from the last JSON line of its standard output, else from the first line of the result file.

:func:`run_task` is the unit of work an executor runs; it takes and returns plain picklable data.
"""

from __future__ import annotations

import ctypes
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

from verifier.bench.instances import Instance
from verifier.bench.outcome import Outcome
from verifier.bench.witness import WitnessVerdict, _one_line, check_result_text, check_witness

#: verdict words other tools write in result files, mapped to ours (VNN-COMP 2021 used holds/violated)
VERDICT_ALIASES = {"holds": "unsat", "violated": "sat", "unsat": "unsat", "sat": "sat", "unknown": "unknown",
                   "timeout": "timeout"}


def default_command() -> tuple[str, ...]:
    """``python -m verifier verify`` with this interpreter."""
    return (sys.executable, "-m", "verifier", "verify")


@dataclass(frozen=True)
class Task:
    """One instance to run: what, under which limits, and where its files go.

    ``timeout``: seconds (already scaled) within which the answer must come, process start-up included;
    ``grace``: how long past it the process may run before it is killed; ``startup``: the expected process
    start-up, subtracted from the budget handed to the verifier; ``artifacts``: folder for the instance's
    result file (``NAME.result``), standard output (``NAME.json``) and standard error (``NAME.log``).
    """

    instance: Instance
    timeout: float
    artifacts: Path
    command: tuple[str, ...] = ()
    grace: float = 5.0
    startup: float = 0.0
    env: tuple[tuple[str, str], ...] = ()


def run_task(task: Task) -> Outcome:
    """Run ``task``'s instance in a fresh process and return its outcome; never raises for the instance's faults."""
    instance = task.instance
    task.artifacts.mkdir(parents=True, exist_ok=True)
    result_file = task.artifacts / f"{instance.name}.result"
    stdout_file = task.artifacts / f"{instance.name}.json"
    stderr_file = task.artifacts / f"{instance.name}.log"
    result_file.unlink(missing_ok=True)
    budget = max(task.timeout - task.startup, min(1.0, task.timeout))
    argv = [*(task.command or default_command()), str(instance.onnx_path), str(instance.vnnlib_path),
            "--timeout", f"{budget:.3f}", "--results", str(result_file), "--json"]
    outcome = Outcome(instance.category, instance.onnx, instance.vnnlib, result="error", runtime_s=0.0,
                      timeout_s=task.timeout)
    start = time.monotonic()
    try:
        with open(stdout_file, "wb") as out, open(stderr_file, "wb") as err:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                       env=_child_env(task.env), start_new_session=True,
                                       preexec_fn=_PARENT_DEATH_SIGNAL)
            try:
                exit_code, peak_rss_kib, killed = _wait(process, start + task.timeout + task.grace)
            except BaseException:  # interrupted: the instance must not outlive its supervisor's task
                _kill_group(process.pid)
                process.wait()
                raise
    except OSError as error:
        outcome.message = f"could not start {argv[0]}: {_one_line(error)}"
        outcome.finished_at = _now()
        return outcome
    outcome.runtime_s = time.monotonic() - start
    outcome.exit_code = exit_code
    outcome.peak_rss_mb = peak_rss_kib / 1024.0
    outcome.finished_at = _now()
    stderr_tail = _last_line(stderr_file)
    if killed:
        outcome.message = (f"hung: no answer {task.grace:g} s past the {task.timeout:g} s timeout, killed"
                           + (f"; last output: {stderr_tail}" if stderr_tail else ""))
        return outcome
    if exit_code < 0:
        name = _signal_name(-exit_code)
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


def _wait(process: subprocess.Popen, deadline: float) -> tuple[int, int, bool]:
    """Wait for ``process`` until ``deadline`` (monotonic), then kill its process group.

    Returns ``(exit code, peak RSS in KiB, killed)``; a negative exit code is the signal that ended it. The
    group is also killed after a normal exit so nothing the instance left running survives it.
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
            _kill_group(process.pid)
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    _kill_group(process.pid)  # the leader is a zombie until reaped, so its group id cannot be reused yet
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, int(usage.ru_maxrss), killed


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _parent_death_signal():
    """A ``preexec_fn`` that makes the child die with SIGKILL when its parent dies (Linux prctl), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL))

    return set_parent_death_signal


_PARENT_DEATH_SIGNAL = _parent_death_signal()


def die_with_parent() -> None:
    """Make this process die when its parent does (an executor's worker initializer)."""
    if _PARENT_DEATH_SIGNAL is not None:
        _PARENT_DEATH_SIGNAL()


def _child_env(extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # so `python -m verifier` finds this very package
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(dict(extra))
    return env


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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def measure_startup(command: tuple[str, ...] = ()) -> float:
    """Seconds an empty ``python -c 'import verifier'`` takes: the start-up each instance's process pays before
    the verifier's own clock starts. 0 for a command other than this package's verifier (not measurable)."""
    if command and tuple(command) != default_command():
        return 0.0
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import verifier"], env=_child_env(),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.monotonic() - start
