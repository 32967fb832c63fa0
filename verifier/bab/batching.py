"""How many sub-domains one bound pass of branch and bound takes, sized to the memory free on the device, and
what happens when an allocation fails anyway: the batch is halved and the same domains are bounded again.

On the CPU the batch sizes stay the ones measured fastest there (256 domains for ReLU splitting, about 1024
ACAS-Xu-sized boxes for input splitting), lowered only when the free memory would not hold them. A GPU is fed
as many domains as a share of its free memory holds, up to a cap past which a bigger batch only adds latency.
The memory a domain needs is an estimate (coefficients, slopes, multipliers, Adam's moments and what autograd
keeps, per neuron of the network); :func:`halving_on_oom` covers what the estimate misses.
"""

from __future__ import annotations

import math

import torch

from verifier.device import cached_free_memory
from verifier.ir import Graph

#: the share of the free memory a batch's bound pass may take (the rest: the open domains, the allocator's slack)
MEMORY_SHARE = 0.4
#: the largest batches on a GPU: past them a bound pass is long enough to keep the GPU busy, and a bigger batch
#: only delays the next decision of the search
GPU_RELU_BATCH = 8192
GPU_INPUT_BATCH = 32768
#: bytes kept per neuron and (domain, row) pair: the backward coefficients with their saved copies and gradients
#: (about 4 numbers per neuron of every tensor), and per ReLU neuron the slope and multiplier with their
#: gradients, Adam's two moments and the split-clamped bounds (about 16)
PER_NEURON, PER_RELU = 4, 16


def relu_split_bytes(graph: Graph, rows: int, itemsize: int) -> int:
    """Estimated bytes one domain takes in a ReLU-split bound pass with ``rows`` open specification rows."""
    neurons = graph.numel(graph.input_name) + sum(graph.numel(node.name) for node in graph.nodes)
    relus = sum(graph.numel(node.name) for node in graph.nodes if node.op.op_type == "Relu")
    return max(1, rows) * itemsize * (PER_NEURON * neurons + PER_RELU * relus)


def relu_split_batch(graph: Graph, rows: int, dtype: torch.dtype, device: torch.device, cpu_batch: int = 256) -> int:
    """Domains per bound pass of ReLU splitting on ``device``: ``cpu_batch`` on the CPU (less if the memory is
    short), on a GPU as many as :data:`MEMORY_SHARE` of its free memory holds, at most :data:`GPU_RELU_BATCH`;
    a power of two, at least 2 (both children of a parent)."""
    fits = int(MEMORY_SHARE * cached_free_memory(device)) // relu_split_bytes(graph, rows, torch.finfo(dtype).bits // 8)
    limit = cpu_batch if device.type == "cpu" else GPU_RELU_BATCH
    return _power_of_two(max(2, min(limit, fits)))


def input_split_batch(graph: Graph, rows: int, dtype: torch.dtype, device: torch.device, cpu_batch: int) -> int:
    """Boxes per bound pass of input splitting on ``device``: ``cpu_batch`` on the CPU (less if the memory is short;
    the search sizes it to the network, about as much work as 1024 ACAS Xu boxes), on a GPU 32 times that, as
    far as :data:`MEMORY_SHARE` of the free memory holds, at most :data:`GPU_INPUT_BATCH`."""
    neurons = graph.numel(graph.input_name) + sum(graph.numel(node.name) for node in graph.nodes)
    per_box = torch.finfo(dtype).bits // 8 * PER_RELU * neurons * max(8, rows)
    fits = int(MEMORY_SHARE * cached_free_memory(device)) // per_box
    wanted = cpu_batch if device.type == "cpu" else min(GPU_INPUT_BATCH, 32 * cpu_batch)
    return max(16, min(wanted, fits)) if device.type == "cpu" else max(16, _power_of_two(min(wanted, fits)))


def _power_of_two(n: int) -> int:
    return 1 << max(0, int(math.log2(max(1, n))))
