"""The VNN-LIB standard command line: ``--name``, ``--version``, ``supports``, ``verify QUERY --network ...``.

Output formats are checked against the standard (and, for ``supports``, against the validators of the
``vnnlib-satisfactory`` compliance checks when installed); every ``sat`` assignment printed is re-read and
checked by running the original models with onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("vnnlib")

from verifier.cli import main  # noqa: E402


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def save_model(path, nodes, inputs, outputs, init=None):
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (init or {}).items()])
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                                       ir_version=9).SerializeToString())
    return path


@pytest.fixture
def affine(tmp_path):
    """y = relu(W x + b) with a hidden tensor ``h = W x + b``, x [1, 2] -> y [1, 2]."""
    init = {"W": np.array([[1.0, 2.0], [-1.0, 1.0]], np.float32), "b": np.array([0.5, -0.5], np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])]
    return save_model(tmp_path / "affine.onnx", nodes, [("x", [1, 2])], [("y", [1, 2])], init)


HEADER = """(vnnlib-version <2.0>)
(declare-network N
    (declare-input X float32 [1,2])
    (declare-hidden H float32 [1,2] "h")
    (declare-output Y float32 [1,2])
)
(assert (and (>= X[0,0] 0.0) (<= X[0,0] 1.0) (>= X[0,1] 0.0) (<= X[0,1] 1.0)))
"""


def write(tmp_path, body: str, name="q.vnnlib", header=HEADER):
    path = tmp_path / name
    path.write_text(header + body + "\n")
    return path


def parse_assignment(out: str) -> dict[str, tuple[str, list[int], np.ndarray]]:
    lines = out.strip().split("\n")
    values: dict = {}
    i = 1
    while i < len(lines):
        name, kind, shape = lines[i].split()
        dims = [int(d) for d in shape.strip("[]").split(",")]
        count = int(np.prod(dims))
        values[name] = (kind, dims, np.array([float(v) for v in lines[i + 1:i + 1 + count]]))
        i += 1 + count
    return values


def test_name_and_version(capsys):
    code, out, _ = run(capsys, "--name")
    assert code == 0 and out.strip() and "\n" not in out.strip()
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip().count(".") == 2


def test_supports_answers_in_the_standard_formats(capsys):
    answers = {}
    for option in ("--onnx-operators", "--onnx-opset-versions", "--onnx-element-types", "--vnnlib-versions",
                   "--hidden-node-theories", "--multiple-input-output-theories", "--multiple-network-theories",
                   "--multiple-node-comparison-theories", "--arithmetic-complexity-theories",
                   "--optimised-disjunctive-reasoning", "--serialise-assignments", "--unsat-proofs",
                   "--onnx-operators-unsat-proofs"):
        code, out, _ = run(capsys, "supports", option)
        assert code == 0
        answers[option] = out
    operators = answers["--onnx-operators"].split("\n")
    for op in ("Cast", "Equal", "Greater", "Less", "Where", "Pow", "Gemm", "Relu", "Softmax", "ConstantOfShape"):
        assert op in operators
    assert answers["--vnnlib-versions"].split() == ["1.0", "2.0"]
    assert {"float32", "real"} <= set(answers["--onnx-element-types"].split())
    assert answers["--multiple-network-theories"].split() == ["SNET", "MENET", "MINET", "MNET"]
    assert answers["--arithmetic-complexity-theories"].split() == ["BND", "OUTC", "LIN", "POLY"]
    assert answers["--serialise-assignments"] == "true\n" and answers["--unsat-proofs"] == "false\n"
    assert answers["--onnx-operators-unsat-proofs"] == ""
    compliance = pytest.importorskip("vnntest.core.compliance")
    assert compliance.validate_opset_versions(answers["--onnx-opset-versions"]) is None
    assert compliance.validate_vnnlib_versions(answers["--vnnlib-versions"]) is None
    assert compliance.validate_serialise_assignments(answers["--serialise-assignments"]) is None


def test_sat_prints_every_variable_in_declaration_order(tmp_path, capsys, affine):
    query = write(tmp_path, "(assert (>= Y[0,0] 2.5))\n(assert (> H[0,1] -0.5))")
    code, out, err = run(capsys, "verify", query, "--network", f"N={affine}", "--timeout", "30")
    assert code == 0 and out.split("\n")[0] == "sat", err
    values = parse_assignment(out)
    assert list(values) == ["X", "H", "Y"]
    assert [values[k][:2] for k in values] == [("float32", [1, 2])] * 3
    x = values["X"][2].astype(np.float32).reshape(1, 2)
    session = ort.InferenceSession(str(affine), providers=["CPUExecutionProvider"])
    y, = session.run(None, {"x": x})
    np.testing.assert_array_equal(values["Y"][2], y.reshape(-1).astype(np.float64))
    assert y[0, 0] >= 2.5 and values["H"][2][1] > -0.5


def test_unsat_and_serialised_assignments(tmp_path, capsys, affine):
    code, out, _ = run(capsys, "verify", write(tmp_path, "(assert (>= Y[0,0] 3.6))"), "--network", f"N={affine}")
    assert (code, out) == (0, "unsat\n")
    folder = tmp_path / "witness"
    code, out, _ = run(capsys, "verify", write(tmp_path, "(assert (<= Y[0,1] 0.0))"), "--network", f"N={affine}",
                       "--serialise-assignments", folder)
    assert (code, out) == (0, "sat\n")
    tensors = {p.stem: onnx.numpy_helper.to_array(onnx.load_tensor(str(p))) for p in folder.glob("*.pb")}
    assert sorted(tensors) == ["H", "X", "Y"]
    assert tensors["X"].dtype == np.float32 and tensors["X"].shape == (1, 2) and tensors["Y"][0, 1] <= 0


def test_old_form_takes_a_2_0_query(tmp_path, capsys, affine):
    code, out, _ = run(capsys, "verify", affine, write(tmp_path, "(assert (>= Y[0,0] 3.6))"))
    assert (code, out) == (0, "unsat\n")


def test_several_networks_equal_to_and_multiple_inputs(tmp_path, capsys):
    two = save_model(tmp_path / "two.onnx", [helper.make_node("Sub", ["a", "b"], ["d"])],
                     [("a", [1]), ("b", [1])], [("d", [1])])
    relu = save_model(tmp_path / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])], [("x", [1])], [("y", [1])])
    header = """(vnnlib-version <2.0>)
