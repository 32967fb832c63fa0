"""The user-facing network: concrete execution and output bounds over input boxes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds, crown_bounds
from verifier.bounds.ibp import interval_bounds, interval_of_spec
from verifier.device import DeviceLike, resolve_device, use_ieee_float32
from verifier.errors import OptionError, ShapeError
from verifier.ir import Graph

METHODS = ("ibp", "crown")


@dataclass
class Bounds:
    """Lower and upper bounds, ``[B, K]`` (one row per input box, one column per spec row or output)."""

    lower: Tensor
    upper: Tensor

    def __iter__(self):
        return iter((self.lower, self.upper))


class Network:
    """A network in the graph IR, with its input and output shapes (ONNX shapes at batch size 1).

    Inputs may be given as ``[B, *input_shape]``, ``[B, input_size]``, or one unbatched ``input_shape``
    or ``input_size`` tensor; NumPy arrays are accepted. The batch dimension of the result is always
    present.
    """

    def __init__(self, graph: Graph, source: Path | None = None):
        self.graph = graph
        self.source = source
        #: the torch module a network was converted from (its independent executor), else None
        self.module = None
        self.dtype = _graph_dtype(graph)
        self.device = _graph_device(graph)

    # -- shapes ---------------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.graph.output_shape

    @property
    def input_size(self) -> int:
        return math.prod(self.input_shape)

    @property
    def output_size(self) -> int:
        return math.prod(self.output_shape)

    def to(self, device: DeviceLike | torch.dtype = None, dtype: torch.dtype | None = None) -> Network:
        """Move every constant to ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
        ``torch.device``; see :func:`verifier.device.resolve_device`) and cast the weights to ``dtype`` (e.g.
        ``torch.float64`` for exact-arithmetic comparisons), in place. ``net.to(torch.float64)`` casts only."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        target = None if device is None else resolve_device(device)
        for node in self.graph.nodes:
            node.op.to(dtype=dtype, device=target)
        if dtype is not None:
            self.dtype = dtype
        if target is not None:
            self.device = target
            use_ieee_float32(target)
        return self

    def as_batch(self, x: Tensor | np.ndarray, what: str = "input") -> Tensor:
        """``x`` as a ``[B, *input_shape]`` tensor of the network's dtype on its device (see the class docstring)."""
        x = as_tensor(x, self.dtype, self.device)
        shape, size = tuple(x.shape), self.input_size
        if shape in (self.input_shape, (size,)):
            return x.reshape(1, *self.input_shape)
        if shape[1:] in (self.input_shape, (size,)):
            return x.reshape(-1, *self.input_shape)
        raise ShapeError(
            f"{what} of shape {tuple(x.shape)} does not fit the network input {self.input_shape} "
            f"({size} values); give [B, {', '.join(map(str, self.input_shape))}] or [B, {size}]"
        )

    # -- execution ------------------------------------------------------------------------------------
    def forward(self, x: Tensor | np.ndarray) -> Tensor:
        """The network's output for each input: ``[B, *output_shape]``."""
        return self.graph.forward(self.as_batch(x))

    __call__ = forward

    def forward_flat(self, x: Tensor | np.ndarray) -> Tensor:
        """The output for each input, flattened to ``[B, output_size]``."""
        y = self.forward(x)
        return y.reshape(y.shape[0], -1)

    # -- bounds ---------------------------------------------------------------------------------------
    def bounds(
        self,
        lower: Tensor | np.ndarray,
        upper: Tensor | np.ndarray,
        method: str = "crown",
        C: Tensor | np.ndarray | None = None,
        intermediate: str = "crown",
        memory_budget: int | None = None,
    ) -> Bounds:
        """Sound lower and upper bounds on the outputs (or on ``C @ y``) over a batch of input boxes.

        ``lower``/``upper``: ``B`` input boxes (shapes as in the class docstring).
        ``method``: ``"ibp"`` (interval bound propagation) or ``"crown"`` (backward linear relaxation,
        Zhang et al. 2018; pre-activation bounds by CROWN, or by IBP with ``intermediate="ibp"``).
        ``C``: specification matrix ``[K, output_size]`` shared by all boxes, or ``[B, K, output_size]``;
        ``None`` bounds every output. ``memory_budget``: bytes per chunk of backward coefficients
        (the peak is about 3x; see :mod:`verifier.bounds.crown`).

        Returns :class:`Bounds` with ``lower`` and ``upper`` of shape ``[B, K]`` (``K = output_size``
        without ``C``).
        """
        if method not in METHODS:
            raise OptionError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
        if intermediate not in METHODS:
            raise OptionError(f"unknown intermediate method {intermediate!r}; choose one of {', '.join(METHODS)}")
        lower_t, upper_t = self.as_batch(lower, "lower bound"), self.as_batch(upper, "upper bound")
        if lower_t.shape != upper_t.shape:
            raise ShapeError(
                f"lower and upper bounds have different shapes {tuple(lower_t.shape)} and {tuple(upper_t.shape)}"
            )
        if torch.isnan(lower_t).any() or torch.isnan(upper_t).any():
            raise OptionError("the input box contains NaN")
        if (lower_t > upper_t).any():
            raise OptionError("the input box is empty: some lower bound exceeds its upper bound")
        spec = self._spec(C, lower_t.shape[0])
        with torch.no_grad():
            if method == "ibp":
                out_lower, out_upper = interval_bounds(self.graph, lower_t, upper_t)[self.graph.output_name]
                batch = lower_t.shape[0]
                return Bounds(*interval_of_spec(spec, out_lower.reshape(batch, -1), out_upper.reshape(batch, -1)))
            options = CrownOptions(intermediate=intermediate)
            if memory_budget is not None:
                options.memory_budget = memory_budget
            return Bounds(*crown_bounds(self.graph, lower_t, upper_t, spec, options))

    def intermediate_bounds(self, lower, upper, intermediate: str = "crown") -> dict[str, tuple[Tensor, Tensor]]:
        """Bounds of every tensor of the graph by name (IBP, with pre-activation tensors refined by CROWN)."""
        lower_t, upper_t = self.as_batch(lower), self.as_batch(upper)
        with torch.no_grad():
            return compute_intermediate_bounds(self.graph, lower_t, upper_t, CrownOptions(intermediate=intermediate))

    def _spec(self, C: Tensor | np.ndarray | None, batch: int) -> Tensor:
        if C is None:
            return torch.eye(self.output_size, dtype=self.dtype, device=self.device).unsqueeze(0)
        C = as_tensor(C, self.dtype, self.device)
        if C.dim() == 1:
            C = C.unsqueeze(0)
        if C.dim() == 2:
            C = C.unsqueeze(0)
        if C.dim() != 3 or C.shape[-1] != self.output_size or C.shape[0] not in (1, batch):
            raise ShapeError(
                f"spec matrix C of shape {tuple(C.shape)} does not fit {batch} box(es) and "
                f"{self.output_size} outputs; give [K, {self.output_size}] or [{batch}, K, {self.output_size}]"
            )
        return C

    def summary(self) -> str:
        """A table of the nodes: name, operator, output shape."""
        lines = [f"input {self.graph.input_name}: {self.input_shape}"]
        for node in self.graph.nodes:
            lines.append(f"{node.name}: {node.op.describe()} <- {', '.join(node.inputs)} -> {node.shape}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Network(input={self.input_shape}, output={self.output_shape}, nodes={len(self.graph.nodes)})"


def as_tensor(x: Tensor | np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``x`` (a tensor, an array or nested numbers) as a tensor of ``dtype`` on ``device``; arrays are copied
    straight to the device."""
    if isinstance(x, Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _graph_dtype(graph: Graph) -> torch.dtype:
    for node in graph.nodes:
        for value in node.op.constants().values():
            if value.is_floating_point():
                return value.dtype
    return torch.float32


def _graph_device(graph: Graph) -> torch.device:
    for node in graph.nodes:
        for value in node.op.constants().values():
            return value.device
    return torch.device("cpu")
