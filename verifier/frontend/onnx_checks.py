"""Checks an ONNX model passes before the verifier spends memory or time on it.

* sizes: the declared input, every initializer (external data included) and every tensor whose shape ONNX
  shape inference knows are checked against the memory limit before anything is allocated; a node that
  would create a large tensor from small inputs (``ConstantOfShape``, ``Expand``, ``Tile``, ``Range``,
  ``Pad``, ``Resize``, broadcasting, outer products...) is sized by :func:`output_size_bound` before it is
  folded or converted; folding work (``MatMul``, ``Conv``) is bounded too, and control flow (``If``,
  ``Loop``, ``Scan``) is never run;
* structure: a tensor written by two nodes, or a node overwriting the input or a weight, is refused;
* attributes: a float attribute that is NaN or infinite (``LeakyRelu`` alpha = inf...) is refused;
* runtime: every ``sat`` answer is re-checked with onnxruntime, so a model onnxruntime cannot run (an
  opset or IR version newer than the installed onnxruntime knows) is refused at load time.

Each check raises a :class:`~verifier.errors.VerifierError` subclass naming the node and the limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import metadata

import numpy as np
import onnx

from verifier.errors import InvalidWeightError, ModelLoadError, ResourceLimitError, UnsupportedOperatorError, quote
from verifier.limits import check_size

#: bytes per value assumed for tensors the engine creates (float64 in the input-split search)
ENGINE_ITEMSIZE = 8
#: multiply-adds a constant ``MatMul``/``Gemm``/``Conv`` may cost to fold (the reference evaluator runs them
#: at about 10^8-10^9 per second)
FOLD_MAX_WORK = 2e9
#: ai.onnx opset and IR version every supported onnxruntime (>= 1.16) runs; newer models are tried on the
#: installed onnxruntime at load time
ORT_SAFE_OPSET = 19
ORT_SAFE_IR_VERSION = 9
#: ops with subgraphs: the verifier neither converts nor folds them (folding would run arbitrary loops)
CONTROL_FLOW = frozenset({"If", "Loop", "Scan", "SequenceMap"})

_ITEMSIZE = {onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.INT64: 8, onnx.TensorProto.UINT64: 8,
             onnx.TensorProto.COMPLEX64: 8, onnx.TensorProto.COMPLEX128: 16, onnx.TensorProto.FLOAT16: 2,
             onnx.TensorProto.BFLOAT16: 2, onnx.TensorProto.INT16: 2, onnx.TensorProto.UINT16: 2,
             onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1, onnx.TensorProto.BOOL: 1}


def node_label(node: onnx.NodeProto) -> str:
    """``'name' (OpType)`` for messages (the first output when the node has no name), shortened."""
    name = node.name or (node.output[0] if node.output else "?")
    return f"{quote(name)} ({quote(node.op_type)[1:-1]})"


def tensor_itemsize(elem_type: int) -> int:
    return _ITEMSIZE.get(elem_type, 4)


def check_initializer_size(tensor: onnx.TensorProto, where: str, limit: int) -> None:
    """The declared dims of a weight, before it is unpacked (or its external data read)."""
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{where}: initializer {quote(tensor.name)} has a negative dimension {dims}")
    check_size(f"{where}: initializer {quote(tensor.name)} of shape {dims}", math.prod(dims),
               tensor_itemsize(tensor.data_type), limit)


def check_structure(model: onnx.ModelProto, where: str) -> None:
    """Every tensor written once; no node writes the input or a weight; float attributes are finite; no
    control flow among the nodes."""
    graph = model.graph
    written: dict[str, onnx.NodeProto] = {}
    given = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        if not any(node.output):
            raise ModelLoadError(f"{where}: node {node_label(node)} has no outputs")
        if node.op_type in CONTROL_FLOW and node.domain in ("", "ai.onnx"):
            raise UnsupportedOperatorError(node.op_type, node.name or (node.output[0] if node.output else "?"),
                                           "control flow (If, Loop, Scan) is neither verified nor folded")
        for output in node.output:
            if not output:
                continue
            if output in written:
                raise ModelLoadError(f"{where}: tensor {quote(output)} is written by two nodes, "
                                     f"{node_label(written[output])} and {node_label(node)}")
            if output in given:
                raise ModelLoadError(f"{where}: node {node_label(node)} overwrites the model input or weight "
                                     f"{quote(output)}")
            written[output] = node
        check_attributes(node, where)


def check_attributes(node: onnx.NodeProto, where: str) -> None:
    """Float attributes (and float tensors in attributes) must be finite."""
    for attribute in node.attribute:
        values: Sequence[float] = ()
        if attribute.type == onnx.AttributeProto.FLOAT:
            values = (attribute.f,)
        elif attribute.type == onnx.AttributeProto.FLOATS:
            values = attribute.floats
        elif attribute.type == onnx.AttributeProto.GRAPH or attribute.type == onnx.AttributeProto.GRAPHS:
            raise UnsupportedOperatorError(node.op_type, node.name or node.output[0],
                                           "attributes holding subgraphs are not supported")
        if any(not math.isfinite(v) for v in values):
            raise InvalidWeightError(f"{where}: node {node_label(node)} has attribute {quote(attribute.name)} = "
                                     f"{_first_bad(values)}; attributes must be finite numbers")


def _first_bad(values: Sequence[float]) -> str:
    return next(str(v) for v in values if not math.isfinite(v))


def check_inferred_sizes(inferred: onnx.GraphProto, producers: dict[str, onnx.NodeProto], where: str,
                         limit: int) -> None:
    """Every tensor whose shape ONNX shape inference knows must fit the limit (named with its node)."""
    for info in list(inferred.value_info) + list(inferred.output):
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value for d in tensor_type.shape.dim if d.HasField("dim_value")]
        if len(dims) != len(tensor_type.shape.dim) or not dims:
            continue
        node = producers.get(info.name)
        what = f"{where}: node {node_label(node)}" if node is not None else f"{where}: tensor {quote(info.name)}"
        check_size(f"{what} output of shape {_short_dims(dims)}", math.prod(max(d, 0) for d in dims),
                   max(tensor_itemsize(tensor_type.elem_type), ENGINE_ITEMSIZE if tensor_type.elem_type in
                       (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE) else 1), limit)


def _short_dims(dims: Sequence[int]) -> str:
    text = str(list(dims))
    return text if len(text) <= 60 else text[:57] + "...]"


# -- sizes of node outputs before they exist -----------------------------------------------------------------

def _values(constants: dict[str, np.ndarray], node: onnx.NodeProto, index: int) -> np.ndarray | None:
    if index >= len(node.input) or not node.input[index]:
        return None
    return constants.get(node.input[index])


def _int_list(value: np.ndarray | None) -> list[int] | None:
    if value is None:
        return None
    flat = np.asarray(value).reshape(-1)
    if flat.size > 64 or flat.dtype.kind not in "iuf":
        return None
    return [int(v) if math.isfinite(float(v)) else 0 for v in flat]


def _broadcast(shapes: list[tuple[int, ...]]) -> int | None:
    try:
        return math.prod(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def output_size_bound(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]],
                      constants: dict[str, np.ndarray], attrs: dict) -> tuple[float | None, float]:
    """``(values, work)``: an estimate (an upper bound where it matters) of the number of values the node's
    largest output has, from its inputs' shapes and constant values, and the multiply-adds computing it
    costs; ``values`` is None where the node cannot grow its input much (reshapes, slices, reductions)."""
    op = node.op_type

    def shape(index: int) -> tuple[int, ...] | None:
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name in constants:
            return tuple(np.shape(constants[name]))
        return shapes.get(name)

    inputs = [shape(i) for i in range(len(node.input))]
    known = [s for s in inputs if s is not None]
    if op == "ConstantOfShape":
        dims = _int_list(_values(constants, node, 0))
        return (math.prod(max(d, 0) for d in dims) if dims is not None else None), 0.0
    if op == "Expand" and inputs and inputs[0] is not None:
        dims = _int_list(_values(constants, node, 1))
        if dims is None:
            return None, 0.0
        rank = max(len(dims), len(inputs[0]))
        left = (1,) * (rank - len(inputs[0])) + tuple(inputs[0])
        right = (1,) * (rank - len(dims)) + tuple(max(d, 1) for d in dims)
        return math.prod(max(a, b) for a, b in zip(left, right)), 0.0
    if op == "Tile" and inputs and inputs[0] is not None:
        repeats = _int_list(_values(constants, node, 1))
        return (math.prod(inputs[0]) * math.prod(max(r, 1) for r in repeats) if repeats else None), 0.0
    if op == "Range":
        start, limit, delta = (_values(constants, node, i) for i in range(3))
        if start is None or limit is None or delta is None:
            return None, 0.0
        try:
            step = float(np.asarray(delta).reshape(-1)[0])
            span = float(np.asarray(limit).reshape(-1)[0]) - float(np.asarray(start).reshape(-1)[0])
        except (IndexError, TypeError, ValueError):
            return None, 0.0
        count = span / step if step != 0 and math.isfinite(span / step) else math.inf
        return max(count, 0.0), 0.0
    if op == "Pad" and inputs and inputs[0] is not None:
        pads = _int_list(_values(constants, node, 1)) if len(node.input) > 1 else list(attrs.get("pads", []) or [])
        if not pads:
            return None, 0.0
        rank = len(inputs[0])
        grown = [d + max(pads[i], 0) + max(pads[i + rank], 0) if i + rank < len(pads) else d
                 for i, d in enumerate(inputs[0])]
        return math.prod(grown), 0.0
    if op in ("Resize", "Upsample") and inputs and inputs[0] is not None:
        sizes = _int_list(_values(constants, node, 3)) if op == "Resize" else None
        if sizes:
            return math.prod(max(s, 0) for s in sizes), 0.0
        scales = _values(constants, node, 2 if op == "Resize" else 1)
        if scales is None and "scales" in attrs:
            scales = np.asarray(attrs["scales"])
        if scales is None or np.size(scales) == 0:
            return None, 0.0
        factors = np.abs(np.asarray(scales, dtype=np.float64).reshape(-1))
        return math.prod(inputs[0]) * float(np.prod(np.maximum(factors, 1.0))), 0.0
    if op == "OneHot":
        depth = _int_list(_values(constants, node, 1))
        return (math.prod(inputs[0]) * max(depth[0], 0) if inputs[0] is not None and depth else None), 0.0
    if op in ("MatMul", "Gemm", "MatMulInteger") and len(known) >= 2 and all(len(s) >= 1 for s in known[:2]):
        a, b = known[0], known[1]
        if op == "Gemm" and len(a) == 2 and len(b) == 2:
            m, k = (a[1], a[0]) if attrs.get("transA") else a
            n = b[0] if attrs.get("transB") else b[1]
            return float(m * n), float(m * n * k)
        rows = a[-2] if len(a) >= 2 else 1
        cols = b[-1] if len(b) >= 2 else 1
        batch = _broadcast([tuple(a[:-2]), tuple(b[:-2])]) or 1
        inner = a[-1]
        return float(batch * rows * cols), float(batch * rows * cols * inner)
    if op in ("Conv", "ConvTranspose") and len(known) >= 2 and len(known[0]) >= 3 and len(known[1]) >= 3:
        x, w = known[0], known[1]
        strides = list(attrs.get("strides", []) or [])
        pads = list(attrs.get("pads", []) or [])
        dilations = list(attrs.get("dilations", []) or [])
        kernel = w[2:]
        spatial = x[2:]
        out = []
        for i, size in enumerate(spatial):
            stride = strides[i] if i < len(strides) else 1
            pad = (pads[i] if i < len(pads) else 0) + (pads[i + len(spatial)] if i + len(spatial) < len(pads) else 0)
            dilation = dilations[i] if i < len(dilations) else 1
            reach = dilation * (kernel[i] - 1) + 1 if i < len(kernel) else 1
            out.append(size * max(stride, 1) + reach + max(pad, 0) if op == "ConvTranspose"
                       else max(size + max(pad, 0), 1))
        channels = w[1] * max(int(attrs.get("group", 1) or 1), 1) if op == "ConvTranspose" else w[0]
        values = float(x[0] * channels * math.prod(out))
        return values, values * math.prod(w[1:]) if op == "Conv" else float(math.prod(x) * math.prod(w[1:]))
    if op == "Gather" and len(known) >= 2 and len(known[0]) >= 1:
        data, indices = known[0], known[1]
        axis = int(attrs.get("axis", 0) or 0) % len(data)
        return float(math.prod(data[:axis]) * math.prod(indices) * math.prod(data[axis + 1:])), 0.0
    if op == "Concat":
        return float(sum(math.prod(s) for s in known)), 0.0
    if op == "Einsum":
        return _einsum_size(attrs.get("equation", b""), known)
    if len(known) >= 2:  # elementwise ops broadcast their inputs: [N, 1] + [1, M] has N * M values
        values = _broadcast([tuple(s) for s in known])
        return (float(values) if values is not None else None), 0.0
    return None, 0.0


def _einsum_size(equation: str | bytes, shapes: list[tuple[int, ...]]) -> tuple[float | None, float]:
    """Output values and work of ``Einsum``: the product of the output's index sizes and of all index sizes."""
    text = equation.decode(errors="replace") if isinstance(equation, bytes) else str(equation)
    text = text.replace(" ", "")
    operands, _, output = text.partition("->")
    sizes: dict[str, int] = {}
    for term, shape in zip(operands.split(","), shapes):
        letters = [c for c in term if c.isalpha()]
        if "..." in term or len(letters) != len(shape):
            return None, 0.0
        for letter, size in zip(letters, shape):
            sizes[letter] = max(sizes.get(letter, 1), size)
    if "->" not in text:
        output = "".join(sorted(c for c in sizes if operands.count(c) == 1))
    values = math.prod(sizes.get(c, 1) for c in output if c.isalpha())
    return float(values), float(math.prod(sizes.values()))


