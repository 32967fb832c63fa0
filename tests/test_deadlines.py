"""Deadlines that hold: ``verifier verify --timeout T`` on instances it cannot decide in T seconds answers, and
writes its result file, by T counted from the start of its process (at most 0.3 s late), also on a loaded
machine; ``timeout`` answers carry the global lower bound and the open domains; progress is reported.

The instances are real hard ones from the public VNN-COMP families (skipped without ../shared/benchmarks);
``--timeout 2`` runs by default, 5 and 10 with -m slow.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import MODELS, ROOT, shared_family

#: VNN-COMP instances the verifier cannot decide in 10 s: (family, onnx, vnnlib)
HARD = [
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_2_0.05.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img9410-eps0.043137254901960784.vnnlib"),
]
LATE = 0.3


def _run(family: str, onnx: str, vnnlib: str, timeout: float, tmp_path) -> tuple[float, dict, str]:
    folder = shared_family(family)
    results = tmp_path / "result.txt"
    started = time.monotonic()   # before the process exists: its own start is later
    process = subprocess.run([sys.executable, "-m", "verifier", "verify", str(folder / onnx), str(folder / vnnlib),
                              "--timeout", str(timeout), "--results", str(results), "--json"],
                             capture_output=True, text=True, cwd=ROOT, timeout=timeout + 60,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wall = time.monotonic() - started
    assert process.returncode == 0, process.stderr[-2000:]
    assert "Traceback" not in process.stderr
    payload = json.loads(process.stdout.strip().splitlines()[-1])
    return wall, payload, results.read_text() if results.is_file() else ""


def _check(timeout: float, tmp_path) -> None:
    for family, onnx, vnnlib in HARD:
        wall, payload, written = _run(family, onnx, vnnlib, timeout, tmp_path)
        assert wall <= timeout + LATE, f"{family}: answered {wall - timeout:.2f} s after --timeout {timeout}"
        assert payload["status"] in ("timeout", "unknown", "sat", "unsat")
        assert written.splitlines()[0] == payload["status"]   # the result file is out too, and agrees
        assert payload["process_s"] <= timeout + LATE


def test_timeout_2_from_process_start(tmp_path):
    _check(2.0, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("timeout", [5.0, 10.0])
def test_timeout_5_and_10_from_process_start(timeout, tmp_path):
    _check(timeout, tmp_path)


def test_timeout_answer_carries_the_global_bound_and_open_domains():
    import verifier
    from verifier.progress import SearchMonitor

    folder = shared_family("mnist_fc")
    stream = io.StringIO()
    monitor = SearchMonitor(stream=stream, interval=0.5)
    result = verifier.verify(folder / HARD[0][1], folder / HARD[0][2], timeout=4.0,
                             options=verifier.VerifyOptions(monitor=monitor))
    assert result.status == "timeout"
    assert result.lower_bound is not None and result.lower_bound < 0    # no proof, so below 0
    assert result.open_domains is not None and result.open_domains >= 1
    payload = json.loads(result.to_json())
    assert payload["lower_bound"] == result.lower_bound and payload["open_domains"] == result.open_domains
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all("elapsed" in line and "left" in line for line in lines)
    assert any("bound" in line and "open" in line for line in lines)


def test_root_proof_needs_no_search():
    """A property CROWN proves at the root (digits MLP, image 0, eps 0.1: margin >= 2.2) is answered by that
    one bound: no attack, no search; dense sampling of the box agrees (every sample keeps the label)."""
    import numpy as np

    import verifier

    result = verifier.verify(MODELS / "digits_mlp.onnx", MODELS / "digits_mlp_img0_eps0.1.vnnlib", timeout=60)
    assert result.status == "unsat" and result.stats["method"] == "crown"
    assert set(result.stats["phases"]) == {"load_model", "load_property", "root_bound"}
    spec = verifier.spec.parse_vnnlib(MODELS / "digits_mlp_img0_eps0.1.vnnlib", 64, 10)
    net = verifier.load_onnx(MODELS / "digits_mlp.onnx")
    lower, upper = spec.cases[0].lower, spec.cases[0].upper
    samples = lower + (upper - lower) * np.random.default_rng(0).random((4000, lower.size))
    samples[:2000] = np.where(samples[:2000] > (lower + upper) / 2, upper, lower)   # vertices
    assert (net.forward(samples).reshape(len(samples), -1).argmax(1) == 2).all()
