"""The command line: `verifier bounds` (table and JSON), help texts, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import verifier
from tests.conftest import MODELS, ROOT


def run_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_bounds_json_matches_api():
    model, center = MODELS / "digits_mlp.onnx", MODELS / "digits_mlp_img0.npy"
    result = run_cli("bounds", str(model), "--center", str(center), "--eps", "0.02", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["method"] == "crown" and payload["time_s"] >= 0
    assert len(payload["lower"]) == 10 and len(payload["upper"]) == 10
    x = np.load(center)
    expected = verifier.load_onnx(model).bounds(x - 0.02, x + 0.02)
    np.testing.assert_allclose(payload["lower"], expected.lower[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(payload["upper"], expected.upper[0].numpy(), rtol=1e-5, atol=1e-5)


def test_bounds_box_and_table(tmp_path):
    lower, upper = np.zeros(5, np.float32) - 0.1, np.zeros(5, np.float32) + 0.1
    np.save(tmp_path / "lo.npy", lower)
    np.save(tmp_path / "hi.npy", upper)
    result = run_cli("bounds", str(MODELS / "acasxu_like.onnx"), "--box", str(tmp_path / "lo.npy"),
                     str(tmp_path / "hi.npy"), "--method", "ibp")
    assert result.returncode == 0, result.stderr
    assert "output" in result.stdout and "ibp bounds" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]) == 5


@pytest.mark.parametrize("args,needle", [
    (["bounds", "missing.onnx", "--center", "models/digits_mlp_img0.npy", "--eps", "0.1"], "not found"),
    (["bounds", "models/digits_mlp.onnx", "--center", "models/acasxu_like_prop_1_center.npy", "--eps", "0.1"],
     "does not fit"),
    (["bounds", "models/digits_mlp.onnx", "--center", "models/digits_mlp_img0.npy"], "--eps"),
])
def test_errors_are_one_line_without_traceback(args, needle):
    result = run_cli(*args)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_help_texts():
    top = run_cli("--help")
    assert "bounds" in top.stdout
    sub = run_cli("bounds", "--help")
    assert sub.returncode == 0 and "--center" in sub.stdout and "--json" in sub.stdout and "--threads" in sub.stdout


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [block.split("\n")[1] for block in readme.split("```bash")[1:3]]
    assert "pip install" in commands[0] and "verifier " in commands[0]
    assert "pip install" in commands[1] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
