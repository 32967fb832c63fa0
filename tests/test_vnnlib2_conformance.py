"""The VNN-LIB standard's conformance suite, ``vnnlib-satisfactory`` (178 small queries with known answers).

The slow test runs the whole suite against ``conformance/verifier-solver`` (this checkout's
``python -m verifier``): one process per query (about 3-4 s each on a quiet 2-core machine, nearly all of it
Python and torch start-up), 10-15 minutes in all. It fails on any ``fail`` (a wrong answer), ``suspect``
(``unknown``), ``error`` (a crash or a time-out) and on any query skipped because ``supports`` said no. The
fast test decides a handful of the hardest queries in-process (strictness, floating-point types, several
networks, hidden nodes, polynomial constraints, integer outputs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOLVER = Path(__file__).resolve().parents[1] / "conformance" / "verifier-solver"
HARD = ["softmax01", "softmax03", "sigmoid03", "network_isomorphic01", "network_equal01", "arithmetic_poly02",
        "arithmetic_lin01", "cast07", "shape01", "where05", "equal04", "multi_io04", "pow06", "hidden02",
        "maxpool03", "relu01"]


def test_the_hardest_queries_in_process(tmp_path, monkeypatch):
    pytest.importorskip("vnnlib")
    generator = pytest.importorskip("vnntest.core.generator")
    from verifier.frontend.query_verify import verify_query

    monkeypatch.chdir(tmp_path)
    categories = sorted({name.rstrip("0123456789") for name in HARD})
    manifest = [entry for category in categories
                for entry in generator.generate_all_tests(suite="full", node_type=category)]
    entries = {entry["name"]: entry for entry in manifest}
    for name in HARD:
        entry = entries[name]
        folder = tmp_path / ".vnnlib-satisfactory" / "tests" / entry["category"]
        networks = {k: folder / v for k, v in entry["networks"].items()}
        result = verify_query(folder / entry["vnnlib"], networks, timeout=60)
        assert result.status == entry["expected"].lower(), f"{name}: {result.status} ({result.message})"


@pytest.mark.slow
def test_vnnlib_satisfactory_passes_every_query(tmp_path):
    pytest.importorskip("vnntest")
    pytest.importorskip("vnnlib")
    runner = shutil.which("vnnlib-satisfactory")
    if runner is None:
        pytest.skip("vnnlib-satisfactory is not installed (pip install vnnlib-satisfactory==1.0.1)")
    env = dict(os.environ, VERIFIER_PYTHON=sys.executable)
    for check in ("opset", "vnnlib", "serialise-assignments"):
        result = subprocess.run([runner, "compliance", check, "--solver", str(SOLVER)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and "FAIL" not in result.stdout, result.stdout + result.stderr
    result = subprocess.run([runner, "run", "--solver", str(SOLVER), "--timeout", "120", "--no-verbose"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=4 * 3600)
    report = json.loads((tmp_path / ".vnnlib-satisfactory" / "report.json").read_text())
    summary = report["summary"]
    bad = [f"{r['test_id']}: expected {r['expected']}, got {r['actual']} ({r['outcome']}) {r['stderr'][-300:]}"
           for r in report["results"] if r["outcome"] != "pass"]
    bad += [f"{s['test_id']}: skipped (missing {s['missing_op']})" for s in report["skipped"]]
    assert not bad, "\n".join(bad) + "\n" + result.stdout[-2000:]
    assert summary["passed"] == summary["total"] == 178, summary
