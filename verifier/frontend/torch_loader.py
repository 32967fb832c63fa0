"""``torch.nn.Module`` -> graph IR, through ``torch.fx`` symbolic tracing.

Leaf modules (``nn.Linear``, ``nn.Conv2d``, ``nn.ReLU``, ...) and functions (``torch.relu``, ``+``,
``torch.flatten``, ``x.view(x.size(0), -1)``, ...) are converted by the converters the operator
modules registered with :func:`verifier.ops.registry.torch_op`. Anything computed only from constants
and shapes is evaluated on the spot. The converted network is checked against the module on the
example input.
"""

from __future__ import annotations

import builtins
import operator
from typing import Any

import numpy as np
import torch
import torch.fx

from verifier.errors import ModelLoadError, UnsupportedOperatorError
from verifier.frontend.build import GraphBuilder
from verifier.ops.base import Operator
from verifier.ops.registry import TORCH_CONVERTERS
from verifier.ops.shared import SHARED_MODULES, share_module_parameters

#: functions of two tensors (one may be a constant): both operands are inputs of the node
_BINARY = {"maximum", "minimum", "max", "min", "matmul", "pow", "mul", "div", "truediv"}
PASS_THROUGH_MODULES = (torch.nn.Identity, torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)
_ARITH = {operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub", operator.mul: "mul",
          torch.mul: "mul", operator.truediv: "div", torch.div: "div", operator.neg: "neg", torch.neg: "neg"}


def supported_torch_ops() -> list[str]:
    names = []
    for target in TORCH_CONVERTERS:
        names.append(target if isinstance(target, str) else getattr(target, "__name__", str(target)))
    return sorted(set(names) | {cls.__name__ for cls in PASS_THROUGH_MODULES})


def torch_to_graph(
    module: torch.nn.Module, example_input: torch.Tensor, share_parameters: bool = False
) -> GraphBuilder:
    """Trace ``module`` and convert it, with shapes taken from ``example_input`` (batch size 1).

    ``share_parameters``: the operators hold the module's live parameters instead of copies (see
    :mod:`verifier.ops.shared`); the network's dtype is then the parameters' dtype."""
    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception as error:
        raise ModelLoadError(f"cannot trace the torch module with torch.fx: {type(error).__name__}: {error}") from None
    dtype = example_input.dtype if example_input.is_floating_point() else torch.float32
    if share_parameters:
        dtype = shared_dtype(module)
    builder: GraphBuilder | None = None
    values: dict[str, tuple[str, Any]] = {}  # fx name -> ("var", tensor name) | ("const", value)
    constants: dict[str, np.ndarray] = {}
    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if builder is not None:
                raise ModelLoadError("the torch module must take exactly one tensor input")
            builder = GraphBuilder(node.name, tuple(example_input.shape), dtype)
            values[node.name] = ("var", node.name)
        elif node.op == "get_attr":
            value = _fetch(traced, node.target, share_parameters)
            values[node.name] = ("const", value)
        elif node.op == "output":
            kind, name = _lookup(values, node.args[0])
            if kind != "var":
                raise ModelLoadError("the module's output does not depend on its input")
            builder.set_output(name)
        else:
            values[node.name] = _convert(traced, node, values, constants, builder, share_parameters)
    return builder


def shared_dtype(module: torch.nn.Module) -> torch.dtype:
    """The one floating-point dtype of a module's parameters (a shared network computes in it)."""
    dtypes = {p.dtype for p in module.parameters() if p.is_floating_point()}
    if len(dtypes) > 1:
        names = ", ".join(sorted(str(d) for d in dtypes))
        raise ModelLoadError(f"share_parameters=True needs one parameter dtype, the module has {names}")
    return dtypes.pop() if dtypes else torch.float32


def _fetch(traced: torch.fx.GraphModule, target: str, share_parameters: bool = False) -> Any:
    value: Any = traced
    for part in target.split("."):
        value = getattr(value, part)
    if share_parameters and isinstance(value, torch.nn.Parameter) and value.requires_grad:
        raise ModelLoadError(
            f"share_parameters=True: the parameter {target!r} is used outside a module the engine can share "
            f"({SHARED_MODULES}); it would be copied and receive no gradient"
        )
    return value.detach() if isinstance(value, torch.Tensor) else value


def _lookup(values: dict[str, tuple[str, Any]], arg: Any) -> tuple[str, Any]:
    if isinstance(arg, torch.fx.Node):
        return values[arg.name]
    if isinstance(arg, (list, tuple)):
        items = [_lookup(values, a) for a in arg]
        if any(kind in ("var", "list") for kind, _ in items):
            return "list", items  # e.g. the tensors of torch.cat
        return "const", type(arg)(v for _, v in items)
    return "const", arg


