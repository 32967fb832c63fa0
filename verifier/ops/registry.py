"""Registry from front-end operator names to the operator families that implement them.

Each operator module registers its own converters with :func:`onnx_op` (ONNX op types) and
:func:`torch_op` (``torch.nn`` module types and functions), next to the operator's rules, so adding an
operator touches one file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from verifier.errors import UnsupportedOperatorError
from verifier.ops.base import Operator


@dataclass
class Outputs:
    """What a converter returns for a node with several outputs (ONNX ``Split``): one operator per output,
    each reading the node's variable inputs."""

    ops: list[Operator]


#: A converter returns an operator, the name of an input tensor the node is an alias of, a list of
#: operators applied one after the other (a chain: the first reads the node's variable inputs, each next
#: one the previous result; e.g. Softmax), or :class:`Outputs` for a node with several outputs.
Converted = Operator | str | list[Operator] | Outputs

ONNX_CONVERTERS: dict[str, Callable[[SourceNode], Converted]] = {}
TORCH_CONVERTERS: dict[Any, Callable[[SourceNode], Converted]] = {}


@dataclass
class SourceNode:
    """A front-end node as converters see it: attributes, constant inputs and variable input shapes.

    ``inputs`` lists the input tensor names in order ('' for an omitted optional input);
    ``constants`` maps the names of inputs that are known constants to their values;
    ``shapes`` maps variable input names to their shapes (ONNX shape at batch size 1).
    """

    op_type: str
    name: str
    inputs: list[str]
    attrs: dict[str, Any]
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    module: Any = None
    dtype: torch.dtype = torch.float32
    #: the ONNX opset of the model (attribute defaults changed between opsets, e.g. Softmax's axis)
    opset: int = 18
    #: how many outputs the node has (ONNX Split without explicit sizes splits into that many parts)
    num_outputs: int = 1

    def const(self, index: int) -> np.ndarray | None:
        """The value of input ``index`` if it is a constant (or absent), else ``None``."""
        if index >= len(self.inputs) or self.inputs[index] == "":
            return None
        return self.constants.get(self.inputs[index])

    def is_const(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index] in self.constants

    def has_input(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index] != ""

    @property
    def variable_inputs(self) -> list[str]:
        return [name for name in self.inputs if name and name not in self.constants]

    def shape(self, index: int) -> tuple[int, ...]:
        return self.shapes[self.inputs[index]]

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def tensor(self, value: np.ndarray) -> Tensor:
        """A constant as a tensor in the network's floating-point type."""
        return torch.from_numpy(np.array(value, dtype=np.float64)).to(self.dtype)

    def unsupported(self, reason: str) -> UnsupportedOperatorError:
        """An error naming this node, to be raised by a converter that cannot handle its configuration."""
        return UnsupportedOperatorError(self.op_type, self.name, reason)


def onnx_op(*op_types: str):
    """Register a converter for the given ONNX op types."""

    def register(fn):
        for op_type in op_types:
            ONNX_CONVERTERS[op_type] = fn
        return fn

    return register


def torch_op(*targets: Any):
    """Register a converter for ``torch.nn`` module classes, functions or ``Tensor`` method names."""

    def register(fn):
        for target in targets:
            TORCH_CONVERTERS[target] = fn
        return fn

    return register


def normalize_axis(axis: int, rank: int) -> int:
    """An ONNX axis (possibly negative) as an index into the per-sample shape of rank ``rank``."""
    if axis < 0:
        axis += rank
    if not 0 <= axis < rank:
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis
