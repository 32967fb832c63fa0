"""How much memory CROWN needs on a network, estimated from the graph's layer sizes before trying.

The model is the one of :mod:`verifier.bounds.crown`. Bounding a tensor ``L`` with ``K`` rows (its
``numel(L)`` neurons for a pre-activation layer, the specification rows for the output) walks
coefficients ``[b, 2K, *shape]`` back to the input (``2K``: lower and upper bounds in one pass; ``b`` is
1 while the coefficients are shared by the batch and ``B`` from the first relaxed nonlinearity on), so
the largest coefficient tensor takes up to ``2 * B * K * width(L) * itemsize`` bytes, ``width(L)`` being
the largest tensor on the way back from ``L``. The live tensor, its relaxed copy and an open residual
branch make the peak about :data:`PEAK_FACTOR` times that (the engine's own account). The interval
bounds of every tensor, ``2 * B * numel`` each, are held throughout.

The engine splits the ``K`` rows into chunks to respect its ``memory_budget`` (bytes per coefficient
tensor); the estimate reports both the memory of unchunked passes and how many chunks a given budget
forces. It is a worst case: CROWN refines only the *unstable* ReLU neurons, which are not known before
the intermediate bounds are computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from verifier.bounds.crown import pre_activation_names
from verifier.ir import Graph
from verifier.network import Network

#: peak memory of a backward pass, in units of one coefficient tensor (see verifier.bounds.crown)
PEAK_FACTOR = 3


@dataclass(frozen=True)
class LayerBoundCost:
    """The backward pass that bounds one tensor.

    ``rows``: its neurons (or spec rows); ``width``: the most elements of any tensor its coefficients
    pass through; ``coefficient_bytes``: the largest coefficient tensor of the unchunked pass (shared
    across the batch until the first relaxed nonlinearity, ``[B, ...]`` after it); ``row_bytes``: the
    bytes per row the engine assumes when it chunks (``2 * B * width * itemsize``).
    """

    name: str
    rows: int
    width: int
    coefficient_bytes: int
    row_bytes: int

    @property
    def one_row_bytes(self) -> int:
        """The largest coefficient tensor when one row is bounded per pass."""
        return -(-self.coefficient_bytes // self.rows)


@dataclass(frozen=True)
class BoundMemoryEstimate:
    """Worst-case CROWN memory for ``batch`` input boxes (all neurons unstable), in bytes."""

    batch: int
    itemsize: int
    layers: tuple[LayerBoundCost, ...]
    interval_bytes: int

    @property
    def peak_bytes(self) -> int:
        """Peak memory with every layer bounded in one pass (no chunking)."""
        return self.interval_bytes + PEAK_FACTOR * max([layer.coefficient_bytes for layer in self.layers] + [0])

    @property
    def min_peak_bytes(self) -> int:
        """Peak memory with the smallest possible chunks (one neuron per backward pass)."""
        return self.interval_bytes + PEAK_FACTOR * max([layer.one_row_bytes for layer in self.layers] + [0])

    def chunk_budget(self, memory_budget: int) -> int:
        """Bytes per coefficient tensor (the engine's ``memory_budget`` option) keeping the peak within
        ``memory_budget`` bytes; 0 when even the interval bounds do not fit."""
        return max(0, (memory_budget - self.interval_bytes) // PEAK_FACTOR)

    def chunks(self, memory_budget: int) -> dict[str, int]:
        """Backward passes per bounded tensor when the peak must stay within ``memory_budget`` bytes.

        Like the engine, a chunk holds at least one row, so where :meth:`fits` is false the passes
        exceed the budget anyway.
        """
        budget = self.chunk_budget(memory_budget)
        return {layer.name: math.ceil(layer.rows / max(1, budget // layer.row_bytes)) for layer in self.layers}

    def fits(self, memory_budget: int) -> bool:
        """Whether CROWN can run within ``memory_budget`` bytes at all (one row per pass if need be)."""
        return self.min_peak_bytes <= memory_budget


def _largest_on_the_way_back(graph: Graph) -> dict[str, int]:
    """For each tensor, the most elements of any tensor between it and the input (as the engine chunks)."""
    largest = {graph.input_name: graph.numel(graph.input_name)}
    for node in graph.nodes:
        largest[node.name] = max([graph.numel(node.name)] + [largest[i] for i in node.inputs])
    return largest


def _coefficient_elements(graph: Graph, start: str, batch: int) -> int:
    """Elements per row of the largest coefficient tensor on the backward pass from ``start``.

    Coefficients start shared by the whole batch (leading dimension 1) and become per-box (``batch``)
    once they cross an operator relaxed with its input bounds (a ReLU, a sigmoid...).
    """
    per_box = {start: False}
    largest = 0
    for position in range(graph.position(start), -1, -1):
        node = graph.nodes[position]
        if node.name not in per_box:
            continue
        flag = per_box.pop(node.name)
        largest = max(largest, graph.numel(node.name) * (batch if flag else 1))
        for name in node.inputs:
            per_box[name] = per_box.get(name, False) or flag or node.op.needs_input_bounds
    if graph.input_name in per_box:
        largest = max(largest, graph.numel(graph.input_name) * (batch if per_box[graph.input_name] else 1))
    return largest


def estimate_bound_memory(network: Network, batch: int = 1, spec_rows: int | None = None,
                          intermediate: str = "crown") -> BoundMemoryEstimate:
    """Worst-case memory of CROWN bounds on ``network`` for ``batch`` boxes, from its layer sizes.

    ``spec_rows``: rows of the specification matrix bounded at the output (default: every output;
    a robustness property has ``outputs - 1``). ``intermediate="ibp"`` leaves out the per-layer CROWN
    passes, as ``Network.bounds(..., intermediate="ibp")`` does.
    """
    graph = network.graph
    itemsize = network.dtype.itemsize
    largest = _largest_on_the_way_back(graph)
    names = [name for name in pre_activation_names(graph) if name != graph.input_name]
    if intermediate != "crown":
        names = []
    rows = {name: graph.numel(name) for name in names}
    rows[graph.output_name] = spec_rows if spec_rows is not None else graph.numel(graph.output_name)
    layers = tuple(
        LayerBoundCost(
            name,
            count,
            largest[name],
            2 * count * _coefficient_elements(graph, name, batch) * itemsize,
            2 * batch * largest[name] * itemsize,
        )
        for name, count in rows.items()
        if count > 0  # a property with no output rows (or a layer of no neurons) needs no pass
    )
    tensors = [graph.input_name] + [node.name for node in graph.nodes]
    interval_bytes = sum(2 * batch * graph.numel(name) * itemsize for name in tensors)
    return BoundMemoryEstimate(batch, itemsize, layers, interval_bytes)
