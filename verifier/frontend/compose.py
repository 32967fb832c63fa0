"""Compose the networks of a VNN-LIB 2.0 query into one single-input, single-output network.

The engine's graph IR has one input and one output. For a query with several networks, several inputs and
outputs per network, hidden nodes and assertions that compute expressions, this module builds **one ONNX
model** (and then loads it like any other, so the IR, the operators and the search stay unchanged):

* its input ``x`` is the concatenation of every declared input, flattened (the layout of
  :class:`~verifier.spec.lowering.Lowered`); each network input is a ``Gather`` of its slice of ``x``, cast to
  the declared type (rounding to a floating type, truncation to an integer one) and reshaped to its shape;
* every network is inlined with its tensors renamed ``NETWORK::name`` (a network declared ``equal-to`` another
  is a second copy of the same file, with its own inputs);
* its output is the vector of the lowering's features: the referenced elements of inputs, hidden tensors and
  outputs (``Gather`` of the flattened tensor), the floating-point expressions of the assertions (built from
  ``Neg``/``Add``/``Sub``/``Mul`` nodes in their element type) and the products of variables, each cast to
  float64 and concatenated.

Checks, each reported with the query's ``file:line:col`` of the declaration at fault: the ``--network`` names
against the declarations, the number, shapes and element types of each network's inputs, outputs and hidden
tensors against the model (a declared floating type must be the model's, except ``real``, which accepts any
numeric type, and except for an ``isomorphic-to`` network, whose model may use other floating types: its
declared types are then enforced by casts at its inputs and outputs).

Networks whose variables are declared with ONNX types are analysed in floating-point semantics: every node
gets the rounding-error envelope of :mod:`verifier.frontend.roundoff`. Networks declared ``real`` are analysed
in real arithmetic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.errors import ModelLoadError, SpecError
from verifier.spec.lowering import ElementFeature, Lowered, MonomialFeature
from verifier.spec.query import (
    FLOAT_TYPES,
    INTEGER_TYPES,
    REAL,
    Constant,
    Difference,
    Element,
    Expression,
    Negate,
    NetworkDeclaration,
    Product,
    Query,
    Sum,
    Variable,
    round_to_type,
)

#: query element type -> ONNX element type code
ONNX_CODES = {
    "float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE,
    "bfloat16": TensorProto.BFLOAT16, "int8": TensorProto.INT8, "int16": TensorProto.INT16,
    "int32": TensorProto.INT32, "int64": TensorProto.INT64, "uint8": TensorProto.UINT8,
    "uint16": TensorProto.UINT16, "uint32": TensorProto.UINT32, "uint64": TensorProto.UINT64,
    "bool": TensorProto.BOOL,
}
_NUMERIC = {TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BFLOAT16, TensorProto.INT8,
            TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8, TensorProto.UINT16,
            TensorProto.UINT32, TensorProto.UINT64}
_FLOAT_CODES = {TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BFLOAT16}
#: element types a declared input may have (its values are fed to the network)
INPUT_TYPES = frozenset({REAL, *FLOAT_TYPES, *INTEGER_TYPES})
PREFIX = "vnnlib::"


def type_name(code: int) -> str:
    """The query language's name of an ONNX element type code."""
    names = {TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64", TensorProto.FLOAT16: "float16"}
    return names.get(code) or TensorProto.DataType.Name(code).lower()


@dataclass
class NetworkModel:
    """One network declaration bound to its ONNX model: ``inputs``/``outputs`` map each declared variable to the
    model's tensor; ``casts`` lists the variables whose declared type differs from the model's (isomorphic)."""

    declaration: NetworkDeclaration
    path: str
    model: onnx.ModelProto
    bindings: dict[str, str]            # variable name -> ONNX tensor name in the model
    model_types: dict[str, int]         # variable name -> the model's element type of that tensor
    typed: bool                         # floating-point semantics (some variable declared with an ONNX type)
    casts: list[str] = field(default_factory=list)


@dataclass
class Composed:
    """The composed ONNX model and what the rest of the pipeline needs to know about it."""

    model: onnx.ModelProto
    networks: list[NetworkModel]
    input_type: int                     # ONNX element type of x
    #: output tensor -> (whether it is computed in floating-point semantics, the ONNX node)
    envelope_nodes: dict[str, tuple[bool, onnx.NodeProto]]
    warnings: list[str] = field(default_factory=list)


def bind_networks(query: Query, paths: Mapping[str, str | os.PathLike]) -> list[NetworkModel]:
    """Check the ``--network NAME=MODEL`` bindings against the declarations and bind every declared variable to
    a tensor of its model (see the module docstring); raises :class:`SpecError` with the declaration's position."""
    from verifier.frontend.onnx_loader import read_model

    declared = {n.name: n for n in query.networks}
    for name in paths:
        if name not in declared:
            known = ", ".join(declared) or "none"
            first = query.networks[0].position if query.networks else None
            raise SpecError(f"{query.where(first)}: --network {name}=...: the query declares no network {name!r} "
                            f"(declared: {known})")
    for network in query.networks:
        if network.equal_to and network.name in paths:
            raise SpecError(f"{query.where(network.position)}: network {network.name} is declared equal-to "
                            f"{network.equal_to}: give no --network for it (it uses {network.equal_to}'s model)")
        if not network.equal_to and network.name not in paths:
            raise SpecError(f"{query.where(network.position)}: no model for network {network.name}: give "
                            f"--network {network.name}=MODEL.onnx")
    loaded: dict[str, onnx.ModelProto] = {}
    result = []
    for network in query.networks:
        source = network
        while source.equal_to:
            source = declared[source.equal_to]
        path = os.fspath(paths[source.name])
        if path not in loaded:
            loaded[path] = read_model(path)
        result.append(_bind(query, network, path, loaded[path]))
    return result


def _bind(query: Query, network: NetworkDeclaration, path: str, model: onnx.ModelProto) -> NetworkModel:
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    model_inputs = [i for i in graph.input if i.name not in initializers]
    model_outputs = list(graph.output)
    bindings: dict[str, str] = {}
    types: dict[str, int] = {}
    shapes: dict[str, list] = {}
    for kind, declared, available in (("input", network.inputs, model_inputs),
                                      ("output", network.outputs, model_outputs)):
        by_name = {v.name: v for v in available}
        named = [v for v in declared if v.onnx_name]
        if named and len(named) != len(declared):
            raise SpecError(f"{query.where(named[0].position)}: give ONNX names to all {kind}s of network "
                            f"{network.name} or to none (they are then matched by order)")
        if not named and len(declared) != len(available):
            names = ", ".join(v.name for v in available) or "none"
            raise SpecError(f"{query.where(network.position)}: network {network.name} declares {len(declared)} "
                            f"{kind}(s) but {path} has {len(available)} ({names})")
        for i, variable in enumerate(declared):
            info = by_name.get(variable.onnx_name) if variable.onnx_name else available[i]
            if info is None:
                raise SpecError(f"{query.where(variable.position)}: {path} has no {kind} named "
                                f"{variable.onnx_name!r} (its {kind}s: {', '.join(by_name)})")
            bindings[variable.name] = info.name
            types[variable.name] = info.type.tensor_type.elem_type
            shapes[variable.name] = [d.dim_value if d.HasField("dim_value") else None
                                     for d in info.type.tensor_type.shape.dim] \
                if info.type.tensor_type.HasField("shape") else None
    if network.hidden:
        inferred = _inferred_types(model)
        produced = {o for node in graph.node for o in node.output} | {i.name for i in graph.input} | initializers
        for variable in network.hidden:
            if variable.onnx_name not in produced:
                raise SpecError(f"{query.where(variable.position)}: {path} has no tensor named "
                                f"{variable.onnx_name!r} for hidden variable {variable.name}")
            bindings[variable.name] = variable.onnx_name
            code, shape = inferred.get(variable.onnx_name, (TensorProto.UNDEFINED, None))
            types[variable.name] = code
            shapes[variable.name] = shape
    typed = any(v.element_type != REAL for v in network.variables)
    bound = NetworkModel(network, path, model, bindings, types, typed)
    for variable in network.variables:
        _check_type(query, bound, variable, path)
        _check_shape(query, variable, shapes.get(variable.name), path)
    return bound


def _check_type(query: Query, bound: NetworkModel, variable: Variable, path: str) -> None:
    code = bound.model_types[variable.name]
    declared = variable.element_type
    where = query.where(variable.position)
    if variable.kind == "input" and declared not in INPUT_TYPES:
        raise SpecError(f"{where}: input {variable.name} of element type {declared} is not supported (inputs may "
                        "be real, float16, float32, float64 or integers)")
    if code == TensorProto.UNDEFINED:
        if declared != REAL:
            raise SpecError(f"{where}: the element type of {variable.name}'s tensor in {path} is unknown; declare "
                            f"it real or give the model type information")
        return
    if declared == REAL:
        if code not in _NUMERIC:
            raise SpecError(f"{where}: {variable.name} is real but {path} gives it element type {type_name(code)}")
        return
    if ONNX_CODES.get(declared) == code:
        return
    network = bound.declaration
    if network.isomorphic_to and declared in FLOAT_TYPES and code in _FLOAT_CODES:
        bound.casts.append(variable.name)
        return
    raise SpecError(f"{where}: {variable.name} is declared {declared} but {path} gives it element type "
                    f"{type_name(code)} (declare it {type_name(code)}, or real to accept any numeric type)")


def _check_shape(query: Query, variable: Variable, shape: list | None, path: str) -> None:
    if shape is None:
        return
    declared = list(variable.shape)
    fits = len(shape) == len(declared) and all(d is None or d == e for d, e in zip(shape, declared))
    if not fits:
        shown = "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
        raise SpecError(f"{query.where(variable.position)}: {variable.name} is declared with shape "
                        f"[{','.join(map(str, declared))}] but its tensor in {path} has shape {shown}")


def _inferred_types(model: onnx.ModelProto) -> dict[str, tuple[int, list | None]]:
    """Element type and shape of every tensor of ``model`` that ONNX shape inference can tell."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # noqa: BLE001 - inference is best effort
        inferred = model.graph
    found: dict[str, tuple[int, list | None]] = {}
    for info in [*inferred.value_info, *inferred.input, *inferred.output]:
        tensor = info.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim] \
            if tensor.HasField("shape") else None
        found[info.name] = (tensor.elem_type, shape)
    for init in inferred.initializer:
        found[init.name] = (init.data_type, list(init.dims))
    for node in inferred.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = (attr.t.data_type, list(attr.t.dims))
    return found


# -- building the composed model ------------------------------------------------------------------------------
class _Builder:
    def __init__(self, lowered: Lowered, networks: list[NetworkModel]):
        self.lowered = lowered
        self.networks = networks
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self.counter = 0
        self.envelope: dict[str, tuple[bool, onnx.NodeProto]] = {}
        self.declared: dict[str, str] = {}     # variable name -> tensor holding it in its declared type
        self.flat: dict[str, str] = {}
        self.input_type = _input_type(lowered, networks)

    def name(self, hint: str) -> str:
        self.counter += 1
        return f"{PREFIX}{hint}_{self.counter}"

    def constant(self, value: np.ndarray, hint: str = "c") -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def cast(self, tensor: str, code: int, hint: str = "cast") -> str:
        return self.node("Cast", [tensor], hint, to=int(code))

    # -- inputs and networks ------------------------------------------------------------------------------
    def build(self) -> onnx.ModelProto:
        x = f"{PREFIX}x"
        for network in self.networks:
            self.inline(network, x)
        parts = [self.feature(f) for f in self.lowered.features]
        if not parts:  # nothing referenced: one input element keeps the output a function of x
            parts = [self.cast(self.node("Gather", [x, self.constant(np.array([0], np.int64))], "pick"),
                               TensorProto.DOUBLE)]
        output = f"{PREFIX}features"
        self.nodes.append(helper.make_node("Concat", parts, [output], name=output, axis=0))
        graph = helper.make_graph(
            self.nodes, "vnnlib_query",
            [helper.make_tensor_value_info(x, self.input_type, [self.lowered.n_inputs])],
            [helper.make_tensor_value_info(output, TensorProto.DOUBLE, [max(1, len(self.lowered.features))])],
            self.initializers, value_info=self.value_info,
        )
        opsets = _opsets(self.networks)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                                  ir_version=max([n.model.ir_version for n in self.networks] + [7]))
        functions = {(f.domain, f.name): f for n in self.networks for f in n.model.functions}
        model.functions.extend(functions.values())
        return model

    def inline(self, network: NetworkModel, x: str) -> None:
        declaration = network.declaration
        prefix = f"{declaration.name}::"
        rename = lambda name: prefix + name if name else name  # noqa: E731
        graph = network.model.graph
        for variable in declaration.inputs:
            indices = self.constant(self.lowered.input_indices(variable).astype(np.int64), "slice")
            tensor = self.node("Gather", [x, indices], f"{variable.name}_flat")
            declared_code = ONNX_CODES.get(variable.element_type, network.model_types[variable.name])
            if declared_code != self.input_type:
                tensor = self.cast(tensor, declared_code, f"{variable.name}_typed")
            shape = self.constant(np.array(variable.shape, dtype=np.int64), "shape")
            tensor = self.node("Reshape", [tensor, shape], variable.name)
            self.declared[variable.name] = tensor
            model_code = network.model_types[variable.name]
            if model_code != declared_code:
                tensor = self.cast(tensor, model_code, f"{variable.name}_model")
            self.nodes.append(helper.make_node("Identity", [tensor], [rename(network.bindings[variable.name])],
                                               name=self.name("bind")))
        for init in graph.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename(init.name)
            self.initializers.append(copy)
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            del copy.input[:]
            del copy.output[:]
            copy.input.extend(rename(i) for i in node.input)
            copy.output.extend(rename(o) for o in node.output)
            copy.name = rename(node.name or node.output[0])
            self.nodes.append(copy)
            for out in copy.output:
                if out:
                    self.envelope[out] = (network.typed, copy)
        for info in graph.value_info:
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(info)
            copy.name = rename(info.name)
            self.value_info.append(copy)
        for variable in [*declaration.hidden, *declaration.outputs]:
            tensor = rename(network.bindings[variable.name])
            declared_code = ONNX_CODES.get(variable.element_type)
            if declared_code is not None and declared_code != network.model_types[variable.name]:
                tensor = self.cast(tensor, declared_code, f"{variable.name}_declared")
            self.declared[variable.name] = tensor

    # -- features -----------------------------------------------------------------------------------------
    def flattened(self, variable: Variable) -> str:
        if variable.name not in self.flat:
            shape = self.constant(np.array([-1], dtype=np.int64), "flat")
            self.flat[variable.name] = self.node("Reshape", [self.declared[variable.name], shape],
                                                 f"{variable.name}_flat")
        return self.flat[variable.name]

    def element(self, variable: Variable, flat: int) -> str:
        index = self.constant(np.array([flat], dtype=np.int64), "index")
        return self.node("Gather", [self.flattened(variable), index], variable.element_name(flat)
                         .replace("[", "_").replace("]", "").replace(",", "_"))

    def feature(self, feature) -> str:
        if isinstance(feature, ElementFeature):
            return self.cast(self.element(feature.variable, feature.flat), TensorProto.DOUBLE)
        if isinstance(feature, MonomialFeature):
            factors = [self.cast(self.element(f.variable, f.flat), TensorProto.DOUBLE) for f in feature.factors]
            product = factors[0]
            for factor in factors[1:]:
                product = self.node("Mul", [product, factor], "product")
            return product
        value = self.expression(feature.expression, feature.element_type)
        return self.cast(value, TensorProto.DOUBLE)

    def expression(self, expression: Expression, element_type: str) -> str:
        """Nodes computing ``expression`` in ``element_type`` (shape ``[1]``), folded from the left."""
        if isinstance(expression, Constant):
            value = round_to_type(expression.value, element_type)
            return self.constant(np.array([value], dtype=FLOAT_TYPES[element_type]), "literal")
        if isinstance(expression, Element):
            tensor = self.element(expression.variable, expression.flat)
            return tensor
        if isinstance(expression, Negate):
            out = self.node("Neg", [self.expression(expression.arg, element_type)], "neg")
            self.envelope[out] = (True, self.nodes[-1])
            return out
        op = {Sum: "Add", Difference: "Sub", Product: "Mul"}[type(expression)]
        result = self.expression(expression.args[0], element_type)
        for arg in expression.args[1:]:
            result = self.node(op, [result, self.expression(arg, element_type)], op.lower())
            self.envelope[result] = (True, self.nodes[-1])
        return result


def _input_type(lowered: Lowered, networks: list[NetworkModel]) -> int:
    """float32 when every input fits it exactly (float16/float32 values, or real inputs of float32/float16
    models), else float64."""
    for network in networks:
        for variable in network.declaration.inputs:
            declared = variable.element_type
            model = network.model_types[variable.name]
            if declared in ("float16", "float32"):
                continue
            if declared == REAL and model in (TensorProto.FLOAT, TensorProto.FLOAT16):
                continue
            return TensorProto.DOUBLE
    return TensorProto.FLOAT


def _opsets(networks: list[NetworkModel]) -> dict[str, int]:
    opsets: dict[str, int] = {}
    for network in networks:
        for opset in network.model.opset_import:
            domain = "" if opset.domain == "ai.onnx" else opset.domain
            if domain in opsets and opsets[domain] != opset.version and domain == "":
                raise ModelLoadError(f"the networks use different ONNX opsets ({opsets[domain]} and "
                                     f"{opset.version}); convert them to one opset")
            opsets[domain] = max(opsets.get(domain, 0), opset.version)
    opsets.setdefault("", 13)
    opsets[""] = max(opsets[""], 6)
    return opsets


def compose(lowered: Lowered, networks: list[NetworkModel]) -> Composed:
    """The composed ONNX model of the query (see the module docstring)."""
    builder = _Builder(lowered, networks)
    model = builder.build()
    warnings = [f"{lowered.query.where(v.position)}: warning: {v.name} is declared {v.element_type} but "
                f"{n.path} computes it in {type_name(n.model_types[v.name])}; it is cast to {v.element_type} "
                f"(isomorphic-to {n.declaration.isomorphic_to})"
                for n in networks for v in n.declaration.variables if v.name in n.casts]
    composed = Composed(model, networks, builder.input_type, builder.envelope, warnings)
    _check_composed_shapes(lowered.query, composed, builder)
    return composed


def _check_composed_shapes(query: Query, composed: Composed, builder: _Builder) -> None:
    """Declared shapes of hidden and output variables against ONNX shape inference on the composed model."""
    known = _inferred_types(composed.model)
    for network in composed.networks:
        for variable in [*network.declaration.hidden, *network.declaration.outputs]:
            tensor = f"{network.declaration.name}::{network.bindings[variable.name]}"
            _, shape = known.get(tensor, (None, None))
            if shape is not None and all(d is not None for d in shape):
                _check_shape(query, variable, shape, network.path)


def load_composed(composed: Composed, lower: np.ndarray, upper: np.ndarray, name: str = "the query's networks"):
    """The composed model as a :class:`~verifier.network.Network`, with the rounding-error envelope after every
    node of a network analysed in floating-point semantics (computed over the box ``[lower, upper]``)."""
    from verifier.frontend.onnx_loader import onnx_to_graph
    from verifier.frontend.roundoff import OnnxNodeInfo, insert_envelopes
    from verifier.frontend.simplify import check_finite, simplify
    from verifier.network import Network
    from verifier.threads import ensure_threads

    ensure_threads()
    dtype = torch.float64 if composed.input_type == TensorProto.DOUBLE else torch.float32
    graph = onnx_to_graph(composed.model, name, dtype).build()
    if composed.envelope_nodes:
        types = _inferred_types(composed.model)
        constants = _constant_values(composed.model)
        default = _widest_float(types)
        infos = {}
        for tensor, (rounding, node) in composed.envelope_nodes.items():
            code = types.get(tensor, (TensorProto.UNDEFINED, None))[0]
            infos[tensor] = OnnxNodeInfo(
                node.op_type, node.name, code if code != TensorProto.UNDEFINED else default,
                {a.name: helper.get_attribute_value(a) for a in node.attribute},
                lambda i, n=node: _constant_input(n, i, constants), rounding,
            )
        graph = insert_envelopes(graph, infos, torch.as_tensor(lower), torch.as_tensor(upper))
    graph = simplify(graph)
    check_finite(graph)
    return Network(graph)


def _widest_float(types: dict) -> int:
    codes = {code for code, _ in types.values()}
    for code in (TensorProto.BFLOAT16, TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE):
        if code in codes:
            return code
    return TensorProto.FLOAT


def _constant_values(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    values = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def _constant_input(node: onnx.NodeProto, index: int, constants: dict) -> torch.Tensor | None:
    if index >= len(node.input) or node.input[index] not in constants:
        return None
    return torch.from_numpy(numpy_helper.to_array(constants[node.input[index]]).astype(np.float64))


def warn(messages: list[str]) -> None:
    for message in messages:
        print(message, file=sys.stderr)

