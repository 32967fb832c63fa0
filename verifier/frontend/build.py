"""Incremental construction of the graph IR, shared by the ONNX and torch front ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from verifier.errors import ShapeError, UnsupportedOperatorError, VerifierError
from verifier.ir import Graph, Node
from verifier.ops.base import Operator
from verifier.ops.registry import Converted, Outputs, SourceNode


class GraphBuilder:
    """Collects nodes in topological order, computing each output shape by running the operator on zeros."""

    def __init__(self, input_name: str, input_shape: tuple[int, ...], dtype: torch.dtype, opset: int = 18):
        self.input_name = input_name
        self.opset = opset
        self.input_shape = tuple(input_shape)
        self.dtype = dtype
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {input_name: self.input_shape}
        self.aliases: dict[str, str] = {}
        self.output_name: str | None = None

    def resolve(self, name: str) -> str:
        """The tensor a name stands for, following Identity/Dropout aliases."""
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[self.resolve(name)]

    def alias(self, new: str, existing: str) -> None:
        self.aliases[new] = self.resolve(existing)

    def convert(
        self,
        converter: Callable[[SourceNode], Converted],
        op_type: str,
        name: str,
        inputs: list[str],
        output: str | list[str],
        attrs: dict[str, Any],
        constants: dict[str, np.ndarray],
        module: Any = None,
    ) -> None:
        """Convert one front-end node with its registered converter and append it.

        ``output`` is the node's output name, or the list of its output names for a node with several
        outputs (whose converter must then return :class:`~verifier.ops.registry.Outputs`).
        """
        inputs = [self.resolve(i) if i and i not in constants else i for i in inputs]
        source = SourceNode(
            op_type=op_type,
            name=name,
            inputs=inputs,
            attrs=attrs,
            constants={i: constants[i] for i in inputs if i in constants},
            shapes={i: self.shapes[i] for i in inputs if i and i not in constants},
            module=module,
            dtype=self.dtype,
            opset=self.opset,
            num_outputs=len(output) if isinstance(output, list) else 1,
        )
        try:
            result = converter(source)
        except VerifierError:
            raise
        except Exception as error:
            reason = f"cannot convert this node ({type(error).__name__}: {error})"
            raise UnsupportedOperatorError(op_type, name, reason) from None
        where = f"{name} ({op_type})"
        outputs = output if isinstance(output, list) else [output]
        if not isinstance(result, Outputs) and any(outputs[1:]):
            raise UnsupportedOperatorError(op_type, name, "only the first output of this operator is supported")
        if isinstance(result, Outputs) and len(result.ops) != len(outputs):
            raise UnsupportedOperatorError(op_type, name, f"cannot produce {len(outputs)} outputs")
        if isinstance(result, Outputs):
            for op, out in zip(result.ops, outputs):
                if out:
                    self.add(op, source.variable_inputs, out, where)
        elif isinstance(result, str):
            self.alias(outputs[0], result)
        elif isinstance(result, list):  # a chain: intermediate tensors get names derived from the output
            previous = source.variable_inputs
            for i, op in enumerate(result):
                out = outputs[0] if i == len(result) - 1 else f"{outputs[0]}::{i}"
                self.add(op, previous, out, where)
                previous = [out]
        else:
            self.add(result, source.variable_inputs, outputs[0], where)

    def add(self, op: Operator, inputs: list[str], output: str, source: str) -> None:
        """Append ``output = op(*inputs)`` after checking that it runs on inputs of the known shapes."""
        samples = [torch.zeros(1, *self.shapes[i], dtype=self.dtype) for i in inputs]
        try:
            with torch.no_grad():
                shape = tuple(op.forward(*samples).shape[1:])
        except Exception as error:
            shapes = ", ".join(str(self.shapes[i]) for i in inputs)
            raise ShapeError(f"node {source}: cannot apply to inputs of shape {shapes}: {error}") from None
        self.shapes[output] = shape
        self.nodes.append(Node(output, op, inputs, shape, source))

    def set_output(self, name: str) -> None:
        self.output_name = self.resolve(name)

    def build(self) -> Graph:
        """The finished graph, with only the nodes the output depends on."""
        assert self.output_name is not None
        graph = Graph(self.input_name, self.input_shape, list(self.nodes), self.output_name)
        if self.output_name == self.input_name:
            raise ShapeError("the model's output is its input; there is nothing to analyse")
        return graph
