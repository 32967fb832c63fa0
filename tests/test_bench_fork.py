"""Fork isolation: an instance forked from a warm server answers as one in its own process, a server that
dies costs only the instance it was running, and the choice of isolation follows the command.

Misbehaving instances (crash, signal, hang, late, silent) and resuming after a kill are checked in both
isolations in ``test_bench_run.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import MODELS
from tests.test_bench_run import FAKE, family
from verifier.bench import BenchOptions, InlineExecutor, read_instances, run_benchmark
from verifier.bench.forkclient import python_target
from verifier.bench.worker import resolve_isolation

ONNX = MODELS / "acasxu_like.onnx"
PROP_1, PROP_2 = MODELS / "acasxu_like_prop_1.vnnlib", MODELS / "acasxu_like_prop_2.vnnlib"

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork isolation needs os.fork")


def test_forked_instances_answer_as_their_own_processes_do(tmp_path):
    folder = tmp_path / "acas"
    folder.mkdir()
    (folder / "broken.vnnlib").write_text("(declare-const X_0 Real)\n(assert (<= X_0\n")  # cut short
    (folder / "instances.csv").write_text(f"{ONNX},{PROP_1},60\n{ONNX},{PROP_2},60\n{ONNX},broken.vnnlib,60\n")
    instances = read_instances(folder / "instances.csv", allow_outside=True)
    reports = {isolation: run_benchmark(instances, BenchOptions(out=tmp_path / isolation, isolation=isolation),
                                        executor=InlineExecutor())
               for isolation in ("process", "fork")}
    # prop_1 is the model's verified property (models/make_models.py); prop_2 has a counterexample
    # (found by sampling in tests/test_bench_witness.py), checked here by the runner in onnxruntime
    for report in reports.values():
        assert [o.result for o in report.outcomes] == ["unsat", "sat", "error"]
        assert report.outcomes[1].witness == "valid"
        assert report.outcomes[2].message.startswith("exit code 2: verifier verify: error: ")
    answers = {isolation: [(o.result, o.witness, o.method, o.domains, o.exit_code, o.message)
                           for o in report.outcomes]
               for isolation, report in reports.items()}
    assert answers["fork"] == answers["process"]
    assert reports["fork"].summary["run"]["isolation"] == "fork"
    for outcome in reports["fork"].outcomes[:2]:  # the server's one-off import is charged to no instance
        assert outcome.verify_s > 0 and 0 < outcome.startup_s < 1.0 and outcome.peak_rss_mb > 0
        assert outcome.runtime_s == pytest.approx(outcome.startup_s + outcome.verify_s, abs=1e-3)
    assert 0 < reports["fork"].summary["run"]["startup_s"] < 1.0


def test_a_dead_fork_server_costs_its_instance_and_is_replaced(tmp_path):
    instances = read_instances(family(tmp_path, ["killparent", "ok", "slow1"], timeout=20))
    options = BenchOptions(out=tmp_path / "out", command=FAKE, isolation="fork", grace=1.0)
    report = run_benchmark(instances, options, executor=InlineExecutor())
    died, *rest = report.outcomes
    assert died.result == "error"
    assert died.message.startswith("the fork server died while it ran the instance (killed by SIGKILL)")
    assert died.runtime_s < 10  # noticed when the server went, not at the deadline
    assert [o.result for o in rest] == ["unsat", "unsat"]


def test_isolation_follows_the_command():
    assert resolve_isolation(None) == "fork"
    assert resolve_isolation(None, FAKE) == "process"  # another verifier command: its own process
    assert resolve_isolation("fork", FAKE) == "fork"  # unless asked for, and it is a Python script
    assert resolve_isolation("process") == "process"
    with pytest.raises(ValueError, match="needs process isolation"):
        resolve_isolation("fork", ("/bin/echo", "unsat"))
    with pytest.raises(ValueError, match="isolation must be one of"):
        resolve_isolation("thread")


def test_python_commands_a_fork_server_can_run():
    assert python_target((sys.executable, "-m", "verifier", "verify")) == (["module", "verifier"], ["verify"])
    assert python_target((sys.executable, "fake.py", "--x")) == (["path", "fake.py"], ["--x"])
    assert python_target((sys.executable, "-u", "fake.py")) is None  # interpreter options need a process
    assert python_target(("/bin/echo", "fake.py")) is None
    other = Path(sys.executable).with_name("surely-not-this-python")
    assert python_target((str(other), "-m", "verifier")) is None
