"""Graph simplifications that keep the function and make bounds cheaper.

* :func:`fold_affine_into_layers` folds an elementwise affine node (a BatchNormalization, a Mul/Add by
  a per-channel constant) into the Linear or Conv node before it, when it is that node's only reader.
* :func:`remove_dead_nodes` drops nodes the output does not depend on.
* :func:`verifier.frontend.fuse.fuse_gelu` turns the Erf pattern of GELU into one operator.
"""

from __future__ import annotations

import torch

from verifier.errors import InvalidWeightError
from verifier.frontend.fuse import fuse_gelu
from verifier.ir import Graph, Node
from verifier.ops.conv import Conv
from verifier.ops.elementwise import Affine
from verifier.ops.linear import Linear
from verifier.ops.shared import SharedBatchNorm, fold_shared, is_shared


def simplify(graph: Graph) -> Graph:
    """Apply every simplification and return the graph (modified in place)."""
    fuse_gelu(graph)
    fold_affine_into_layers(graph)
    remove_dead_nodes(graph)
    return graph


def fold_affine_into_layers(graph: Graph) -> None:
    """Fold ``Affine(Linear(x))`` and ``Affine(Conv(x))`` into one layer when the scale and shift are
    constant along everything but the output-feature (channel) axis."""
    consumers = graph.consumers()
    removed: set[str] = set()
    for node in graph.nodes:
        if not isinstance(node.op, Affine) or len(node.inputs) != 1:
            continue
        producer_name = node.inputs[0]
        if producer_name == graph.input_name or producer_name == graph.output_name:
            continue
        if len(consumers[producer_name]) != 1 or node.shape != graph.shape(producer_name):
            continue
        producer = graph.node(producer_name)
        folded = _fold(producer, node.op)
        if folded is None:
            continue
        node.op = folded
        node.inputs = list(producer.inputs)
        node.source = f"{producer.source} + {node.source}"
        removed.add(producer_name)
    if removed:
        graph.nodes = [n for n in graph.nodes if n.name not in removed]
        graph.reindex()


def _fold(producer: Node, affine: Affine) -> Linear | Conv | None:
    op = producer.op
    if isinstance(op, Linear):
        channel_axis = len(producer.shape) - 1
    elif isinstance(op, Conv):
        channel_axis = 1
    else:
        return None
    out_features = producer.shape[channel_axis]
    if isinstance(affine, SharedBatchNorm):  # live parameters: folded at each use, on its channel axis (1)
        return fold_shared(op, affine, None, None) if channel_axis == 1 else None
    scale = _per_channel(affine.scale, producer.shape, channel_axis)
    shift = _per_channel(affine.shift, producer.shape, channel_axis)
    if is_shared(op):
        return fold_shared(op, affine, scale, shift)
    if scale is False or shift is False:
        return None
    weight, bias = op.weight, op.bias
    if bias is None:
        bias = torch.zeros(out_features, dtype=weight.dtype)
    if scale is not None:
        weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
        bias = bias * scale
    if shift is not None:
        bias = bias + shift
    if isinstance(op, Linear):
        return Linear(weight, bias)
    return Conv(weight, bias, op.strides, op.pads, op.dilations, op.groups, op.input_shape)


def _per_channel(t: torch.Tensor | None, shape: tuple[int, ...], channel_axis: int):
    """``t`` as a vector over the channel axis, ``None`` if absent, ``False`` if it varies along other axes."""
    if t is None:
        return None
    full = t.reshape((1,) * (len(shape) - t.dim()) + tuple(t.shape)) if t.dim() <= len(shape) else None
    if full is None:
        return False
    if any(full.shape[i] != 1 for i in range(len(shape)) if i != channel_axis):
        return False
    return full.reshape(-1).expand(shape[channel_axis]).clone()


def remove_dead_nodes(graph: Graph) -> None:
    """Keep only the nodes the output depends on."""
    needed = {graph.output_name}
    for node in reversed(graph.nodes):
        if node.name in needed:
            needed.update(node.inputs)
    graph.nodes = [n for n in graph.nodes if n.name in needed]
    graph.reindex()


def check_finite(graph: Graph) -> None:
    """Raise :class:`InvalidWeightError` naming the first node with a NaN or infinite constant."""
    for node in graph.nodes:
        for key, value in node.op.constants().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise InvalidWeightError(
                    f"node {node.source or node.name}: {key} contains NaN or infinite values; "
                    "the network cannot be analysed"
                )