def _flat(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The looked-up arguments with lists of tensors expanded."""
    return [leaf for kind, value in items for leaf in (_flat(value) if kind == "list" else [(kind, value)])]


def _convert(traced, node: torch.fx.Node, values, constants, builder: GraphBuilder,
             share_parameters: bool = False) -> tuple[str, Any]:
    args = [_lookup(values, a) for a in node.args]
    kwargs = {k: _lookup(values, v) for k, v in node.kwargs.items()}
    variables = [v for kind, v in _flat(args + list(kwargs.values())) if kind == "var"]
    if node.op == "call_module":
        module = traced.get_submodule(node.target)
        target: Any = type(module)
    else:
        module = None
        target = node.target
    if not variables and node.op != "call_module":  # shapes and constants only: evaluate now
        plain_args = [v for _, v in args]
        plain_kwargs = {k: v for k, (_, v) in kwargs.items()}
        fn = getattr(plain_args[0], target) if node.op == "call_method" else target
        call_args = plain_args[1:] if node.op == "call_method" else plain_args
        return "const", fn(*call_args, **plain_kwargs)
    first = variables[0] if variables else None
    if target in ("size", "dim") or (target is builtins.getattr and args[1][1] == "shape"):
        shape = torch.Size(builder.shape(first))
        if target == "dim":
            return "const", len(shape)
        if target == "size" and len(args) > 1:
            return "const", shape[args[1][1]]
        return "const", shape
    if module is not None and isinstance(module, PASS_THROUGH_MODULES):
        return "var", first
    if target in ("contiguous", "clone", "detach") or (target is torch.nn.functional.dropout):
        return "var", first
    converter = TORCH_CONVERTERS.get(target)
    if converter is None:
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        raise UnsupportedOperatorError(name, node.name, "", supported_torch_ops())
    op_type, inputs, attrs = _arguments(node, target, module, args, kwargs, constants)
    if share_parameters and module is not None:
        converter = _sharing(converter, module, node.name)
    builder.convert(converter, op_type, node.name, inputs, node.name, attrs, constants, module)
    return "var", builder.resolve(node.name)


def _sharing(converter, module: torch.nn.Module, name: str):
    """``converter`` followed by :func:`~verifier.ops.shared.share_module_parameters` on its operator."""

    def convert(source):
        op = converter(source)
        if not isinstance(op, Operator):
            if any(p.requires_grad for p in module.parameters()):
                raise ModelLoadError(f"share_parameters=True: cannot share the parameters of "
                                     f"{type(module).__name__} at node {name!r}")
            return op
        return share_module_parameters(op, module, name)

    return convert


def _arguments(node, target, module, args, kwargs, constants) -> tuple[str, list[str], dict[str, Any]]:
    """Front-end op type, input names (constants registered under generated names) and attributes."""

    def name_of(i: int, item: tuple[str, Any]) -> str:
        kind, value = item
        if kind == "var":
            return value
        key = f"{node.name}::const{i}"
        constants[key] = np.asarray(value.cpu().numpy() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
        return key

    if module is not None:
        attrs = {}
        if isinstance(module, torch.nn.Flatten):
            attrs = {"start_dim": module.start_dim, "end_dim": module.end_dim}
        return type(module).__name__, [name_of(0, args[0])], attrs
    op_name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    if target in _ARITH or op_name in ("add", "sub", "mul", "div", "neg"):
        op_type = _ARITH.get(target, op_name)
        operands = args[:2] if op_type != "neg" else args[:1]
        return op_type, [name_of(i, a) for i, a in enumerate(operands)], {}
    if op_name in _BINARY and len(args) >= 2 and (
        op_name == "pow" or args[1][0] == "var" or isinstance(args[1][1], torch.Tensor)
    ):
        return op_name, [name_of(i, a) for i, a in enumerate(args[:2])], {}
    if args[0][0] == "list":  # torch.cat([x, y, ...], dim)
        inputs = [name_of(i, item) for i, item in enumerate(args[0][1])]
        return op_name, inputs, {"args": [v for _, v in args[1:]], "kwargs": {k: v for k, (_, v) in kwargs.items()}}
    first = name_of(0, args[0])
    rest = [v for _, v in args[1:]]
    extra = {k: v for k, (_, v) in kwargs.items()}
    if op_name == "flatten":
        attrs = {"start_dim": rest[0] if rest else extra.get("start_dim", 0),
                 "end_dim": rest[1] if len(rest) > 1 else extra.get("end_dim", -1)}
        return "flatten", [first], attrs
    if op_name in ("view", "reshape"):
        shape = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list, torch.Size)) else rest
        return "reshape", [first], {"shape": [int(d) for d in (shape or extra.get("shape"))]}
    if op_name == "permute":
        dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
        return "permute", [first], {"dims": [int(d) for d in (dims or extra.get("dims"))]}
    # any other function: the first tensor is the input, the other arguments go to the converter as they are
    return op_name, [first], {"args": rest, "kwargs": extra}
