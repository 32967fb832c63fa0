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

import math
import os
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import verifier.ops  # noqa: F401  (registers the operator converters)
from verifier.cancel import checkpoint
from verifier.errors import (
    InvalidWeightError,
    ModelLoadError,
    ResourceLimitError,
    ShapeError,
    UnsupportedOperatorError,
    quote,
    shorten,
)
from verifier.frontend.build import GraphBuilder
from verifier.frontend.onnx_checks import (
    ENGINE_ITEMSIZE,
    check_inferred_sizes,
    check_initializer_size,
    check_node_size,
    check_runtime_support,
    check_structure,
    model_opset,
    node_label,
)
from verifier.limits import check_size, resolve_limit
from verifier.ops.registry import ONNX_CONVERTERS

#: Operators that only pass their input through at inference time.
PASS_THROUGH = {"Identity", "Dropout"}

_ELEMENT_TYPES = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64}


def supported_onnx_ops() -> list[str]:
    """The ONNX op types the front end accepts on variable tensors (any op is accepted on constants)."""
    return sorted(set(ONNX_CONVERTERS) | PASS_THROUGH | {"Constant", "Shape"})


def read_model(source: str | os.PathLike | bytes | onnx.ModelProto, memory_limit: int | None = None,
               where: str | None = None) -> onnx.ModelProto:
    """Read an ONNX model from a path, serialized bytes or a ``ModelProto``, with readable errors.

    The file, every weight (external data included, which must lie in the model's folder) and the model's
    structure are checked before anything large is read: see :mod:`verifier.frontend.onnx_checks`.
    ``memory_limit``: bytes (default :func:`verifier.limits.default_memory_limit`)."""
    limit = resolve_limit(memory_limit)
    if isinstance(source, onnx.ModelProto):
        model, where, folder = source, where or "the model", None
    elif isinstance(source, (bytes, bytearray)):
        where = where or "the given bytes"
        check_size(f"{where}: the model", len(source), 1, limit)
        model, folder = _parse(lambda: onnx.load_from_string(bytes(source)), where), None
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = where or str(path)
        if path.is_dir():
            raise ModelLoadError(f"model file {path} is a folder, not an ONNX file")
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        if path.stat().st_size == 0:
            raise ModelLoadError(f"{where} is not a valid ONNX model: the file is empty")
        try:
            check_size(f"{where}: the model file", path.stat().st_size, 1, limit)
        except OSError as error:
            raise ModelLoadError(f"cannot read model file {path}: {error.strerror or error}") from None
        model, folder = _parse(lambda: onnx.load(str(path), load_external_data=False), where), path.parent
    else:
        raise ModelLoadError(f"a model is a path, bytes or an onnx.ModelProto, not {type(source).__name__}")
    inputs = {i.name for i in model.graph.input}
    if not model.graph.node and not any(o.name in inputs for o in model.graph.output):
        raise ModelLoadError(f"{where} is not a valid ONNX model: its graph has no nodes")
    for tensor in model.graph.initializer:
        check_initializer_size(tensor, where, limit)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        _load_external_data(model, external, folder, where)
    check_structure(model, where)
    check_runtime_support(model, where)
    return model


def _parse(load, where: str) -> onnx.ModelProto:
    try:
        return load()
    except MemoryError:
        raise ResourceLimitError(f"{where}: not enough memory to read the model") from None
    except Exception as error:  # protobuf's DecodeError, onnx's ValidationError, OSError...
        raise ModelLoadError(f"{where} is not a valid ONNX model: {type(error).__name__}: "
                             f"{shorten(error, 160)}") from None


def _load_external_data(model: onnx.ModelProto, tensors: list[onnx.TensorProto], folder: Path | None,
                        where: str) -> None:
    """Read weights stored beside the model, after checking each file lies inside the model's folder."""
    from onnx.external_data_helper import load_external_data_for_model

    if folder is None:
        raise ModelLoadError(f"{where}: the model keeps weights in external files; load it from its path")
    base = folder.resolve()
    for tensor in tensors:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if not location or base not in target.parents or not target.is_file():
            raise ModelLoadError(f"{where}: the external data {quote(location)} of weight {quote(tensor.name)} is "
                                 "not a file inside the model's folder")
    try:
        load_external_data_for_model(model, str(base))
    except Exception as error:  # noqa: BLE001 - a short file, a bad offset...
        raise ModelLoadError(f"{where}: cannot read the external weights: {type(error).__name__}: "
                             f"{shorten(error, 160)}") from None


