"""Helpers for tests: tiny ONNX models built with onnx.helper, onnxruntime execution, network lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import MODELS, SHARED

#: the families whose every network the core engine must load, run and bound
CORE_FAMILIES = ["acasxu", "mnist_fc", "eran", "oval21", "cifar10_resnet", "sri_resnet_a", "rl_benchmarks",
                 "collins_rul_cnn", "test"]


def shared_networks(fast: bool = True) -> list[Path]:
    """Every ONNX file of the core families (only 3 of the 45 ACAS Xu networks when ``fast``)."""
    files = []
    for family in CORE_FAMILIES:
        found = sorted((SHARED / family / "onnx").glob("*.onnx"))
        if family == "acasxu" and fast:
            found = found[:: max(1, len(found) // 3)][:3]
        files.extend(found)
    return files


def project_networks() -> list[Path]:
    return sorted(MODELS.glob("*.onnx"))


def run_onnxruntime(model: str | Path | bytes, x: np.ndarray) -> np.ndarray:
    """Run ``model`` in onnxruntime on one input ``x`` (already in the model's input shape)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def make_model(nodes, input_shape, output_shape, initializers=None, opset=13, input_name="x", output_name="y",
               input_type=TensorProto.FLOAT) -> bytes:
    """Serialized ONNX model of ``nodes`` with one input ``x`` and one output ``y``."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(input_name, input_type, input_shape)],
        [helper.make_tensor_value_info(output_name, input_type, output_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def onnx_input_shape(path: str | Path | bytes) -> list[int]:
    """The model's input shape with symbolic dimensions set to 1."""
    model = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    value = next(i for i in model.graph.input if i.name not in inits)
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]


def to_double(source: str | Path | bytes) -> bytes:
    """The same model with every float tensor (initializers, constants, graph types) in float64, so that
    onnxruntime computes an independent double-precision reference."""
    model = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(str(source))
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            value = numpy_helper.to_array(init).astype(np.float64)
            graph.initializer[i].CopyFrom(numpy_helper.from_array(value, init.name))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64), attr.t.name))
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    return model.SerializeToString()


def run_double_reference(source: str | Path | bytes, x: np.ndarray) -> np.ndarray | None:
    """An independent float64 evaluation by onnxruntime on the double version of the model; ``None`` where
    onnxruntime has no double kernel for some operator (its CPU Conv is float32 only). The onnx reference
    evaluator is not used instead: it disagrees with onnxruntime on some convolutional models."""
    try:
        return run_onnxruntime(to_double(source), x.astype(np.float64))
    except Exception as error:
        if "NOT_IMPLEMENTED" in str(error):
            return None
        raise
