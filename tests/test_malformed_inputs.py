"""Every malformed input (tests/malformed_corpus.py: models, properties, arrays, instances files, options) gets
one line and exit code 2 from the command line, a VerifierError from the API, no traceback, no hang and no
large allocation; Ctrl-C is one line and exit code 130 whenever it comes.

The corpus runs in one child process with its address space capped and each case under an alarm (in-process
through ``verifier.cli.main`` and the API, which keeps the default suite at seconds); a sample runs through
real ``python -m verifier`` processes, all of them with -m slow.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MODELS, ROOT
from tests.malformed_corpus import write_corpus

#: address space a child may take beyond its size after imports (every bomb in the corpus asks for far more)
CAP_GIB = 2.0
#: a sample of the corpus also run through real processes in the default suite
PROCESS_SAMPLE = ("model/constantofshape_bomb", "model/loop_1e12", "property/gzip_bomb", "csv/symlink_escape")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), VERIFIER_THREADS="1")


def _check(record: dict) -> list[str]:
    """What is wrong with one case's outcome (empty when it failed as it should)."""
    problems = []
    if "code" in record:
        lines = [line for line in record["stderr"].splitlines() if line.strip()]
        if record["code"] != 2:
            problems.append(f"exit code {record['code']}")
        if "Traceback" in record["stderr"] or "Traceback" in record["stdout"]:
            problems.append("traceback")
        if record.get("stdout_lines") is None:
            if len(lines) != 1:
                problems.append(f"{len(lines)} lines on stderr")
        elif len(record["stdout"].splitlines()) != record["stdout_lines"]:
            problems.append("the verdict was not printed")
        last = lines[-1] if lines else ""
        if not last.startswith("verifier"):
            problems.append("the message does not name the command")
        if record["needle"] and record["needle"].lower() not in last.lower():
            problems.append(f"message lacks {record['needle']!r}")
        if len(last) > 600:
            problems.append(f"message of {len(last)} characters")
        forbidden = record.get("forbidden")
        if forbidden and (forbidden in record["stderr"] or forbidden in record["stdout"]):
            problems.append("the message shows the content of a file outside the family")
    if "api" in record:
        if record["api"] == "ok" or record["api"].startswith("BAD"):
            problems.append(f"API: {record['api'][:200]}")
        elif record["needle"] and record["needle"].lower() not in record["api"].lower():
            problems.append(f"API message lacks {record['needle']!r}")
    return problems


def test_corpus_has_every_category(tmp_path):
    cases = write_corpus(tmp_path / "corpus")
    kinds = {case.kind for case in cases}
    assert len(cases) >= 150 and kinds == {"model", "property", "array", "csv", "option"}
    assert len({case.name for case in cases}) == len(cases)
    assert sum(case.api is not None for case in cases) >= 100


def test_every_malformed_input_is_one_line_and_exit_2(tmp_path):
    """The whole corpus in one capped child (hard timeout for all of it, an alarm for each case)."""
    process = subprocess.run(
        [sys.executable, "-m", "tests.malformed_corpus", str(tmp_path / "corpus"), "--cap-gib", str(CAP_GIB),
         "--case-timeout", "30"], capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    records = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    started = [r["starting"] for r in records if "starting" in r]
    results = [r for r in records if "name" in r]
    assert process.returncode == 0, f"the runner died in {started[-1] if started else '?'}: {process.stderr[-2000:]}"
    assert len(results) == len(started) >= 150
    failures = {r["name"]: _check(r) for r in results}
    failures = {name: problems for name, problems in failures.items() if problems}
    assert not failures, json.dumps(failures, indent=1)
    slowest = max(results, key=lambda r: r.get("cli_s", 0) + r.get("api_s", 0))
    assert slowest.get("cli_s", 0) < 30 and slowest.get("api_s", 0) < 30


def _capped():
    """preexec_fn of a child: at most 3 GiB of address space beyond a Python with torch (about 1 GiB here)."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))


def _run_process(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", *argv], capture_output=True, text=True, cwd=ROOT,
                          env=_env(), timeout=timeout, preexec_fn=_capped)


def _process_cases(tmp_path: Path, names=None):
    cases = [case for case in write_corpus(tmp_path / "corpus") if case.argv is not None]
    return [case for case in cases if names is None or case.name in names]


def _assert_one_line(case, result: subprocess.CompletedProcess) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (case.name, result.returncode, result.stderr[-1000:])
    assert "Traceback" not in result.stderr, (case.name, result.stderr[-2000:])
    if case.stdout_lines is None:
        assert len(lines) == 1, (case.name, lines)
    assert case.needle.lower() in lines[-1].lower(), (case.name, lines[-1])


def test_a_sample_through_real_processes(tmp_path):
    for case in _process_cases(tmp_path, PROCESS_SAMPLE):
        _assert_one_line(case, _run_process(case.argv))


@pytest.mark.slow
def test_the_whole_corpus_through_real_processes(tmp_path):
    for case in _process_cases(tmp_path):
        _assert_one_line(case, _run_process(case.argv))


def _interrupt_when(ready, argv: list[str]) -> subprocess.CompletedProcess:
    """Start ``verifier argv``, send SIGINT as soon as ``ready(pid, stderr_line)`` holds, collect the output."""
    process = subprocess.Popen([sys.executable, "-m", "verifier", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
    seen: list[str] = []
    deadline = time.monotonic() + 120
    os.set_blocking(process.stderr.fileno(), False)
    while process.poll() is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if line:
            seen.append(line)
        if ready(process.pid, line):
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    os.set_blocking(process.stderr.fileno(), True)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, "".join(seen) + err)


def _importing_torch(pid: int, line: str) -> bool:
    """Whether the process or one of its children (the supervised worker) has mapped libtorch."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for each in [pid, *map(int, children)]:
        try:
            if "libtorch" in Path(f"/proc/{each}/maps").read_text():
                return True
        except OSError:
            pass
    return False


def _searching(pid: int, line: str) -> bool:
    return "search" in line


@pytest.mark.parametrize("moment", ["imports", "search"])
def test_ctrl_c_is_one_line_and_exit_130(moment):
    """Ctrl-C while the libraries load and while the search runs: one line, exit 130. (Before the command
    line's first line of code runs, Python's own start-up handles the signal.)"""
    if moment == "imports" and not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see when the child imports torch")
    # img1 at eps 0.1: a search that runs for more than a minute (img2's counterexample is found at once)
    argv = ["verify", str(MODELS / "digits_cnn.onnx"), str(MODELS / "digits_cnn_img1_eps0.1.vnnlib"),
            "--timeout", "60", "--no-attack", "--progress"]
    result = _interrupt_when(_importing_torch if moment == "imports" else _searching, argv)
    lines = [line for line in result.stderr.splitlines() if line.strip() and " | " not in line]  # not progress
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 130, (result.returncode, result.stderr[-1000:])
    assert lines == ["verifier verify: interrupted"], lines


def test_help_without_torch():
    code = ("import sys, io, contextlib\nfrom verifier.cli import main\nbuffer = io.StringIO()\n"
            "with contextlib.redirect_stdout(buffer):\n    assert main(['--help']) == 0\n"
            "    assert main(['verify', '--help']) == 0\n    assert main(['bench', '--help']) == 0\n"
            "assert 'decide a VNN-LIB property' in buffer.getvalue()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nimport verifier\n"
            "assert 'torch' not in sys.modules\nprint(verifier.load_onnx.__name__, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=_env(),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["load_onnx", "True"]  # the lazy attribute works, and only then imports
