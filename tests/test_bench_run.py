"""Benchmark runs end to end: misbehaving instances are recorded and the run goes on, a run killed with
SIGKILL resumes without duplicates or losses (in both isolations: a process per instance, or a child of a
warm fork server), the reports are written, and the real verifier is scored."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from tests.conftest import MODELS, ROOT
from verifier.bench import (
    BenchOptions,
    InlineExecutor,
    LocalExecutor,
    ResultStore,
    read_instances,
    run_benchmark,
)

ONNX = MODELS / "acasxu_like.onnx"
PROP_1, PROP_2 = MODELS / "acasxu_like_prop_1.vnnlib", MODELS / "acasxu_like_prop_2.vnnlib"
FAKE = (sys.executable, str(ROOT / "tests" / "bench_fake_verifier.py"))


#: where family() puts the network, relative to the family's folder
FAMILY_ONNX = "onnx/acasxu_like.onnx"


def family(tmp_path: Path, kinds: list[str], timeout: float = 2.0) -> Path:
    """A family folder with one instance per kind of fake behaviour (its property file is named after it)."""
    folder = tmp_path / "fam"
    (folder / "vnnlib").mkdir(parents=True, exist_ok=True)
    (folder / "onnx").mkdir(exist_ok=True)
    (folder / FAMILY_ONNX).write_bytes(ONNX.read_bytes())   # paths must stay inside the family's folder
    rows = []
    for kind in kinds:
        (folder / "vnnlib" / f"{kind}.vnnlib").write_text(PROP_2.read_text())
        rows.append(f"{FAMILY_ONNX},vnnlib/{kind}.vnnlib,{timeout}")
    (folder / "instances.csv").write_text("\n".join(rows) + "\n")
    return folder / "instances.csv"


def rows_of(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "verifier", "bench", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300, **kwargs)


@pytest.mark.parametrize("isolation", ["process", "fork"])
def test_crashes_hangs_and_kills_are_recorded_and_the_run_goes_on(tmp_path, isolation):
    kinds = ["ok", "crash", "segv", "oom", "hang", "silent", "late", "forged", "slow3"]
    instances = read_instances(family(tmp_path, kinds))
    options = BenchOptions(out=tmp_path / "out", jobs=2, grace=1.5, command=FAKE, progress=True,
                           isolation=isolation, env=(("BENCH_FAKE_NOTE", "from the runner"),))
    stream = io.StringIO()
    started = time.monotonic()
    report = run_benchmark(instances, options, stream=stream)
    assert time.monotonic() - started < 60
    by_kind = {Path(o.vnnlib).stem: o for o in report.outcomes}
    assert sorted(by_kind) == sorted(kinds) and len(rows_of(tmp_path / "out" / "results.csv")) == len(kinds)
    assert by_kind["ok"].result == "unsat" and by_kind["slow3"].result == "unsat"
    assert by_kind["ok"].message == "from the runner"  # the instance got the run's extra environment
    assert by_kind["crash"].result == "error" and "exit code 1" in by_kind["crash"].message
    assert "RuntimeError: boom" in by_kind["crash"].message
    assert by_kind["segv"].result == "error" and "SIGSEGV" in by_kind["segv"].message
    assert by_kind["oom"].result == "error" and "SIGKILL (out of memory?)" in by_kind["oom"].message
    hang = by_kind["hang"]
    assert hang.result == "error" and "hung" in hang.message and "thinking forever" in hang.message
    assert 3.0 <= hang.runtime_s < 10
    assert by_kind["silent"].result == "error" and "no verdict" in by_kind["silent"].message
    assert by_kind["late"].result == "timeout" and by_kind["late"].message.startswith("late: unsat")
    forged = by_kind["forged"]
    assert forged.result == "sat" and forged.witness.startswith("invalid: listed outputs differ")
    (score,) = report.scores
    assert score.ours.incorrect == 1 and score.ours.error == 5 and score.ours.score == 2 * 10 - 150
    assert any("forged" in line and "sat without a valid witness" in line for line in report.disagreements)
    assert "solved 2 (unsat 2, sat 0), error 5, invalid witness 1" in stream.getvalue()
    cactus = tmp_path / "out" / "cactus.png"
    assert cactus.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and cactus.stat().st_size > 10_000
    assert "| fam | ours | 9 | 2 | 0 | 0 | 1 | 5 | 1 | -130 |" in (tmp_path / "out" / "summary.md").read_text()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["score"] == -130
    assert summary["families"]["fam"]["unsat_proofs"] == {"not reported": 2}   # (a command without labels)
    assert "- fam: 0 of 2 float-sound (2: not reported)" in (tmp_path / "out" / "summary.md").read_text()


def _processes_mentioning(text: str) -> list[int]:
    """Processes (not this one) whose command line or environment contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                seen = (entry / "cmdline").read_bytes() + b" " + (entry / "environ").read_bytes()
            except OSError:
                continue
            if text in seen.replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for left-over processes")