def onnx_to_graph(model: onnx.ModelProto, where: str = "the model", dtype: torch.dtype | None = None,
                  memory_limit: int | None = None) -> GraphBuilder:
    """Convert an ONNX model to a :class:`GraphBuilder` holding the graph IR (not yet simplified).

    Weights are stored in ``dtype`` (default: the type of the model's input, float32 or float64); constants
    are combined in float64 before that cast. Every tensor is sized against ``memory_limit`` bytes before it
    is created, and the active time limit (:func:`verifier.cancel.checkpoint`) is checked between nodes."""
    limit = resolve_limit(memory_limit)
    graph = model.graph
    opset = model_opset(model) or 13
    constants: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        check_initializer_size(init, where, limit)
        constants[init.name] = _finite(_to_array(init, where), f"initializer {quote(init.name)}", where)

    inputs = [i for i in graph.input if i.name not in constants]
    if len(inputs) != 1:
        names = shorten(", ".join(i.name for i in inputs), 120) or "none"
        raise ModelLoadError(f"{where} must have exactly one input tensor, found {len(inputs)} ({names})")
    if len(graph.output) != 1:
        raise ModelLoadError(f"{where} must have exactly one output tensor, found {len(graph.output)}")
    model_input = inputs[0]
    input_shape = _input_shape(model_input, where)
    check_size(f"{where}: input {quote(model_input.name)} of shape {list(input_shape)}", math.prod(input_shape),
               ENGINE_ITEMSIZE, limit)
    model_dtype = _ELEMENT_TYPES.get(model_input.type.tensor_type.elem_type)
    if model_dtype is None:
        raise ModelLoadError(f"{where}: input {quote(model_input.name)} must be float or double")
    dtype = dtype or model_dtype
    checkpoint()
    producers = {out: node for node in graph.node for out in node.output if out}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True).graph
    except Exception:  # shape inference is a cross-check only; conversion computes shapes itself
        inferred = graph
    check_inferred_sizes(inferred, producers, where, limit)

    builder = GraphBuilder(model_input.name, input_shape, dtype, opset)
    inferred_shapes = _inferred_shapes(inferred)
    # outputs nobody reads (MaxPool's Indices, Dropout's mask) are dropped
    consumed = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    for node in _topological_order(graph, set(constants) | {model_input.name}, where):
        checkpoint()
        name = node.name or node.output[0]
        attrs = _attributes(node, where)
        folding = all((not i) or i in constants for i in node.input)
        check_node_size(node, builder.shapes, constants, attrs, where, limit, folding)
        if folding:
            for key, value in zip(node.output, _evaluate(node, constants, opset, name, where, limit)):
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
        # a node with several outputs (Split) is converted to one operator per output that is read
        outputs = [o if o in consumed else "" for o in node.output] if len(node.output) > 1 else node.output[0]
        builder.convert(converter, node.op_type, name, list(node.input), outputs, attrs, constants)
        for out in [o for o in outputs if o] if isinstance(outputs, list) else [outputs]:
            expected = inferred_shapes.get(out)
            actual = builder.shape(out)
            check_size(f"{where}: node {quote(name)} ({node.op_type}) output", math.prod(actual), ENGINE_ITEMSIZE,
                       limit)
            if expected is not None and len(expected) == len(actual):
                if any(e is not None and e != a for e, a in zip(expected[1:], actual[1:])):
                    raise ShapeError(
                        f"{where}: node {quote(name)} ({node.op_type}) produces shape {actual}, "
                        f"but ONNX shape inference says {tuple(expected)}"
                    )
    output = graph.output[0].name
    if output in constants or builder.resolve(output) == builder.input_name:
        _trivial_output(builder, output, constants, where)
    if builder.resolve(output) not in builder.shapes:
        raise ModelLoadError(f"{where}: the output {quote(output)} is not computed by any node")
    builder.set_output(output)
    return builder


def _to_array(tensor: onnx.TensorProto, where: str) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except MemoryError:
        raise ResourceLimitError(f"{where}: not enough memory for initializer {quote(tensor.name)}") from None
    except Exception as error:  # a raw_data length that does not match the dims, an unknown data type...
        raise ModelLoadError(f"{where}: initializer {quote(tensor.name)} cannot be read: {type(error).__name__}: "
                             f"{shorten(error, 120)}") from None


def _attributes(node: onnx.NodeProto, where: str) -> dict[str, Any]:
    try:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    except Exception as error:  # noqa: BLE001 - an attribute without a value, an unknown type...
        raise ModelLoadError(f"{where}: node {node_label(node)} has an unreadable attribute: "
                             f"{shorten(error, 120)}") from None


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
        elif i == 0 and not (dim.HasField("dim_value") and dim.dim_value < 0):
            shape.append(1)  # symbolic / unknown batch dimension: batch size 1
        elif dim.HasField("dim_value"):
            raise ModelLoadError(f"{where}: dimension {i} of input {quote(value_info.name)} is {dim.dim_value}; "
                                 "input dimensions must be positive")
        else:
            raise ModelLoadError(
                f"{where}: dimension {i} of input {quote(value_info.name)} is not fixed "
                f"({shorten(dim.dim_param or '?', 30)}); only the first (batch) dimension may be symbolic"
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
                raise ModelLoadError(f"{where}: node {node_label(node)} reads undefined tensor {quote(name)}")
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


def _evaluate(node: onnx.NodeProto, constants: dict[str, np.ndarray], opset: int, name: str, where: str,
              limit: int) -> list[np.ndarray]:
    """Fold a node whose inputs are all constants, with the onnx reference evaluator (its size and work were
    checked by :func:`verifier.frontend.onnx_checks.check_node_size`)."""
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
        with np.errstate(all="ignore"), warnings.catch_warnings():  # a fold's warnings are not the user's news
            warnings.simplefilter("ignore")
            results = ReferenceEvaluator(model).run(None, feeds)
    except MemoryError:
        raise ResourceLimitError(f"{where}: not enough memory to fold the constant node {quote(name)} "
                                 f"({node.op_type})") from None
    except Exception as error:  # noqa: BLE001 - whatever the reference evaluator refuses
        raise ModelLoadError(f"{where}: could not fold constant node {quote(name)} ({node.op_type}): "
                             f"{shorten(error, 160)}") from None
    values = [np.asarray(r) for r in results]
    for value in values:
        check_size(f"{where}: constant node {quote(name)} ({node.op_type}) output", value.size,
                   max(value.itemsize, 1), limit)
    return [_finite(v, f"constant {quote(name)}", where) for v in values]


def _shape_of(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    attrs: dict[str, Any] = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.asarray(shape[start:end], dtype=np.int64)


def _finite(value: np.ndarray, what: str, where: str) -> np.ndarray:
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        bad = "NaN" if np.any(np.isnan(value)) else "infinite"
        raise InvalidWeightError(f"{where}: {what} contains {bad} values; the network cannot be analysed")
    return value