(declare-network F
    (declare-input A float32 [1])
    (declare-input B float32 [1])
    (declare-output D float32 [1]))
(declare-network G
    (declare-input U float32 [1])
    (declare-output V float32 [1]))
(declare-network G2 (equal-to G)
    (declare-input U2 float32 [1])
    (declare-output V2 float32 [1]))
(assert (and (>= A[0] 0.0) (<= A[0] 1.0) (>= B[0] 2.0) (<= B[0] 3.0)))
(assert (and (>= U[0] -1.0) (<= U[0] 1.0) (>= U2[0] 2.0) (<= U2[0] 3.0)))
"""
    args = ["--network", f"F={two}", "--network", f"G={relu}"]
    code, out, _ = run(capsys, "verify", write(tmp_path, "(assert (>= V[0] V2[0]))", header=header), *args)
    assert (code, out) == (0, "unsat\n")                   # V = relu(U) <= 1 < 2 <= V2
    code, out, _ = run(capsys, "verify", write(tmp_path, "(assert (<= D[0] (- V2[0] 4.0)))", header=header), *args)
    assert code == 0 and out.startswith("sat\n")           # D = A - B in [-3, -1], V2 - 4 in [-2, -1]
    values = parse_assignment(out)
    assert list(values) == ["A", "B", "D", "U", "V", "U2", "V2"]
    assert values["D"][2][0] <= values["V2"][2][0] - 4.0


@pytest.mark.parametrize("body, networks, pattern", [
    ("(assert (>= Y[0,0] 1.0))", ["N={m}", "M={m}"], r"q\.vnnlib:2:1: --network M=\.\.\.: the query declares no "),
    ("(assert (>= Y[0,0] 1.0))", ["N={m}", "N={m}"], r"--network N is given twice"),
    ("(assert (>= Z[0] 1.0))", ["N={m}"], r"q\.vnnlib:8:13: undeclared variable"),
    ("(assert (>= Y[0,0] 1))", ["N={m}"], r"q\.vnnlib:8:20: type mismatch"),
    ("(assert (>= Y[0,0] 1.0)", ["N={m}"], r"q\.vnnlib:8:\d+: syntax error"),
])
def test_bad_input_is_one_line_with_position_and_exit_2(tmp_path, capsys, affine, body, networks, pattern):
    import re

    args = [a for n in networks for a in ("--network", n.format(m=affine))]
    code, out, err = run(capsys, "verify", write(tmp_path, body), *args)
    assert code == 2 and out == "" and len(err.strip().split("\n")) == 1, err
    assert re.search(pattern, err), err


def test_a_network_without_a_model_is_an_error(tmp_path, capsys, affine):
    text = HEADER.split("(assert")[0] + "(declare-network M\n    (declare-input U float32 [1])\n" \
        "    (declare-output V float32 [1])\n)\n(assert (>= U[0] 0.0))\n(assert (<= U[0] 1.0))\n"
    query = write(tmp_path, "(assert (>= V[0] 1.0))", header=text)
    code, out, err = run(capsys, "verify", query, "--network", f"N={affine}")
    assert code == 2 and out == "" and "q.vnnlib:7:1: no model for network M: give --network M=MODEL.onnx" in err


def test_model_mismatches_are_reported_at_the_declaration(tmp_path, capsys, affine):
    cases = {
        "shape": (HEADER.replace("X float32 [1,2]", "X float32 [1,3]"), r":3:5: X is declared with shape \[1,3\]"),
        "type": (HEADER.replace("Y float32 [1,2]", "Y float64 [1,2]"), r":5:5: Y is declared float64 but"),
        "hidden": (HEADER.replace('"h"', '"nowhere"'), r":4:5: .* has no tensor named 'nowhere'"),
        "count": (HEADER.replace("    (declare-hidden H float32 [1,2] \"h\")\n",
                                 "    (declare-input X2 float32 [1])\n"), r":2:1: network N declares 2 input"),
    }
    import re

    for name, (header, pattern) in cases.items():
        query = write(tmp_path, "(assert (>= Y[0,0] 1.0))", name=f"{name}.vnnlib", header=header)
        code, out, err = run(capsys, "verify", query, "--network", f"N={affine}")
        assert code == 2 and out == "" and re.search(pattern, err), (name, err)


def test_shipped_two_copy_query_finds_a_witness_with_equal_inputs(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "models"
    code, out, _ = run(capsys, "verify", root / "acasxu_like_monotone.vnnlib", "--network",
                       f"near={root / 'acasxu_like.onnx'}", "--timeout", "60")
    assert code == 0 and out.startswith("sat\n")
    values = parse_assignment(out)
    x, u = values["X"][2], values["U"][2]
    assert (x[1:] == u[1:]).all() and abs(values["V"][2][0] - values["Y"][2][0]) > 0.01
    code, out, _ = run(capsys, "verify", root / "acasxu_like_prop_1_v2.vnnlib", "--network",
                       f"acas={root / 'acasxu_like.onnx'}", "--timeout", "60")
    assert (code, out) == (0, "unsat\n")


def test_a_1_0_property_through_the_standard_form(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "models"
    model = f"N={root / 'acasxu_like.onnx'}"
    code, out, _ = run(capsys, "verify", root / "acasxu_like_prop_1.vnnlib", "--network", model, "--timeout", "60")
    assert (code, out) == (0, "unsat\n")
    code, out, _ = run(capsys, "verify", root / "acasxu_like_prop_2.vnnlib", "--network", model, "--timeout", "60")
    assert code == 0 and out.startswith("sat\n((X_0 ")