@pytest.mark.parametrize("isolation", ["process", "fork"])
def test_resume_after_kill_loses_nothing_and_duplicates_nothing(tmp_path, isolation):
    kinds = ["slow2_0", "slow2_1", "hang", "slow2_2", "slow2_3", "slow2_4", "slow2_5"]
    csv_path = family(tmp_path, kinds, timeout=3.0)
    out = tmp_path / "out"
    args = [str(csv_path), "--out", str(out), "--jobs", "2", "--grace", "0.5", "--command", " ".join(FAKE),
            "--isolation", isolation]
    # marks every process of the run (a forked instance's command line is its fork server's)
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_TEST_RUN=str(tmp_path))
    run = subprocess.Popen([sys.executable, "-m", "verifier", "bench", *args], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "results.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not results.is_file() or len(rows_of(results)) < 2):
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the whole run at once, mid-way: 'hang' is in flight
    run.wait()
    before = rows_of(results)
    assert 2 <= len(before) < len(kinds)
    time.sleep(1.0)
    assert _processes_mentioning(str(tmp_path)) == [], "instances outlived the killed run"
    with open(results, "a") as handle:  # as if the kill had cut a row short
        handle.write("fam," + FAMILY_ONNX + ",vnnlib/slow2_5.vnnlib,0,uns")

    again = run_cli(*args, "--resume")
    assert again.returncode == 0, again.stderr
    after = rows_of(results)
    assert after[:len(before)] == before  # nothing recorded before the kill was lost or rewritten
    assert sorted(Path(r["vnnlib"]).stem for r in after) == sorted(kinds)  # each instance exactly once
    assert "instances: 7 (" in (out / "summary.md").read_text()
    if isolation == "fork":
        return  # the rest does not depend on how instances run

    third = run_cli(*args, "--resume", "--json")  # nothing left: reports only
    assert third.returncode == 0 and rows_of(results) == after
    assert json.loads(third.stdout)["run"]["ran"] == 0

    refused = run_cli(*args)
    assert refused.returncode == 2 and "already exists; pass --resume" in refused.stderr


class BreakingExecutor(InlineExecutor):
    """Loses the first ``breaks`` submissions as if its worker process had died."""

    def __init__(self, breaks: int):
        self.breaks = breaks
        self.restarts = 0

    def submit(self, task):
        if self.breaks > 0:
            self.breaks -= 1
            future: Future = Future()
            future.set_exception(BrokenProcessPool("a worker died"))
            return future
        return super().submit(task)

    def restart(self):
        self.restarts += 1


def test_a_dead_worker_costs_one_retry_then_an_error(tmp_path):
    instances = read_instances(family(tmp_path, ["ok", "slow1"]))
    options = BenchOptions(out=tmp_path / "a", command=FAKE)
    executor = BreakingExecutor(breaks=1)
    report = run_benchmark(instances, options, executor=executor)
    assert [o.result for o in report.outcomes] == ["unsat", "unsat"] and executor.restarts == 1

    options = BenchOptions(out=tmp_path / "b", command=FAKE)
    report = run_benchmark(instances, options, executor=BreakingExecutor(breaks=2))
    assert report.outcomes[0].result == "error" and "died 2 times" in report.outcomes[0].message
    assert report.outcomes[1].result == "unsat"


def test_real_verifier_scored_against_ground_truth(tmp_path):
    folder = tmp_path / "acas"
    folder.mkdir()
    (folder / "instances.csv").write_text(f"{ONNX},{PROP_1},60\n{ONNX},{PROP_2},60\n")
    # prop_2's counterexample is found by sampling in tests/test_bench_witness.py; prop_1 is the model's
    # verified property (models/make_models.py)
    header = "onnx,vnnlib,timeout,consensus,confidence,basis,best_tool,best_time_s,x@2024,x@2024_time_s"
    (folder / "ground_truth.csv").write_text(
        f"{header}\n{ONNX},{PROP_1},60,unsat,high,,x@2024,1.5,unsat,1.5\n"
        f"{ONNX},{PROP_2},60,sat,high,,x@2024,0.5,sat,0.5\n")
    result = run_cli(str(folder / "instances.csv"), "--out", str(tmp_path / "out"), "--json",
                     "--allow-outside-paths")   # the rows name the bundled models by absolute path
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    ours = summary["families"]["acas"]["ours"]
    assert (ours["unsat"], ours["sat"], ours["incorrect"], ours["score"]) == (1, 1, 0, 20)
    assert summary["families"]["acas"]["best_tool"]["solver"] == "x@2024"
    assert summary["run"]["startup_s"] > 0
    # what the unsat rests on, from the verifier's own label (float soundness is the default on ReLU networks)
    assert summary["families"]["acas"]["unsat_proofs"] == {"float-sound": 1}
    assert "- acas: 1 of 1 float-sound" in (tmp_path / "out" / "summary.md").read_text()
    rows = {Path(r["vnnlib"]).name: r for r in rows_of(tmp_path / "out" / "results.csv")}
    assert rows[PROP_2.name]["witness"] == "valid" and rows[PROP_1.name]["result"] == "unsat"
    for row in rows.values():  # runtime = start-up + the verifier's own time
        assert float(row["startup_s"]) > 0 and float(row["verify_s"]) > 0
        assert float(row["runtime_s"]) == pytest.approx(float(row["startup_s"]) + float(row["verify_s"]), abs=1e-3)
    witness = (tmp_path / "out" / "instances" / "acas" / "acasxu_like+acasxu_like_prop_2.result").read_text()
    assert witness.startswith("sat\n((X_0 ")


def test_malformed_instances_row_is_a_clear_error(tmp_path):
    path = tmp_path / "instances.csv"
    path.write_text(f"{ONNX},{PROP_1},60\n{ONNX},{PROP_2}\n")
    result = run_cli(str(path), "--out", str(tmp_path / "out"), "--allow-outside-paths")
    assert result.returncode == 2
    assert f"verifier bench: error: {path}:2: expected 3 fields" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing runs before every row is valid


def test_local_executor_runs_tasks_in_parallel(tmp_path):
    instances = read_instances(family(tmp_path, ["slow20_a", "slow20_b"], timeout=30))
    executor = LocalExecutor(jobs=2)
    try:
        run_benchmark(instances, BenchOptions(out=tmp_path / "warm", command=FAKE), executor=executor)  # spawn
        started = time.monotonic()
        report = run_benchmark(instances, BenchOptions(out=tmp_path / "out", command=FAKE), executor=executor)
        elapsed = time.monotonic() - started
    finally:
        executor.shutdown()
    assert [o.result for o in report.outcomes] == ["unsat", "unsat"]
    assert sum(o.runtime_s for o in report.outcomes) > 4.0 and elapsed < 3.5  # two 2-second instances at once
    assert ResultStore(tmp_path / "out" / "results.csv").load().keys() == {i.key for i in instances}


def test_device_is_handed_to_every_instance(tmp_path):
    instances = read_instances(family(tmp_path, ["quick_a", "quick_b"], timeout=30))
    report = run_benchmark(instances, BenchOptions(out=tmp_path / "out", command=FAKE, device="cpu"),
                           executor=InlineExecutor())
    assert [o.message for o in report.outcomes] == ["device cpu", "device cpu"]
    report = run_benchmark(instances, BenchOptions(out=tmp_path / "default", command=FAKE), executor=InlineExecutor())
    assert [o.message for o in report.outcomes] == ["", ""]   # no --device: the verifier's own default
