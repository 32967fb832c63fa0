"""Reading instances.csv: valid files (with or without a header), and a clear error naming each malformed row."""

from __future__ import annotations

import pytest

from tests.conftest import MODELS
from verifier.bench.instances import InstancesError, read_instances, select_rows

ONNX = MODELS / "acasxu_like.onnx"
PROP_1, PROP_2 = MODELS / "acasxu_like_prop_1.vnnlib", MODELS / "acasxu_like_prop_2.vnnlib"


def write(tmp_path, text: str):
    path = tmp_path / "fam" / "instances.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_rows_in_order_with_category_from_the_folder(tmp_path):
    path = write(tmp_path, f"onnx,vnnlib,timeout\n{ONNX},{PROP_1},60\n\n{ONNX},{PROP_2}, 12.5\n")
    rows = read_instances(path, allow_outside=True)
    assert [(r.category, r.vnnlib, r.timeout, r.line) for r in rows] == [
        ("fam", str(PROP_1), 60.0, 2), ("fam", str(PROP_2), 12.5, 4)]
    assert rows[0].onnx_path == ONNX and rows[0].key == ("fam", str(ONNX), str(PROP_1))
    assert rows[0].name == "acasxu_like+acasxu_like_prop_1"


def test_paths_are_relative_to_the_csv_folder(tmp_path):
    (tmp_path / "fam" / "onnx").mkdir(parents=True)
    (tmp_path / "fam" / "onnx" / "net.onnx").write_bytes(ONNX.read_bytes())
    path = write(tmp_path, f"onnx/net.onnx,{PROP_1},30\n")
    (row,) = read_instances(path, allow_outside=True)
    assert row.onnx == "onnx/net.onnx" and row.onnx_path == (tmp_path / "fam" / "onnx" / "net.onnx").resolve()


@pytest.mark.parametrize("row, message", [
    (f"{ONNX},{PROP_1}", "expected 3 fields"),
    (f"{ONNX},{PROP_1},60,extra", "expected 3 fields"),
    (f"{ONNX},{PROP_1},sixty", "timeout 'sixty' is not a number"),
    (f"{ONNX},{PROP_1},-5", "positive number"),
    (f"{ONNX},{PROP_1},nan", "positive number"),
    (f",{PROP_1},60", "empty onnx path"),
    (f"{ONNX}.missing,{PROP_1},60", "network file not found"),
    (f"{ONNX},{PROP_1}.missing,60", "property file not found"),
    (f"{ONNX},{PROP_2},60", "repeats line 1"),
])
def test_malformed_row_is_named(tmp_path, row, message):
    path = write(tmp_path, f"{ONNX},{PROP_2},60\n{row}\n")
    with pytest.raises(InstancesError) as error:
        read_instances(path, allow_outside=True)
    assert f"{path}:2:" in str(error.value) and message in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(InstancesError, match="instances file not found"):
        read_instances(tmp_path / "nope.csv")


def test_select_rows(tmp_path):
    rows = read_instances(write(tmp_path, f"{ONNX},{PROP_1},1\n{ONNX},{PROP_2},2\n{PROP_1},{PROP_2},3\n"),
                          check_files=False, allow_outside=True)
    assert [r.timeout for r in select_rows(rows, "::2")] == [1, 3]
    assert [r.timeout for r in select_rows(rows, "1:")] == [2, 3]
    assert [r.timeout for r in select_rows(rows, "-1")] == [3]
    assert [r.timeout for r in select_rows(rows, None, limit=2)] == [1, 2]
    with pytest.raises(InstancesError, match="--rows"):
        select_rows(rows, "a:b")
