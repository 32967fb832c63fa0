"""``verifier certify`` from the command line: the files it writes, JSON, agreement of its smoothing column with
``verifier smooth``, and one-line errors (exit 2) on bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.conftest import MODELS
from verifier.cli import main

MLP = str(MODELS / "digits_mlp.onnx")
DATA = str(MODELS / "digits_test.npz")


def test_certify_writes_rows_summary_plot_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["certify", MLP, DATA, "--eps", "0.01,0.03", "--methods", "pgd,ibp,crown,lipschitz,complete",
                 "--limit", "12", "--timeout-per-input", "0.3", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "certified accuracy: 12 inputs, L-infinity ball intersected with [0, 1]" in printed
    with open(out / "certify.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["index"]) for r in rows] == list(range(12))
    labels = np.load(DATA)["labels"][:12]
    assert [int(r["label"]) for r in rows] == labels.tolist()
    for row in rows:
        for eps in ("0.01", "0.03"):
            for method in ("ibp", "crown", "complete"):
                assert int(row[f"{method}@{eps}"]) <= int(row[f"pgd@{eps}"]) <= int(row["correct"])
            assert row[f"complete_status@{eps}"] in ("certified", "falsified", "timeout", "unknown", "attacked",
                                                     "misclassified")
    assert (out / "certified_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 12 and summary["eps"] == [0.01, 0.03] and summary["clip"] == [0.0, 1.0]
    crown = np.mean([int(r["crown@0.01"]) for r in rows])
    assert summary["certified_accuracy"]["0.01"]["crown"] == pytest.approx(crown)


def test_certify_json_radius_mode(tmp_path, capsys):
    code = main(["certify", str(MODELS / "digits_orthogonal.onnx"), DATA, "--eps", "0.25,0.5", "--norm", "l2",
                 "--methods", "crown,lipschitz", "--radius", "--limit", "6", "--json", "--out", str(tmp_path / "r")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["radius"] and summary["radius_tol"] == pytest.approx(0.5 / 128)
    assert len(summary["rows"]) == 6 and "lipschitz_radius" in summary["rows"][0]
    assert set(summary["average_radius"]) == {"crown", "lipschitz"}
    assert summary["lipschitz"]["max"] == pytest.approx(2**0.5, rel=1e-6)


def test_smoothing_column_agrees_with_verifier_smooth(tmp_path, capsys):
    """Input i is smoothed with seed + i: ``verifier smooth --seed seed+i`` on that input alone agrees."""
    model = str(MODELS / "digits_smooth_mlp_sigma0.25.onnx")
    code = main(["certify", model, DATA, "--eps", "0.25", "--norm", "l2", "--methods", "smoothing", "--sigma",
                 "0.25", "--n", "2000", "--limit", "3", "--seed", "5", "--json", "--out", str(tmp_path / "c")])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    data = np.load(DATA)
    for i, row in enumerate(rows):
        single = tmp_path / f"input{i}.npz"
        np.savez(single, x=data["x"][i : i + 1], labels=data["labels"][i : i + 1])
        assert main(["smooth", model, str(single), "--sigma", "0.25", "--n", "2000", "--seed", str(5 + i),
                     "--json"]) == 0
        smooth = json.loads(capsys.readouterr().out)["rows"][0]
        assert smooth["prediction"] == row["smoothing_prediction"]
        assert smooth["radius"] == pytest.approx(row["smoothing_radius"], abs=0)


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("make, message", [
    (lambda t: _npz(t, x=np.zeros((5, 64), np.float32), labels=np.zeros(4, np.int64)), "one row per label"),
    (lambda t: _npz(t, x=np.zeros((3, 64), np.float32), labels=np.array([0, 10, 2])), "must lie in [0, 10)"),
    (lambda t: _npz(t, x=np.full((3, 64), np.nan, np.float32), labels=np.zeros(3, np.int64)), "NaN"),
    (lambda t: _npz(t, x=np.zeros((0, 64), np.float32), labels=np.zeros(0, np.int64)), "is empty"),
    (lambda t: _npz(t, x=np.zeros((3, 50), np.float32), labels=np.zeros(3, np.int64)), "does not fit"),
    (lambda t: _npz(t, inputs=np.zeros((3, 64), np.float32)), "lacks the array"),
    (lambda t: str(t / "missing.npz"), "not found"),
])
def test_bad_dataset_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    code = main(["certify", MLP, make(tmp_path), "--eps", "0.01", "--methods", "ibp", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--eps", "-0.1"], ">= 0"),
    (["--eps", "abc"], "comma-separated numbers"),
    (["--eps", "0.01", "--methods", "ibp,magic"], "unknown method"),
    (["--eps", "0.01", "--methods", "smoothing"], "--sigma"),
    (["--eps", "0.01", "--mean", "0.1,0.2"], "give 1 or 64 values"),
    (["--eps", "0.01", "--clip", "0.2,0.5"], "outside the input domain"),
    (["--eps", "0.01", "--timeout-per-input", "0"], "> 0"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(["certify", MLP, DATA, "--methods", "ibp", "--limit", "2", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    args = ["certify", MLP, DATA, "--eps", "0.01", "--methods", "ibp", "--limit", "3", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 0
    assert main(args + ["--overwrite"]) == 0
