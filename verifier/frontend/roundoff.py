"""Floating-point semantics: a rounding-error envelope after every ONNX node computed in a floating type.

The engine bounds the exact (real-arithmetic) function of the graph. For a query about a network executed in
float32 (or float16, float64), every ONNX node of the network adds a rounding error to its result. This module
bounds that error per node and inserts a :class:`~verifier.ops.rounding.Roundoff` operator after it
(``y = x + r``, ``|r| <= eps``), so every bound the engine computes afterwards encloses the floating-point
execution too. ``eps`` is computed once, by interval arithmetic over the union of the query's input boxes, in
topological order (each node's magnitudes include the errors of the nodes before it), in float64.

Error model, per ONNX operator, for a result of element type ``T`` with unit roundoff ``u`` (2^-24 for
float32) and smallest subnormal ``s``; ``M`` bounds the magnitude of the exact result, ``n`` is the number of
terms of a sum:

* exact (no rounding): ReLU, Max/Min, MaxPool, Abs, Neg, Sign, Clip, comparisons, Where, Cast (its rounding is
  modelled by the Cast operator itself), and every reshaping, slicing or copying operator;
* one correctly rounded operation (IEEE 754): Add, Sub, Mul, Div, Sqrt, Reciprocal, LeakyRelu, PRelu:
  ``u M + s``;
* sums of products, in any order, with or without fused multiply-add (Gemm, MatMul, Conv, ConvTranspose,
  ReduceSum, ReduceMean, pools): ``gamma_{n+4} S + (n+4) s`` with ``S`` the sum of the magnitudes of the
  terms (the 4 covers the constant term, Gemm's ``alpha`` and ``beta`` and a mean's division) and
  ``gamma_k = k u / (1 - k u)`` (Higham, Accuracy and Stability of Numerical Algorithms, 3.1);
* BatchNormalization (a handful of operations): ``8 u (|scale| (|x| + |mean|) + |bias|) + 8 s``;
* elementary functions (Exp, Log, Sigmoid, Tanh, Erf, Softplus, Sin, Cos, Gelu, Pow): ``64 u (M + A) + s`` with
  ``A = 1`` for functions bounded by 1 in magnitude or evaluated near 1 (their absolute error near 0), ``A =
  max |x|`` for Gelu, Softplus and Pow: an assumption that the runtime's kernels are accurate to 64 units in
  the last place, well above the few ulp of libm and onnxruntime's MLAS kernels;
* Softmax / LogSoftmax over a tensor of ``n`` elements whose inputs span a width ``W``:
  ``(min(W, 200) + 2n + 64) u`` (times ``1 + M`` for LogSoftmax).

Integer tensors (in every network, whatever the declared types): sums and products are exact in the engine's
arithmetic (overflow is not modelled); ``Div`` and ``ReduceMean`` truncate toward zero, which a
:class:`~verifier.ops.select.Truncate` after them models; any other operator on integers is refused.

A result whose magnitude can exceed the type's largest number gets an infinite envelope (overflow to
infinity), as does one whose bounds are not finite.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.errors import UnsupportedOperatorError
from verifier.ir import Graph, Node
from verifier.ops.rounding import RoundedCast, Roundoff, RoundToType, rounding_error
from verifier.ops.select import Truncate

EXACT = frozenset({
    "Relu", "Max", "Min", "MaxPool", "GlobalMaxPool", "Abs", "Neg", "Sign", "Clip", "Equal", "Greater", "Less",
    "GreaterOrEqual", "LessOrEqual", "Where", "Cast", "Identity", "Dropout", "Reshape", "Flatten", "Transpose",
    "Squeeze", "Unsqueeze", "Slice", "Gather", "Split", "Concat", "Pad", "Expand", "Tile", "Constant", "Shape",
    "ConstantOfShape", "ReduceMax", "ReduceMin", "Not",
})
ROUND_ONCE = frozenset({"Add", "Sub", "Mul", "Div", "Sqrt", "Reciprocal", "LeakyRelu", "PRelu"})
DOT = frozenset({"Gemm", "MatMul", "Conv", "ConvTranspose", "ReduceSum", "ReduceMean", "AveragePool",
                 "GlobalAveragePool"})
#: elementary functions, and whether the constant ``A`` of the error model is 1 (bounded or near 1) or max |x|
ELEMENTARY = {"Exp": "none", "Log": "one", "Sigmoid": "one", "Tanh": "one", "Erf": "one", "Sin": "one",
              "Cos": "one", "Softplus": "argument", "Gelu": "argument", "Pow": "argument"}
SOFTMAX = frozenset({"Softmax", "LogSoftmax"})
BATCHNORM = frozenset({"BatchNormalization"})
#: operators exact on integer tensors (overflow aside): the engine's real arithmetic gives the integer result
INTEGER_EXACT = EXACT | DOT - {"ReduceMean", "AveragePool", "GlobalAveragePool"} | {"Add", "Sub", "Mul", "Pow",
                                                                                     "PRelu"}
#: integer operators whose result is the real one truncated toward zero (C integer division)
INTEGER_TRUNCATED = frozenset({"Div", "ReduceMean"})

#: ONNX element type codes -> torch floating types; integer and bool codes -> None
FLOAT_CODES = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}
INTEGER_CODES = frozenset({2, 3, 4, 5, 6, 7, 9, 12, 13})


def has_error_model(op_type: str) -> bool:
    """Whether floating-point execution of ``op_type`` can be analysed (the operator has an error model)."""
    return op_type in EXACT | ROUND_ONCE | DOT | SOFTMAX | BATCHNORM or op_type in ELEMENTARY


@dataclass
class OnnxNodeInfo:
    """What the error model needs to know of the ONNX node that produced a tensor."""

    op_type: str
    name: str
    element_type: int                   # ONNX element type code of the result
    attrs: dict
    constants: Callable[[int], Tensor | None]   # the value of the node's input ``i`` if it is a constant
    rounding: bool = True               # floating-point semantics: add the rounding-error envelope


def _gamma(n: Tensor | float, u: float) -> Tensor | float:
    nu = n * u
    return nu / (1 - nu)


def _magnitude(interval) -> Tensor:
    lower, upper = interval
    return torch.maximum(lower.abs(), upper.abs())


def _fan_in(node: Node, graph: Graph) -> int:
    """Number of products summed for one element of the node's result (an upper bound)."""
    from verifier.ops.bilinear import MatMulVariables
    from verifier.ops.conv import Conv, ConvTranspose
    from verifier.ops.linear import LeftLinear, Linear
    from verifier.ops.pooling import ReduceSum

    op = node.op
    inputs = sum(graph.numel(i) for i in node.inputs)
    if isinstance(op, (Linear, LeftLinear)):
        return int(op.weight.shape[-1]) if isinstance(op, Linear) else int(op.weight.shape[-1])
    if isinstance(op, Conv):
        return int(op.weight[0].numel())
    if isinstance(op, ConvTranspose):
        return min(inputs, int(op.weight.shape[0] * math.prod(op.weight.shape[2:])))
    if isinstance(op, ReduceSum):
        return max(1, inputs // max(1, graph.numel(node.name)))
    if isinstance(op, MatMulVariables):
        return int(graph.shape(node.inputs[0])[-1])
    return max(1, inputs)


def _sum_of_terms(node: Node, inputs: list) -> Tensor:
    """``S``: the sum of the magnitudes of the products summed into each element (and of the constant term)."""
    op = node.op
    magnitudes = [_magnitude(i) for i in inputs]
    if op.is_affine:
        zeros = [torch.zeros_like(m) for m in magnitudes]
        offset = op.forward(*zeros).abs()
        return op.abs_linear_part(*magnitudes) + offset
    # a product of two variables (MatMul) or anything else: the operator on the magnitudes is a sum of |a||b|
    return op.forward(*magnitudes).abs()


def error_bound(node: Node, graph: Graph, info: OnnxNodeInfo, inputs: list, output) -> Tensor:
    """``eps``: the largest rounding error of computing the node's result in its element type (see the module
    docstring), elementwise, given the bounds of its inputs and of its exact result."""
    op_type, code = info.op_type, info.element_type
    lower = output[0]
    zero = torch.zeros_like(lower)
    if code in INTEGER_CODES:
        return zero
    if op_type in EXACT:
        return zero
    dtype = FLOAT_CODES.get(code)
    if dtype is None:
        raise UnsupportedOperatorError(op_type, info.name, f"element type {code} in floating-point semantics")
    finfo = torch.finfo(dtype)
    u, tiny = finfo.eps / 2, finfo.smallest_normal * finfo.eps
    M = _magnitude(output)
    if op_type in ROUND_ONCE:
        eps = u * M + tiny
    elif op_type in DOT:
        n = _fan_in(node, graph) + 4   # the products' sum, the constant term, Gemm's alpha and beta, a mean's division
        eps = _gamma(n, u) * _sum_of_terms(node, inputs) + n * tiny
    elif op_type in BATCHNORM:
        scale, mean, bias = (info.constants(i) for i in (1, 3, 2))
        variance = info.constants(4)
        if scale is None or mean is None or bias is None or variance is None:
            raise UnsupportedOperatorError(op_type, info.name, "needs constant parameters")
        factor = scale / torch.sqrt(variance + float(info.attrs.get("epsilon", 1e-5)))
        shape = (-1,) + (1,) * (lower.dim() - 3)
        x = _magnitude(inputs[0])
        S = factor.abs().reshape(shape) * (x + mean.abs().reshape(shape)) + bias.abs().reshape(shape)
        eps = 8 * u * S + 8 * tiny
    elif op_type in SOFTMAX:
        # over all elements, whatever the axis (its default changed with opset 13): a larger n and W are safe
        x_lower, x_upper = inputs[0]
        n = x_lower[0].numel()
        width = (x_upper.max() - x_lower.min()).clamp(min=0).clamp(max=200)
        eps = (width + 2 * n + 64) * u
        if op_type == "LogSoftmax":
            eps = eps * (1 + M)
        eps = eps + tiny
    elif op_type in ELEMENTARY:
        kind = ELEMENTARY[op_type]
        A = 1.0 if kind == "one" else _magnitude(inputs[0]) if kind == "argument" else 0.0
        eps = 64 * u * (M + A) + tiny
    else:
        raise UnsupportedOperatorError(op_type, info.name, "no floating-point error model for this operator; "
                                                           "declare the query's variables as real to analyse it "
                                                           "in real arithmetic")
    eps = torch.broadcast_to(torch.as_tensor(eps, dtype=lower.dtype), lower.shape).clone()
    bad = ~torch.isfinite(eps) | ~torch.isfinite(M) | (M > finfo.max)
    return torch.where(bad, torch.full_like(eps, math.inf), eps)


def insert_envelopes(graph: Graph, nodes: dict[str, OnnxNodeInfo], lower: Tensor, upper: Tensor) -> Graph:
    """``graph`` with a :class:`Roundoff` after each node whose name is in ``nodes`` (the ONNX node producing that
    tensor) with ``rounding`` set and a non-zero error bound over the input box ``[lower, upper]``
    (``[*input_shape]``); integer results of ``Div`` and ``ReduceMean`` get a :class:`Truncate` (C integer
    division), other integer operators that are not exact are refused; casts to a narrower floating type
    become a :class:`RoundedCast` with their error bounded over the box (no input bounds needed later).
    Returns a new graph; the nodes' operators are shared."""
    work = copy.deepcopy(graph)
    for node in work.nodes:
        node.op.to(dtype=torch.float64)
    bounds = {work.input_name: (lower.double().unsqueeze(0), upper.double().unsqueeze(0))}
    out_nodes: list[Node] = []
    originals = {n.name: n for n in graph.nodes}
    for node in work.nodes:
        inputs = [bounds[i] for i in node.inputs]
        with torch.no_grad():
            interval = node.op.interval(*inputs)
        original = originals[node.name]
        info = nodes.get(node.name)
        if isinstance(node.op, RoundToType):   # a narrowing cast: its error bounded once, over this box
            error = rounding_error(_magnitude(inputs[0])[0], node.op.target)
            cast = RoundedCast(node.op.target, error)
            out_nodes.append(Node(node.name, cast, list(original.inputs), original.shape, original.source))
            bounds[node.name] = cast.interval(*inputs)
            continue
        if info is not None and info.element_type in INTEGER_CODES:
            if info.op_type in INTEGER_TRUNCATED:  # integer division: the real quotient truncated
                exact_name = f"{node.name}::real"
                out_nodes.append(Node(exact_name, original.op, list(original.inputs), original.shape, original.source))
                out_nodes.append(Node(node.name, Truncate(), [exact_name], original.shape,
                                      f"{original.source} (integer)"))
                bounds[node.name] = Truncate().interval(interval)
                continue
            if info.op_type not in INTEGER_EXACT:
                raise UnsupportedOperatorError(info.op_type, info.name, "on integer tensors")
            out_nodes.append(original)
            bounds[node.name] = interval
            continue
        eps = None if info is None or not info.rounding else error_bound(node, work, info, inputs, interval)
        if eps is None or not bool((eps != 0).any()):
            out_nodes.append(original)
            bounds[node.name] = interval
            continue
        exact_name = f"{node.name}::exact"
        out_nodes.append(Node(exact_name, original.op, list(original.inputs), original.shape, original.source))
        envelope = Roundoff(eps[0].to(torch.float64))
        out_nodes.append(Node(node.name, envelope, [exact_name], original.shape, f"{original.source} (rounding)"))
        bounds[node.name] = envelope.interval(interval)
    return Graph(graph.input_name, graph.input_shape, out_nodes, graph.output_name)
