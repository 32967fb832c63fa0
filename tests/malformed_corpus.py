"""A corpus of malformed inputs (models, properties, arrays, instances files, options) and a runner that feeds
each one to the command line and to the API.

Every case must end in one line on stderr and exit code 2 through ``verifier.cli.main`` (no traceback), and in
a :class:`verifier.errors.VerifierError` (nothing else) through the API. The runner is a child process with
its address space capped (``resource.setrlimit``) and each case under an alarm, so a bomb that allocates or a
case that hangs fails the test instead of the machine::

    python -m tests.malformed_corpus DIR [--only NAME,...] [--cap-gib G] [--case-timeout S]

writes the corpus into DIR, runs the cases and prints one JSON line per case: name, kind, exit code, stderr,
API outcome (``ok``, ``VerifierError subclass: message`` or ``BAD ...``) and seconds.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import signal
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
TIMEOUT = "8"   # --timeout of the verify runs: no case should get anywhere near it


@dataclass
class Case:
    """One malformed input: ``argv`` for ``verifier.cli.main`` and ``api``, a call that must raise
    :class:`VerifierError`. ``needle``: a fragment the one-line message must contain (case-insensitive)."""

    name: str
    kind: str
    argv: list[str] | None
    api: Callable[[], object] | None = None
    needle: str = ""
    stdout_lines: int | None = None   # lines expected on stdout (the verdict, for an unwritable --results)
    extra: dict = field(default_factory=dict)


# -- building blocks ---------------------------------------------------------------------------------------------------

def value_info(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs=None, outputs=None, initializers=(), opset=13, ir_version=8, value_infos=()):
    graph = helper.make_graph(list(nodes), "corpus", inputs if inputs is not None else [value_info("x", [1, 2])],
                              outputs if outputs is not None else [value_info("y", [1, 2])], list(initializers),
                              value_info=list(value_infos))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def const(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def gemm_relu(**kwargs):
    """The valid base model: y = relu(x W^T + b), 2 -> 2."""
    init = [const("W", np.eye(2, dtype=np.float32)), const("b", np.zeros(2, np.float32))]
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="gemm", transB=1),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    return model(nodes, initializers=init, **kwargs)


def bomb_then_add(bomb_nodes, bomb_output: str, initializers=()):
    """x + (a constant built by ``bomb_nodes``): the constant gets folded, unless refused first."""
    nodes = list(bomb_nodes) + [helper.make_node("Add", ["x", bomb_output], ["y"], name="add")]
    return model(nodes, initializers=list(initializers))


PROPERTY_2x2 = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 0))
(assert (<= X_0 1))
(assert (>= X_1 0))
(assert (<= X_1 1))
(assert (<= Y_0 -1))
"""


# -- the corpus --------------------------------------------------------------------------------------------------------

