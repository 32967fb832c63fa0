"""ONNX file -> graph IR.

The model is read with the ``onnx`` package; shapes come from ONNX shape inference (checked against
the shapes our operators produce), constant subgraphs (``Constant``, ``Shape`` of a variable and the
``Gather/Unsqueeze/Concat/Cast`` chains built on it) are folded with the ``onnx`` reference evaluator,
``Identity`` and ``Dropout`` become aliases, and every other node is converted by the converter its
operator module registered (a node with several outputs, ``Split``, becomes one node per output that is
read; outputs nobody reads, such as MaxPool's indices, are dropped). A missing converter fails at load
time with the op type, the node and the supported list.

Batch semantics: the model is read as the function it computes at batch size 1. A symbolic or unknown
first input dimension is taken as 1; every other dimension must be fixed.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from verifier.errors import InvalidWeightError, ModelLoadError, ShapeError, UnsupportedOperatorError
from verifier.frontend.build import GraphBuilder
from verifier.ops.registry import ONNX_CONVERTERS

#: Operators that only pass their input through at inference time.
PASS_THROUGH = {"Identity", "Dropout"}

_ELEMENT_TYPES = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64}


def supported_onnx_ops() -> list[str]:
    """The ONNX op types the front end accepts on variable tensors (any op is accepted on constants)."""
    return sorted(set(ONNX_CONVERTERS) | PASS_THROUGH | {"Constant", "Shape"})


def read_model(source: str | os.PathLike | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """Read an ONNX model from a path, serialized bytes or a ``ModelProto``, with readable errors."""
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, bytes):
        try:
            return onnx.load_from_string(source)
        except Exception as error:
            raise ModelLoadError(f"the given bytes are not a valid ONNX model ({error})") from None
    path = Path(source)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as error:
        raise ModelLoadError(f"{path} is not a valid ONNX model: {type(error).__name__}: {error}") from None
    inputs = {i.name for i in model.graph.input}
    if not model.graph.node and not any(o.name in inputs for o in model.graph.output):
        raise ModelLoadError(f"{path} is not a valid ONNX model: its graph has no nodes")
    return model


def onnx_to_graph(model: onnx.ModelProto, where: str = "the model", dtype: torch.dtype | None = None) -> GraphBuilder:
    """Convert an ONNX model to a :class:`GraphBuilder` holding the graph IR (not yet simplified).

    Weights are stored in ``dtype`` (default: the type of the model's input, float32 or float64); constants
    are combined in float64 before that cast."""
    graph = model.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # shape inference is a cross-check only; conversion computes shapes itself
        inferred = graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)

    constants: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        constants[init.name] = _finite(numpy_helper.to_array(init), f"initializer {init.name!r}", where)

    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelLoadError(f"{where} must have exactly one input tensor, found {len(inputs)} ({names})")
    if len(graph.output) != 1:
        raise ModelLoadError(f"{where} must have exactly one output tensor, found {len(graph.output)}")
    model_input = inputs[0]
    input_shape = _input_shape(model_input, where)
    model_dtype = _ELEMENT_TYPES.get(model_input.type.tensor_type.elem_type)
    if model_dtype is None:
        raise ModelLoadError(f"{where}: input {model_input.name!r} must be float or double")
    dtype = dtype or model_dtype

    builder = GraphBuilder(model_input.name, input_shape, dtype, opset)
    inferred_shapes = _inferred_shapes(inferred)
    # outputs nobody reads (MaxPool's Indices, Dropout's mask) are dropped
    consumed = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    for node in _topological_order(graph, set(constants) | {model_input.name}, where):
        name = node.name or node.output[0]
        if all((not i) or i in constants for i in node.input):
            for key, value in zip(node.output, _evaluate(node, constants, opset, name)):
                constants[key] = value
            continue
        if node.op_type == "Shape":
            constants[node.output[0]] = _shape_of(node, builder.shape(builder.resolve(node.input[0])))
            continue
        if node.op_type in PASS_THROUGH:
            builder.alias(node.output[0], node.input[0])
            continue
        converter = ONNX_CONVERTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if converter is None:
            raise UnsupportedOperatorError(node.op_type, name, "", supported_onnx_ops())
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        # a node with several outputs (Split) is converted to one operator per output that is read
        outputs = [o if o in consumed else "" for o in node.output] if len(node.output) > 1 else node.output[0]
        builder.convert(converter, node.op_type, name, list(node.input), outputs, attrs, constants)
        for out in [o for o in outputs if o] if isinstance(outputs, list) else [outputs]:
            expected = inferred_shapes.get(out)
            actual = builder.shape(out)
            if expected is not None and len(expected) == len(actual):
                if any(e is not None and e != a for e, a in zip(expected[1:], actual[1:])):
                    raise ShapeError(
                        f"{where}: node {name!r} ({node.op_type}) produces shape {actual}, "
                        f"but ONNX shape inference says {tuple(expected)}"
                    )
    output = graph.output[0].name
    if output in constants or builder.resolve(output) == model_input.name:
        _trivial_output(builder, output, constants, where)
    builder.set_output(output)
    return builder


def _trivial_output(builder: GraphBuilder, output: str, constants: dict[str, np.ndarray], where: str) -> None:
    """Give a model whose output is a constant (independent of the input) or the input itself a node computing
    it, so that the graph IR has an operator between input and output."""
    from verifier.ops.elementwise import Affine
    from verifier.ops.select import ConstantOutput

    if output in constants:
        value = np.asarray(constants[output], dtype=np.float64)
        op = ConstantOutput(torch.from_numpy(value).to(builder.dtype), builder.input_shape)
    else:
        op = Affine(None, None, builder.input_shape)
    name = f"{output}::trivial"
    builder.add(op, [builder.input_name], name, f"{where}: output {output!r}")
    builder.aliases.pop(output, None)
    builder.alias(output, name)


def _input_shape(value_info: onnx.ValueInfoProto, where: str) -> tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    shape = []
    for i, dim in enumerate(dims):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif i == 0:
            shape.append(1)  # symbolic / unknown batch dimension: batch size 1
        else:
            raise ModelLoadError(
                f"{where}: dimension {i} of input {value_info.name!r} is not fixed ({dim.dim_param or '?'}); "
                "only the first (batch) dimension may be symbolic"
            )
    return tuple(shape)


def _inferred_shapes(graph: onnx.GraphProto) -> dict[str, list[int | None]]:
    shapes = {}
    for info in list(graph.value_info) + list(graph.output):
        if not info.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
        shapes[info.name] = dims
    return shapes


def _topological_order(graph: onnx.GraphProto, available: set[str], where: str) -> list[onnx.NodeProto]:
    """The nodes in an order where every input is produced before it is read (Kahn's algorithm)."""
    producers = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    waiting = [0] * len(graph.node)
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            if not name or name in available:
                continue
            if name not in producers:
                raise ModelLoadError(f"{where}: node {node.name or node.output[0]!r} reads undefined tensor {name!r}")
            waiting[i] += 1
            readers.setdefault(producers[name], []).append(i)
    queue = deque(i for i, count in enumerate(waiting) if count == 0)
    order = []
    while queue:
        i = queue.popleft()
        order.append(graph.node[i])
        for j in readers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                queue.append(j)
    if len(order) != len(graph.node):
        raise ModelLoadError(f"{where}: the graph has a cycle")
    return order


def _evaluate(node: onnx.NodeProto, constants: dict[str, np.ndarray], opset: int, name: str) -> list[np.ndarray]:
    """Fold a node whose inputs are all constants, with the onnx reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    feeds = {i: constants[i] for i in node.input if i}
    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [onnx.helper.make_tensor_value_info(i, onnx.TensorProto.UNDEFINED, None) for i in feeds],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception as error:
        raise ModelLoadError(f"could not fold constant node {name!r} ({node.op_type}): {error}") from None
    return [_finite(np.asarray(r), f"constant {name!r}", "the model") for r in results]


def _shape_of(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    attrs: dict[str, Any] = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.asarray(shape[start:end], dtype=np.int64)


def _finite(value: np.ndarray, what: str, where: str) -> np.ndarray:
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        bad = "NaN" if np.any(np.isnan(value)) else "infinite"
        raise InvalidWeightError(f"{where}: {what} contains {bad} values; the network cannot be analysed")
    return value
