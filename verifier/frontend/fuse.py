"""Pattern fusions that replace a loose decomposition by one operator with a tight relaxation.

* :func:`fuse_gelu`: the exact GELU as exported to ONNX before opset 20,
  ``x * 0.5 * (1 + Erf(x / sqrt 2))`` (the 0.5 anywhere along the product), is one product of two
  variables, ``x`` and ``1 + erf(x / sqrt 2)``, whose McCormick relaxation ignores that both factors
  are functions of the same ``x``. It becomes ``Gelu(x)`` (:class:`verifier.ops.nonconvex.Gelu`) times
  a constant.
"""

from __future__ import annotations

import math

import torch

from verifier.ir import Graph, Node
from verifier.ops.bilinear import MulVariables
from verifier.ops.elementwise import Affine
from verifier.ops.nonconvex import Erf, Gelu


def _scalar(t: torch.Tensor | None, default: float) -> float | None:
    if t is None:
        return default
    return float(t.reshape(-1)[0]) if t.numel() == 1 else None


def _close(a: float | None, b: float, tol: float = 1e-5) -> bool:
    return a is not None and abs(a - b) <= tol * max(1.0, abs(b))


def _scaled_input(graph: Graph, name: str) -> tuple[str, float] | None:
    """``(r, c)`` if tensor ``name`` is ``c * r`` by a scalar Affine without shift, else ``(name, 1)``."""
    if name == graph.input_name:
        return name, 1.0
    node = graph.node(name)
    if isinstance(node.op, Affine) and node.op.shift is None and _scalar(node.op.scale, 1.0) is not None:
        return node.inputs[0], _scalar(node.op.scale, 1.0)
    return name, 1.0


def _erf_factor(graph: Graph, name: str) -> tuple[str, float] | None:
    """``(r, s)`` if tensor ``name`` is ``s * (1 + erf(r / sqrt 2))``."""
    if name == graph.input_name:
        return None
    node = graph.node(name)
    if not isinstance(node.op, Affine) or node.inputs[0] == graph.input_name:
        return None
    scale, shift = _scalar(node.op.scale, 1.0), _scalar(node.op.shift, 0.0)
    if scale is None or not _close(shift, scale):
        return None
    erf = graph.node(node.inputs[0])
    if not isinstance(erf.op, Erf) or erf.inputs[0] == graph.input_name:
        return None
    divide = graph.node(erf.inputs[0])
    if not isinstance(divide.op, Affine) or divide.op.shift is not None:
        return None
    if not _close(_scalar(divide.op.scale, 1.0), 1 / math.sqrt(2)):
        return None
    return divide.inputs[0], scale


def fuse_gelu(graph: Graph) -> None:
    """Replace ``(c r) * (s (1 + erf(r / sqrt 2)))`` by ``2 c s Gelu(r)`` (in place)."""
    nodes: list[Node] = []
    for node in graph.nodes:
        fused = None
        if isinstance(node.op, MulVariables) and len(set(node.op.shapes)) == 1 and node.shape == node.op.shapes[0]:
            for first, second in (node.inputs, reversed(node.inputs)):
                factor = _erf_factor(graph, second)
                scaled = _scaled_input(graph, first)
                if factor is not None and scaled is not None and factor[0] == scaled[0]:
                    fused = factor[0], 2 * factor[1] * scaled[1]
                    break
        if fused is None:
            nodes.append(node)
            continue
        source, scale = fused
        gelu = Node(f"{node.name}::gelu", Gelu(), [source], node.shape, node.source)
        affine = Affine(torch.tensor(scale, dtype=_dtype(graph)), None, node.shape)
        nodes += [gelu, Node(node.name, affine, [gelu.name], node.shape, node.source)]
    graph.nodes = nodes
    graph.reindex()


def _dtype(graph: Graph) -> torch.dtype:
    for node in graph.nodes:
        for value in node.op.constants().values():
            if value.is_floating_point():
                return value.dtype
    return torch.float32
