"""The graph IR: a single-input, single-output DAG of operators in topological order.

Every tensor is named; a node produces one tensor (its ``name``) from its variable inputs. Constants
never appear as tensors: front ends fold them into the operators. Shapes are per sample (the ONNX
shape at batch size 1, see :mod:`verifier.ops.base`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from verifier.ops.base import Operator


@dataclass
class Node:
    """One operation: ``name = op(*inputs)``; ``source`` names the front-end node it came from."""

    name: str
    op: Operator
    inputs: list[str]
    shape: tuple[int, ...]
    source: str = ""


@dataclass
class Graph:
    """A DAG from one input tensor to one output tensor, nodes in topological order."""

    input_name: str
    input_shape: tuple[int, ...]
    nodes: list[Node]
    output_name: str
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the name -> position table after the node list changed."""
        self._index = {node.name: i for i, node in enumerate(self.nodes)}

    def node(self, name: str) -> Node:
        return self.nodes[self._index[name]]

    def position(self, name: str) -> int:
        """Topological position of the node producing ``name`` (-1 for the graph input)."""
        return -1 if name == self.input_name else self._index[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == self.input_name else self.node(name).shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shape(self.output_name)

    def consumers(self) -> dict[str, list[Node]]:
        """For each tensor name, the nodes that read it."""
        result: dict[str, list[Node]] = {self.input_name: []}
        for node in self.nodes:
            result.setdefault(node.name, [])
            for name in node.inputs:
                result.setdefault(name, []).append(node)
        return result

    def numel(self, name: str) -> int:
        return math.prod(self.shape(name))

    def forward(self, x: torch.Tensor, keep: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        """Run the graph on ``x`` of shape ``[batch, *input_shape]``.

        Returns the output, or with ``keep=True`` every tensor by name. Tensors are released as soon as
        their last consumer ran unless ``keep`` is set.
        """
        values: dict[str, torch.Tensor] = {self.input_name: x}
        remaining = {name: len(nodes) for name, nodes in self.consumers().items()}
        for node in self.nodes:
            values[node.name] = node.op.forward(*(values[name] for name in node.inputs))
            if not keep:
                for name in node.inputs:
                    remaining[name] -= 1
                    if remaining[name] == 0 and name != self.output_name:
                        del values[name]
        return values if keep else values[self.output_name]
