"""``verifier smooth``: per-input rows, CSV, plot, JSON, and one-line errors on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from verifier.cli import main

MODELS = Path(__file__).resolve().parent.parent / "models"
MODEL = str(MODELS / "digits_smooth_mlp_sigma0.25.onnx")
INPUTS = str(MODELS / "digits_test.npz")


def test_smooth_writes_rows_csv_plot_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["smooth", MODEL, INPUTS, "--sigma", "0.25", "--n0", "50", "--n", "2000", "--limit", "5",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "certified accuracy by L2 radius (5 inputs, sigma 0.25)" in printed
    with open(out / "smooth.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["index", "label", "prediction", "radius", "correct", "time_s"]
    labels = np.load(INPUTS)["labels"]
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [int(r["label"]) for r in rows] == labels[:5].tolist()
    for row in rows:
        assert int(row["correct"]) == (int(row["prediction"]) == int(row["label"]))
        assert float(row["radius"]) >= 0
    assert (out / "certified_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 5 and summary["n"] == 2000 and summary["sigma"] == 0.25
    assert "smoothed classifier" in summary["guarantee"]


def test_smooth_json_is_one_object_and_reproducible(capsys):
    args = ["smooth", MODEL, INPUTS, "--sigma", "0.25", "--n", "1000", "--limit", "6", "--skip", "2", "--json",
            "--radii", "0,0.5"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in first["rows"]] == [0, 2, 4, 6, 8, 10]
    assert [r["radius"] for r in first["rows"]] == [r["radius"] for r in second["rows"]]
    assert set(first["certified_accuracy"]) == {"0", "0.5"}
    correct = [r["correct"] for r in first["rows"]]
    assert first["certified_accuracy"]["0"] == pytest.approx(sum(correct) / len(correct))


def test_smooth_runs_the_model_through_onnxruntime(capsys):
    assert main(["smooth", MODEL, INPUTS, "--sigma", "0.25", "--n", "500", "--limit", "2", "--json",
                 "--backend", "onnxruntime"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["base_classifier"].startswith("onnxruntime")


def bad_npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "inputs.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("arrays,extra,message", [
    ({"x": np.zeros((3, 64)), "y": np.zeros(3)}, [], "lacks the array(s) labels (found: x, y)"),
    ({"images": np.zeros((3, 64))}, [], "lacks the array(s) x, labels"),
    ({"x": np.zeros((3, 63)), "labels": np.zeros(3, int)}, [], "does not fit the model input"),
    ({"x": np.zeros((3, 64)), "labels": np.zeros(4, int)}, [], "N = 4 labels"),
    ({"x": np.zeros((3, 64)), "labels": np.zeros((3, 1), int)}, [], "one-dimensional"),
    ({"x": np.zeros((3, 64)), "labels": np.full(3, 10)}, [], "must lie in [0, 10)"),
    ({"x": np.zeros((3, 64)), "labels": np.full(3, 0.5)}, [], "integer class indices"),
    ({"x": np.zeros((3, 64)), "labels": np.zeros(3, int)}, ["--sigma", "0"], "sigma"),
    ({"x": np.zeros((3, 64)), "labels": np.zeros(3, int)}, ["--sigma", "-1"], "sigma"),
    ({"x": np.zeros((3, 64)), "labels": np.zeros(3, int)}, ["--alpha", "2"], "alpha"),
    ({"x": np.zeros((3, 64)), "labels": np.zeros(3, int)}, ["--n", "0"], "--n must be"),
    ({"x": np.zeros((3, 64)), "labels": np.zeros(3, int)}, ["--radii", "a,b"], "--radii"),
])
def test_bad_input_is_one_line_error(tmp_path, capsys, arrays, extra, message):
    path = bad_npz(tmp_path, **arrays)
    sigma = [] if "--sigma" in extra else ["--sigma", "0.25"]
    assert main(["smooth", MODEL, path, *sigma, *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert error.count("\n") == 1


def test_missing_files_are_one_line_errors(tmp_path, capsys):
    assert main(["smooth", MODEL, str(tmp_path / "none.npz"), "--sigma", "0.25"]) == 2
    assert "inputs file not found" in capsys.readouterr().err
    (tmp_path / "garbage.npz").write_text("not a zip")
    assert main(["smooth", MODEL, str(tmp_path / "garbage.npz"), "--sigma", "0.25"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["smooth", str(tmp_path / "none.onnx"), INPUTS, "--sigma", "0.25"]) == 2
    assert "model file not found" in capsys.readouterr().err