def model_cases(folder: Path) -> list[Case]:
    d = folder / "models"
    d.mkdir(parents=True, exist_ok=True)
    prop = folder / "prop_2x2.vnnlib"
    prop.write_text(PROPERTY_2x2)
    made: dict[str, tuple[bytes | onnx.ModelProto, str]] = {}

    def add(name: str, content, needle: str = "") -> None:
        made[name] = (content, needle)

    add("empty_file", b"", "empty")
    add("random_bytes", os.urandom(64) + b"\xff" * 64, "not a valid onnx model")
    add("text_file", b"this is not a model\n" * 10, "")
    valid = gemm_relu().SerializeToString()
    add("truncated", valid[: len(valid) // 2], "")
    add("no_graph", helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString(), "")
    add("no_nodes", model([], outputs=[value_info("z", [1, 2])]), "no nodes")
    add("two_inputs", model([helper.make_node("Add", ["x", "x2"], ["y"])], inputs=[value_info("x", [1, 2]),
                                                                                   value_info("x2", [1, 2])]),
        "exactly one input")
    add("no_inputs", model([helper.make_node("Constant", [], ["y"], value=const("v", np.zeros((1, 2), np.float32)))],
                           inputs=[]), "exactly one input")
    add("two_outputs", model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["x"], ["z"])],
                             outputs=[value_info("y", [1, 2]), value_info("z", [1, 2])]), "exactly one output")
    add("input_1e9", model([helper.make_node("Relu", ["x"], ["y"])], inputs=[value_info("x", [1, 10**9])],
                           outputs=[value_info("y", [1, 10**9])]), "limit")
    add("input_1e12_split", model([helper.make_node("Relu", ["x"], ["y"])], inputs=[value_info("x", [1, 10**6, 10**6])],
                                  outputs=[value_info("y", [1, 10**6, 10**6])]), "limit")
    add("input_negative_dim", model([helper.make_node("Relu", ["x"], ["y"])], inputs=[value_info("x", [1, -5])]),
        "positive")
    add("input_symbolic_dim", model([helper.make_node("Relu", ["x"], ["y"])], inputs=[value_info("x", [1, "n"])]),
        "not fixed")
    add("input_int64", model([helper.make_node("Relu", ["x"], ["y"])],
                             inputs=[value_info("x", [1, 2], TensorProto.INT64)]), "float or double")
    add("input_string", model([helper.make_node("Identity", ["x"], ["y"])],
                              inputs=[value_info("x", [1, 2], TensorProto.STRING)]), "float or double")
    huge = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[10**6, 10**6], raw_data=b"\x00" * 16)
    add("initializer_claims_1e12", model([helper.make_node("MatMul", ["x", "W"], ["y"])], initializers=[huge]),
        "limit")
    short = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[2, 2], raw_data=b"\x00" * 7)
    add("initializer_short_raw", model([helper.make_node("MatMul", ["x", "W"], ["y"])], initializers=[short]),
        "cannot be read")
    negative = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[2, -2], raw_data=b"")
    add("initializer_negative_dim", model([helper.make_node("MatMul", ["x", "W"], ["y"])], initializers=[negative]),
        "negative")
    for bad in ("nan", "inf"):
        w = np.eye(2, dtype=np.float32)
        w[0, 1] = float(bad)
        add(f"initializer_{bad}", model([helper.make_node("MatMul", ["x", "W"], ["y"])], initializers=[const("W", w)]),
            "nan" if bad == "nan" else "infinite")
    add("constant_node_nan", model([
        helper.make_node("Constant", [], ["c"], value=const("v", np.array([np.nan, 1], np.float32))),
        helper.make_node("Add", ["x", "c"], ["y"])]), "nan")
    # constants that unfold to terabytes
    add("constantofshape_bomb", bomb_then_add([helper.make_node("ConstantOfShape", ["s"], ["c"], name="bomb")], "c",
                                              [const("s", np.array([10**6, 10**6], np.int64))]), "limit")
    add("constantofshape_bomb_3d", bomb_then_add([helper.make_node("ConstantOfShape", ["s"], ["c"], name="bomb")], "c",
                                                 [const("s", np.array([4096, 4096, 4096], np.int64))]), "limit")
    add("expand_bomb", bomb_then_add([helper.make_node("Expand", ["one", "s"], ["c"], name="bomb")], "c",
                                     [const("one", np.ones((1,), np.float32)),
                                      const("s", np.array([10**5, 10**5], np.int64))]), "limit")
    add("expand_variable_bomb", model([helper.make_node("Expand", ["x", "s"], ["y"], name="bomb")],
                                      initializers=[const("s", np.array([10**5, 10**5], np.int64))],
                                      outputs=[value_info("y", None)]), "limit")
    add("tile_bomb", bomb_then_add([helper.make_node("Tile", ["one", "r"], ["c"], name="bomb")], "c",
                                   [const("one", np.ones((1, 1), np.float32)),
                                    const("r", np.array([10**5, 10**5], np.int64))]), "limit")
    add("tile_variable_bomb", model([helper.make_node("Tile", ["x", "r"], ["y"], name="bomb")],
                                    initializers=[const("r", np.array([10**5, 10**5], np.int64))],
                                    outputs=[value_info("y", None)]), "limit")
    add("range_bomb", bomb_then_add([helper.make_node("Range", ["a", "b", "c"], ["r"], name="bomb")], "r",
                                    [const("a", np.array(0.0, np.float32)), const("b", np.array(1e12, np.float32)),
                                     const("c", np.array(1.0, np.float32))]), "limit")
    add("range_zero_step", bomb_then_add([helper.make_node("Range", ["a", "b", "c"], ["r"], name="bomb")], "r",
                                         [const("a", np.array(0.0, np.float32)), const("b", np.array(1.0, np.float32)),
                                          const("c", np.array(0.0, np.float32))]), "")
    add("pad_bomb", bomb_then_add([helper.make_node("Pad", ["one", "p"], ["c"], name="bomb")], "c",
                                  [const("one", np.ones((1, 1), np.float32)),
                                   const("p", np.array([0, 0, 10**6, 10**6], np.int64))]), "limit")
    add("outer_product_bomb", bomb_then_add([helper.make_node("MatMul", ["u", "v"], ["c"], name="bomb")], "c",
                                            [const("u", np.ones((100000, 1), np.float32)),
                                             const("v", np.ones((1, 100000), np.float32))]), "limit")
    add("broadcast_add_bomb", bomb_then_add([helper.make_node("Add", ["u", "v"], ["c"], name="bomb")], "c",
                                            [const("u", np.ones((100000, 1), np.float32)),
                                             const("v", np.ones((1, 100000), np.float32))]), "limit")
    add("resize_bomb", bomb_then_add([helper.make_node("Resize", ["one", "", "sc"], ["c"], name="bomb")], "c",
                                     [const("one", np.ones((1, 1, 2, 2), np.float32)),
                                      const("sc", np.array([1, 1, 1e6, 1e6], np.float32))]), "limit")
    add("gather_bomb", bomb_then_add([helper.make_node("Gather", ["data", "idx"], ["c"], name="bomb")], "c",
                                     [const("data", np.ones((1, 50000), np.float32)),
                                      const("idx", np.zeros(100000, np.int64))]), "limit")
    add("matmul_work_bomb", bomb_then_add([helper.make_node("MatMul", ["u", "v"], ["c"], name="bomb"),
                                           helper.make_node("ReduceSum", ["c"], ["s"], keepdims=0)], "s",
                                          [const("u", np.ones((2000, 2000), np.float32)),
                                           const("v", np.ones((2000, 2000), np.float32))]), "multiply-adds")
    add("einsum_bomb", bomb_then_add([helper.make_node("Einsum", ["u", "v"], ["c"], equation="i,j->ij", name="bomb")],
                                     "c", [const("u", np.ones(100000, np.float32)),
                                           const("v", np.ones(100000, np.float32))]), "limit")
    # control flow: a loop of 10^12 iterations folded would run for ever
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                              helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
                             [value_info("i", [], TensorProto.INT64), value_info("cond_in", [], TensorProto.BOOL),
                              value_info("v_in", [1])], [value_info("cond_out", [], TensorProto.BOOL),
                                                         value_info("v_out", [1])],
                             [const("one", np.ones(1, np.float32))])
    add("loop_1e12", bomb_then_add([helper.make_node("Loop", ["n", "t", "v0"], ["c"], body=body, name="loop")], "c",
                                   [const("n", np.array(10**12, np.int64)), const("t", np.array(True)),
                                    const("v0", np.zeros(1, np.float32))]), "control flow")
    branch = helper.make_graph([helper.make_node("Constant", [], ["z"], value=const("v", np.zeros(2, np.float32)))],
                               "branch", [], [value_info("z", [2])])
    add("if_node", bomb_then_add([helper.make_node("If", ["t"], ["c"], then_branch=branch, else_branch=branch,
                                                   name="if")], "c", [const("t", np.array(True))]), "control flow")
    add("opset_99", gemm_relu(opset=99), "onnxruntime")
    add("ir_version_99", gemm_relu(ir_version=99), "")
    add("unsupported_op", model([helper.make_node("LpNormalization", ["x"], ["y"], name="norm")]), "unsupported")
    add("custom_domain_op", model([helper.make_node("FancyOp", ["x"], ["y"], domain="com.example", name="fancy")]),
        "")
    add("huge_node_name", model([helper.make_node("LpNormalization", ["x"], ["y"], name="n" * 200_000)]),
        "unsupported")
    add("leakyrelu_alpha_inf", model([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=float("inf"), name="lr")]),
        "alpha")
    add("leakyrelu_alpha_nan", model([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=float("nan"), name="lr")]),
        "alpha")
    add("elu_alpha_inf", model([helper.make_node("Elu", ["x"], ["y"], alpha=float("-inf"), name="elu")]), "alpha")
    add("two_writers", model([helper.make_node("Relu", ["x"], ["y"], name="a"),
                              helper.make_node("Sigmoid", ["x"], ["y"], name="b")]), "written by two nodes")
    add("overwrites_input", model([helper.make_node("Relu", ["x"], ["x"], name="a"),
                                   helper.make_node("Relu", ["x"], ["y"], name="b")]), "overwrites")
    add("overwrites_weight", model([helper.make_node("Relu", ["x"], ["W"], name="a"),
                                    helper.make_node("Add", ["x", "W"], ["y"], name="b")],
                                   initializers=[const("W", np.zeros(2, np.float32))]), "overwrites")
    add("cycle", model([helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                        helper.make_node("Relu", ["a"], ["b"], name="n2"),
                        helper.make_node("Relu", ["b"], ["y"], name="n3")]), "cycle")
    add("undefined_input", model([helper.make_node("Add", ["x", "ghost"], ["y"], name="n")]), "undefined")
    add("no_node_outputs", model([helper.make_node("Relu", ["x"], [], name="void"),
                                  helper.make_node("Relu", ["x"], ["y"])]), "no outputs")
    add("output_never_written", model([helper.make_node("Relu", ["x"], ["h"])]), "")
    # (a model whose output is a constant is valid since VNN-LIB 2.0 support: tests/test_vnnlib2_ops.py)
    add("gemm_shape_mismatch", model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="g")],
                                     initializers=[const("W", np.ones((2, 5), np.float32))]), "")
    add("reshape_impossible", model([helper.make_node("Reshape", ["x", "s"], ["y"], name="r")],
                                    initializers=[const("s", np.array([1, 7], np.int64))]), "")
    add("conv_kernel_too_big", model([helper.make_node("Conv", ["x", "W"], ["y"], name="c")],
                                     inputs=[value_info("x", [1, 1, 2, 2])],
                                     initializers=[const("W", np.ones((1, 1, 5, 5), np.float32))],
                                     outputs=[value_info("y", None)]), "")
    add("conv_pads_bomb", model([helper.make_node("Conv", ["x", "W"], ["y"], name="c", pads=[10**6] * 4)],
                                inputs=[value_info("x", [1, 1, 2, 2])],
                                initializers=[const("W", np.ones((1, 1, 1, 1), np.float32))],
                                outputs=[value_info("y", None)]), "limit")
    add("fold_fails", bomb_then_add([helper.make_node("Reshape", ["a", "s"], ["c"], name="bad_reshape")], "c",
                                    [const("a", np.ones(3, np.float32)), const("s", np.array([7], np.int64))]),
        "fold")
    add("bad_attribute_type", model([helper.make_node("Flatten", ["x"], ["y"], axis="one", name="f")]), "")
    # external data that points out of the model's folder
    outside = model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                    initializers=[TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[2, 2])])
    entry = outside.graph.initializer[0]
    entry.data_location = TensorProto.EXTERNAL
    entry.external_data.add(key="location", value="../../../../../../etc/hostname")
    add("external_data_escape", outside, "inside the model's folder")
    missing = onnx.ModelProto()
    missing.CopyFrom(outside)
    missing.graph.initializer[0].external_data[0].value = "weights.bin"
    add("external_data_missing", missing, "inside the model's folder")

    cases = []
    for name, (content, needle) in made.items():
        path = d / f"{name}.onnx"
        path.write_bytes(content if isinstance(content, bytes) else content.SerializeToString())
        cases.append(Case(f"model/{name}", "model", ["verify", str(path), str(prop), "--timeout", TIMEOUT],
                          _api_load(path), needle))
    cases.append(Case("model/missing_file", "model", ["verify", str(d / "nope.onnx"), str(prop)],
                      _api_load(d / "nope.onnx"), "not found"))
    cases.append(Case("model/directory", "model", ["verify", str(d), str(prop)], _api_load(d), "folder"))
    cases.append(Case("model/bounds_cli_bomb", "model", ["bounds", str(d / "constantofshape_bomb.onnx"), "--box",
                                                         str(MODELS / "acasxu_like_prop_1_center.npy"),
                                                         str(MODELS / "acasxu_like_prop_1_center.npy")], None, "limit"))
    cases.append(Case("model/load_limit_option", "model",
                      ["bounds", str(MODELS / "digits_cnn.onnx"), "--center", str(MODELS / "digits_cnn_img0.npy"),
                       "--eps", "0.1", "--load-limit-gib", "0.00001"], _api_load(MODELS / "digits_cnn.onnx", 10_000),
                      "limit"))
    return cases