def check_node_size(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]], constants: dict[str, np.ndarray],
                    attrs: dict, where: str, limit: int, folding: bool) -> None:
    """Refuse a node whose output would exceed the memory limit, or whose folding costs too much work."""
    values, work = output_size_bound(node, shapes, constants, attrs)
    if values is not None:
        check_size(f"{where}: node {node_label(node)} output", values, ENGINE_ITEMSIZE, limit)
    if folding and work > FOLD_MAX_WORK:
        raise ResourceLimitError(f"{where}: folding the constant node {node_label(node)} costs about {work:.2g} "
                                 f"multiply-adds, more than the limit of {FOLD_MAX_WORK:.0e}")


# -- onnxruntime ---------------------------------------------------------------------------------------------------

def model_opset(model: onnx.ModelProto) -> int | None:
    """The model's ai.onnx opset (None when it imports none)."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def check_runtime_support(model: onnx.ModelProto, where: str) -> None:
    """Refuse a model the installed onnxruntime cannot run (every ``sat`` answer is re-checked with it).

    Models at or below :data:`ORT_SAFE_OPSET` and :data:`ORT_SAFE_IR_VERSION` need no check; newer ones are
    opened by onnxruntime (graph optimisations off, so it computes nothing) once, here."""
    opset = model_opset(model) or 0
    if opset <= ORT_SAFE_OPSET and model.ir_version <= ORT_SAFE_IR_VERSION:
        return
    try:
        version = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        version = "?"
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - any refusal of onnxruntime's
        text = str(error)
        detail = text.split(" : ")[-1] if " : " in text else text
        raise ModelLoadError(f"{where}: the installed onnxruntime {version} cannot run this model (opset {opset}, "
                             f"IR version {model.ir_version}), and every 'sat' answer is checked with it: "
                             f"{detail.strip()[:160]}") from None