def _api_load(path: Path, limit: int | None = None):
    def call():
        import verifier

        return verifier.load_onnx(path, memory_limit=limit)

    return call


def property_cases(folder: Path) -> list[Case]:
    d = folder / "properties"
    d.mkdir(parents=True, exist_ok=True)
    net = MODELS / "acasxu_like.onnx"
    good = (MODELS / "acasxu_like_prop_1.vnnlib").read_text()
    made: dict[str, tuple[bytes, str]] = {}

    def add(name: str, content: bytes | str, needle: str = "") -> None:
        made[name] = (content.encode() if isinstance(content, str) else content, needle)

    def declarations(n_in=5, n_out=5) -> str:
        return "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + \
            "".join(f"(declare-const Y_{j} Real)\n" for j in range(n_out))

    bounds = "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(5))
    add("empty", "", "declares no input")
    add("binary", os.urandom(100) + b"\xff\xfe", "")
    add("latin1", "; caf\xe9\n".encode("latin-1") + good.encode(), "utf-8")
    add("unbalanced_open", good + "(assert (<= Y_0 1)", "never closed")
    add("unbalanced_close", good + "))", "unbalanced")
    add("huge_token", declarations() + bounds + "(assert (<= Y_0 " + "9" * 300_000 + "x))\n", "")
    add("huge_symbol", declarations() + "(" + "a" * 500_000 + ")", "unknown command")
    add("deep_nesting", declarations() + bounds + "(assert " + "(and " * 50_000 + "(<= Y_0 1)" + ")" * 50_001 + "\n",
        "nested too deeply")
    add("only_parens", "(" * 200_000, "")
    add("too_many_cases", declarations() + bounds + "".join(
        "(assert (or (<= Y_0 1) (<= Y_1 1)))\n" for _ in range(40)), "cases")
    add("undeclared", declarations() + bounds + "(assert (<= Y_9 1))\n", "undeclared")
    add("wrong_input_count", declarations(3, 5) + "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n"
                                                         for i in range(3)), "inputs")
    add("wrong_output_count", declarations(5, 2) + bounds, "outputs")
    add("missing_bound", declarations() + "(assert (>= X_0 0))\n", "no lower bound")
    add("nan_number", declarations() + bounds + "(assert (<= Y_0 nan))\n", "")
    add("overflow_number", declarations() + bounds + "(assert (<= Y_0 1e999))\n", "out of range")
    add("inf_coefficient", declarations() + bounds + "(assert (<= (* 1e300 1e300 Y_0) 1))\n", "not a finite")
    add("index_too_large", "(declare-const X_" + "1" * 5000 + " Real)\n", "index too large")
    add("int_sort", "(declare-const X_0 Int)\n", "only Real")
    add("mixing", declarations() + bounds + "(assert (<= X_0 Y_0))\n", "mixes")
    add("not_operator", declarations() + bounds + "(assert (not (<= Y_0 1)))\n", "unknown operator")
    add("product_of_vars", declarations() + bounds + "(assert (<= (* Y_0 Y_1) 1))\n", "product")
    add("divide_by_zero", declarations() + bounds + "(assert (<= (/ Y_0 0) 1))\n", "non-zero")
    add("define_fun", "(define-fun f () Real 1)\n", "unknown command")
    add("nul_bytes", good.replace("(assert", "\x00(assert", 1), "")
    packed = gzip.compress(good.encode())
    made["truncated.vnnlib.gz"] = (packed[: len(packed) // 2], "truncated")
    made["corrupt.vnnlib.gz"] = (packed[:10] + b"\x00" * 40 + packed[50:], "corrupt")
    made["not_gzip.vnnlib.gz"] = (b"plain text, no gzip\n", "")
    cases = []
    for name, (content, needle) in made.items():
        path = d / (name if name.endswith(".gz") else f"{name}.vnnlib")
        path.write_bytes(content)
        cases.append(Case(f"property/{name}", "property", ["verify", str(net), str(path), "--timeout", TIMEOUT],
                          _api_parse(path), needle))
    # a gzip bomb: 64 MiB of blanks in a few hundred bytes, against a limit that allows 1 MiB of text
    bomb = d / "bomb.vnnlib.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        handle.write(good.encode())
        for _ in range(64):
            handle.write(b" " * (1 << 20))
    cases.append(Case("property/gzip_bomb", "property",
                      ["verify", str(net), str(bomb), "--timeout", TIMEOUT, "--load-limit-gib", "0.01"],
                      _api_parse(bomb, memory_limit=10 << 20), "unpacks to more than"))
    many = d / "many_assertions.vnnlib"
    many.write_text(good)
    cases.append(Case("property/assertion_limit", "property", None, _api_parse(many, max_assertions=3), "assertions"))
    cases.append(Case("property/case_memory_limit", "property", None,
                      _api_parse(MODELS / "digits_cnn_img0_eps0.1.vnnlib", n=(64, 10), memory_limit=2000), "limit"))
    cases.append(Case("property/missing", "property", ["verify", str(net), str(d / "nope.vnnlib")],
                      _api_parse(d / "nope.vnnlib"), "cannot read"))
    cases.append(Case("property/directory", "property", ["verify", str(net), str(d)], _api_parse(d), "folder"))
    return cases


def _api_parse(path: Path, n=(5, 5), **kwargs):
    def call():
        from verifier.spec import parse_vnnlib

        return parse_vnnlib(path, n_inputs=n[0], n_outputs=n[1], **kwargs)

    return call


def array_cases(folder: Path) -> list[Case]:
    d = folder / "arrays"
    d.mkdir(parents=True, exist_ok=True)
    net = MODELS / "digits_mlp.onnx"
    center = np.load(MODELS / "digits_mlp_img0.npy")
    arrays: dict[str, tuple[bytes, str]] = {}

    def npy(array) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        return buffer.getvalue()

    for name, value, needle in (("nan", np.where(np.arange(center.size) == 3, np.nan, center), "nan"),
                                ("inf", np.where(np.arange(center.size) == 3, np.inf, center), "nan or infinite"),
                                ("wrong_size", np.zeros(7), ""),
                                ("empty", np.zeros(0), ""),
                                ("strings", np.array(["a", "b"]), "numbers"),
                                ("complex", center.astype(np.complex64), "numbers")):
        arrays[f"{name}.npy"] = (npy(value), needle)
    arrays["pickled_object.npy"] = (npy(np.array([{"a": 1}], dtype=object)), "")
    full = npy(center)
    arrays["truncated.npy"] = (full[: len(full) - 40], "")
    header = full[: full.index(b"\n") + 1].replace(b"(64,)", b"(1000000000000,)")
    arrays["header_claims_1e12.npy"] = (header + full[len(header):], "")
    arrays["garbage.npy"] = (b"\x93NUMPY garbage" * 4, "")
    arrays["words.txt"] = (b"one two three\n", "")
    cases = []
    for name, (content, needle) in arrays.items():
        path = d / name
        path.write_bytes(content)
        cases.append(Case(f"array/verify_center_{name}", "array",
                          ["verify", str(net), "--center", str(path), "--label", "2", "--eps", "0.05",
                           "--timeout", TIMEOUT], None, needle))
        cases.append(Case(f"array/bounds_box_{name}", "array",
                          ["bounds", str(net), "--box", str(path), str(path)], None, needle))
    good = d / "good.npy"
    good.write_bytes(full)
    lower_above = d / "above.npy"
    lower_above.write_bytes(npy(center + 1))
    cases.append(Case("array/empty_box", "array", ["bounds", str(net), "--box", str(lower_above), str(good)], None,
                      "empty"))
    cases.append(Case("array/api_nan_box", "array", None, _api_bounds(net, np.nan), "nan"))
    cases.append(Case("array/api_nan_center", "array", None, _api_robust(net, center, np.nan, 0.1), "nan"))
    cases.append(Case("array/api_inf_eps", "array", None, _api_robust(net, center, 0.0, np.inf), "epsilon"))
    cases.append(Case("array/api_negative_eps", "array", None, _api_robust(net, center, 0.0, -1.0), "epsilon"))
    cases.append(Case("array/api_bad_label", "array", None, _api_robust(net, center, 0.0, 0.1, label=99), "label"))
    cases.append(Case("array/api_nan_timeout", "array", None, _api_robust(net, center, 0.0, 0.1, timeout=np.nan),
                      "timeout"))
    # smoothing inputs
    for name, content, needle in (("npz_missing_x", _npz(labels=np.zeros(3, np.int64)), "lacks"),
                                  ("npz_float_labels", _npz(x=np.zeros((3, 64)), labels=np.array([0.5, 1, 2])),
                                   "integer"),
                                  ("npz_label_range", _npz(x=np.zeros((3, 64)), labels=np.array([0, 1, 99])), "labels"),
                                  ("npz_nan_x", _npz(x=np.full((3, 64), np.nan), labels=np.zeros(3, np.int64)), "nan"),
                                  ("npz_bomb", _zip_bomb(), "limit"),
                                  ("npz_not_zip", b"PK\x03\x04 not really a zip", "")):
        path = d / f"{name}.npz"
        path.write_bytes(content)
        cases.append(Case(f"array/smooth_{name}", "array",
                          ["smooth", str(MODELS / "digits_smooth_mlp_sigma0.25.onnx"), str(path), "--sigma", "0.25",
                           "--n", "10", "--n0", "10"], None, needle))
    return cases


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _zip_bomb() -> bytes:
    """An .npz whose 'x' member's header claims 12.5e9 float64 values (100 GB) in a 1 KB member: NumPy would
    allocate the claimed array before reading it, so the header is checked first."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (12500000000,), }"
        header = header.ljust(128 - 10 - 1) + b"\n"
        archive.writestr("labels.npy", npy_bytes(np.zeros(3, np.int64)))
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 1024)
    return buffer.getvalue()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _api_bounds(path: Path, value: float):
    def call():
        import verifier

        net = verifier.load_onnx(path)
        lower = np.zeros(net.input_size)
        lower[0] = value
        return net.bounds(lower, np.ones(net.input_size))

    return call


def _api_robust(path: Path, center, bad: float, eps: float, label: int = 2, timeout: float = 5.0):
    def call():
        import verifier

        c = center.copy()
        if bad:
            c[0] = bad
        return verifier.verify_robustness(path, c, label, eps, timeout=timeout)

    return call


def csv_cases(folder: Path) -> list[Case]:
    fam = folder / "family"
    (fam / "onnx").mkdir(parents=True, exist_ok=True)
    (fam / "vnnlib").mkdir(exist_ok=True)
    (fam / "onnx" / "net.onnx").write_bytes((MODELS / "acasxu_like.onnx").read_bytes())
    (fam / "vnnlib" / "p.vnnlib").write_bytes((MODELS / "acasxu_like_prop_1.vnnlib").read_bytes())
    secret = folder / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    (fam / "vnnlib" / "link.vnnlib").symlink_to(secret)
    rows = {
        "two_fields": ("onnx/net.onnx,vnnlib/p.vnnlib\n", "expected 3 fields"),
        "four_fields": ("onnx/net.onnx,vnnlib/p.vnnlib,60,x\n", "expected 3 fields"),
        "timeout_nan": ("onnx/net.onnx,vnnlib/p.vnnlib,nan\n", "positive"),
        "timeout_negative": ("onnx/net.onnx,vnnlib/p.vnnlib,-1\n", "positive"),
        "timeout_zero": ("onnx/net.onnx,vnnlib/p.vnnlib,0\n", "positive"),
        "timeout_inf": ("onnx/net.onnx,vnnlib/p.vnnlib,inf\n", "positive"),
        "timeout_text": ("onnx/net.onnx,vnnlib/p.vnnlib,soon\n", "not a number"),
        "empty_path": (",vnnlib/p.vnnlib,60\n", "empty"),
        "dotdot_escape": ("onnx/net.onnx,../secret.txt,60\n", "outside"),
        "absolute_escape": (f"onnx/net.onnx,{secret},60\n", "outside"),
        "symlink_escape": ("onnx/net.onnx,vnnlib/link.vnnlib,60\n", "outside"),
        "etc_passwd": ("onnx/net.onnx,/etc/passwd,60\n", "outside"),
        "missing_file": ("onnx/net.onnx,vnnlib/nope.vnnlib,60\n", "not found"),
        "duplicate": ("onnx/net.onnx,vnnlib/p.vnnlib,60\nonnx/net.onnx,vnnlib/p.vnnlib,60\n", "repeats"),
        "nul_bytes": ("onnx/net.onnx,vnnlib/p.vnnlib,60\x00\n", ""),
        "huge_field": ("onnx/net.onnx,vnnlib/" + "p" * 300_000 + ".vnnlib,60\n", ""),
        "binary": (os.urandom(200), ""),
        "latin1": ("onnx/net.onnx,vnnlib/caf\xe9.vnnlib,60\n".encode("latin-1"), ""),
    }
    cases = []
    for name, (content, needle) in rows.items():
        path = fam / f"{name}.csv"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cases.append(Case(f"csv/{name}", "csv", ["bench", str(path), "--out", str(folder / "out" / name),
                                                 "--isolation", "process"], _api_instances(path), needle,
                          extra={"forbidden": "TOP-SECRET"}))
    cases.append(Case("csv/missing", "csv", ["bench", str(fam / "nope.csv")], _api_instances(fam / "nope.csv"),
                      "not found"))
    good = fam / "good.csv"
    good.write_text("onnx/net.onnx,vnnlib/p.vnnlib,60\n")
    taken = folder / "out_is_a_file"
    taken.write_text("x")
    cases.append(Case("csv/out_is_a_file", "csv", ["bench", str(good), "--out", str(taken)], None, "not a folder"))
    done = folder / "out_done"
    done.mkdir(exist_ok=True)
    (done / "results.csv").write_text("category,onnx,vnnlib\n")
    cases.append(Case("csv/out_has_results", "csv", ["bench", str(good), "--out", str(done)], None, "already exists"))
    cases.append(Case("csv/resume_and_overwrite", "csv", ["bench", str(good), "--resume", "--overwrite"], None,
                      "exclude"))
    cases.append(Case("csv/rows_bad_slice", "csv", ["bench", str(good), "--rows", "a:b"], None, "--rows"))
    return cases


def _api_instances(path: Path):
    def call():
        from verifier.bench.instances import read_instances

        return read_instances(path)

    return call


def option_cases(folder: Path) -> list[Case]:
    net, prop = str(MODELS / "acasxu_like.onnx"), str(MODELS / "acasxu_like_prop_1.vnnlib")
    mlp, center = str(MODELS / "digits_mlp.onnx"), str(MODELS / "digits_mlp_img0.npy")
    good = folder / "family" / "good.csv"
    smooth = [str(MODELS / "digits_smooth_mlp_sigma0.25.onnx"), str(MODELS / "digits_test.npz")]
    existing = folder / "smooth_out"
    existing.mkdir(exist_ok=True)
    (existing / "summary.json").write_text("{}")
    table = [
        ("timeout_nan", ["verify", net, prop, "--timeout", "nan"], "--timeout"),
        ("timeout_negative", ["verify", net, prop, "--timeout", "-1"], "--timeout"),
        ("timeout_zero", ["verify", net, prop, "--timeout", "0"], "--timeout"),
        ("timeout_inf", ["verify", net, prop, "--timeout", "inf"], "--timeout"),
        ("timeout_text", ["verify", net, prop, "--timeout", "soon"], "--timeout"),
        ("eps_nan", ["verify", mlp, "--center", center, "--label", "2", "--eps", "nan"], "--eps"),
        ("eps_inf", ["verify", mlp, "--center", center, "--label", "2", "--eps", "inf"], "--eps"),
        ("eps_negative", ["verify", mlp, "--center", center, "--label", "2", "--eps", "-1"], "--eps"),
        ("bounds_eps_nan", ["bounds", mlp, "--center", center, "--eps", "nan"], "--eps"),
        ("label_text", ["verify", mlp, "--center", center, "--label", "two", "--eps", "0.1"], "--label"),
        ("label_out_of_range", ["verify", mlp, "--center", center, "--label", "42", "--eps", "0.1"], "label"),
        ("sigma_negative", ["verify", mlp, "--center", center, "--label", "2", "--eps", "0.1", "--norm", "l2",
                            "--smoothing-sigma", "-1"], "--smoothing-sigma"),
        ("memory_budget_nan", ["verify", net, prop, "--memory-budget-gib", "nan"], "--memory-budget-gib"),
        ("load_limit_zero", ["verify", net, prop, "--load-limit-gib", "0"], "--load-limit-gib"),
        ("threads_zero", ["verify", net, prop, "--threads", "0"], "--threads"),
        ("property_and_center", ["verify", mlp, prop, "--center", center, "--label", "2", "--eps", "0.1"], "either"),
        ("nothing_to_verify", ["verify", net], "give a vnn-lib"),
        ("unknown_method", ["verify", net, prop, "--method", "magic"], "--method"),
        ("unknown_command", ["magic"], "invalid choice"),
        ("unknown_option", ["verify", net, prop, "--frobnicate"], "unrecognized"),
        ("huge_option_value", ["verify", net, prop, "--timeout", "9" * 100_000 + "x"], "--timeout"),
        ("grace_negative", ["bench", str(good), "--grace", "-10"], "--grace"),
        ("grace_nan", ["bench", str(good), "--grace", "nan"], "--grace"),
        ("timeout_scale_zero", ["bench", str(good), "--timeout-scale", "0"], "--timeout-scale"),
        ("jobs_zero", ["bench", str(good), "--jobs", "0"], "--jobs"),
        ("limit_negative", ["bench", str(good), "--limit", "-3"], "--limit"),
        ("smooth_sigma_nan", ["smooth", *smooth, "--sigma", "nan"], "sigma"),
        ("smooth_alpha_one", ["smooth", *smooth, "--sigma", "0.25", "--alpha", "1"], "alpha"),
        ("smooth_radii_nan", ["smooth", *smooth, "--sigma", "0.25", "--radii", "0,nan"], "--radii"),
        ("smooth_out_exists", ["smooth", *smooth, "--sigma", "0.25", "--limit", "1", "--n", "10", "--out",
                               str(existing)], "--overwrite"),
        ("bounds_box_and_center", ["bounds", mlp, "--center", center, "--box", center, center], "not allowed"),
    ]
    cases = [Case(f"option/{name}", "option", argv, None, needle) for name, argv, needle in table]
    # an unwritable --results: the verdict is printed, then the error names --results
    cases.append(Case("option/results_unwritable", "option",
                      ["verify", net, prop, "--timeout", "30", "--results", str(folder / "no" / "such" / "dir" / "r")],
                      None, "--results", stdout_lines=1))
    cases.append(Case("option/api_bad_method", "option", None, _api_verify(net, prop, method="magic"), "method"))
    cases.append(Case("option/api_negative_timeout", "option", None, _api_verify(net, prop, timeout=-1), "timeout"))
    cases.append(Case("option/api_limit_nan", "option", None, _api_load(MODELS / "acasxu_like.onnx", float("nan")),
                      "limit"))
    cases.append(Case("option/api_from_torch_not_module", "option", None, _api_from_torch(), "module"))
    return cases


def _api_verify(net: str, prop: str, method: str = "auto", timeout: float = 5.0):
    def call():
        import verifier

        return verifier.verify(net, prop, timeout=timeout, options=verifier.VerifyOptions(method=method))

    return call


def _api_from_torch():
    def call():
        import verifier

        return verifier.from_torch("not a module", np.zeros(3))

    return call


def write_corpus(folder: Path) -> list[Case]:
    """Write every malformed input under ``folder`` and return the cases (at least 150)."""
    folder.mkdir(parents=True, exist_ok=True)
    return model_cases(folder) + property_cases(folder) + array_cases(folder) + csv_cases(folder) + \
        option_cases(folder)


# -- the runner --------------------------------------------------------------------------------------------------------

class CaseTimeout(BaseException):
    """Raised by the alarm in a case that runs too long."""


def run_case(case: Case, seconds: float) -> dict:
    """Run ``case`` through the command line and the API, each under an alarm of ``seconds``."""
    from contextlib import redirect_stderr, redirect_stdout

    from verifier.cli import main
    from verifier.errors import VerifierError

    record: dict = {"name": case.name, "kind": case.kind, "needle": case.needle, "stdout_lines": case.stdout_lines,
                    "forbidden": case.extra.get("forbidden")}

    def on_alarm(signum, frame):
        raise CaseTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        if case.argv is not None:
            out, err = io.StringIO(), io.StringIO()
            start = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                with redirect_stdout(out), redirect_stderr(err):
                    code = main(list(case.argv))
            except CaseTimeout:
                code = "hang"
            except BaseException as error:  # noqa: BLE001 - anything escaping main is a defect
                code = f"escaped {type(error).__name__}: {error}"[:300]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            record.update(code=code, stdout=out.getvalue()[-2000:], stderr=err.getvalue()[-4000:],
                          cli_s=time.monotonic() - start)
        if case.api is not None:
            start = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                case.api()
                api = "ok"
            except CaseTimeout:
                api = "BAD hang"
            except VerifierError as error:
                api = f"{type(error).__name__}: {error}"[:2000]
            except BaseException as error:  # noqa: BLE001 - anything else breaks the API's promise
                api = f"BAD {type(error).__name__}: {error}"[:2000]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            record.update(api=api, api_s=time.monotonic() - start)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return record


def cap_address_space(extra_bytes: int) -> None:
    """Cap this process's address space at its current size plus ``extra_bytes`` (Linux)."""
    import resource

    with open("/proc/self/status") as handle:
        size = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:"))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--cap-gib", type=float, default=2.0, help="address space allowed beyond the start")
    parser.add_argument("--case-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import onnxruntime  # noqa: F401  (imported before the cap: its libraries are mapped once)

    import verifier.complete  # noqa: F401
    import verifier.smoothing  # noqa: F401

    cases = write_corpus(Path(args.folder))
    wanted = set(filter(None, args.only.split(",")))
    if args.cap_gib > 0:
        cap_address_space(int(args.cap_gib * 2**30))
    for case in cases:
        if wanted and case.name not in wanted:
            continue
        print(json.dumps({"starting": case.name}), flush=True)
        print(json.dumps(run_case(case, args.case_timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
