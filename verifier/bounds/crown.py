"""CROWN: backward linear bound propagation over a DAG (Zhang et al. 2018).

To bound ``A . y`` for a tensor ``y`` of the graph, coefficients walk back from ``y`` to the input in
reverse topological order. Each operator turns the coefficients on its output into coefficients on
its inputs plus a constant (exactly for affine operators, through a linear relaxation for the
nonlinear ones, which needs their pre-activation bounds); coefficients reaching a tensor along several
paths (residual connections) are summed. At the input the linear function is concretised over the box.

Pre-activation bounds are computed in topological order: IBP first, then, for the neurons whose
relaxation depends on them (unstable ReLUs, every neuron of a smooth activation), a CROWN pass from
that layer with unit vectors as the specification; CROWN and IBP bounds are intersected.

Memory: a backward pass holds the coefficients of the tensors that are waiting for all their readers,
``[B, k, *shape]`` each. Rows are processed in chunks of ``k`` chosen so that one coefficient tensor of
the largest layer on the way takes at most ``memory_budget`` bytes; the peak is a small multiple of
it (about 3x: the live tensor, its relaxed copy and, on residual networks, the other open branch). By
default the budget comes from the memory free on the tensors' device (:func:`verifier.device.chunk_budget`:
256 MiB on the CPU, a share of the free memory on a GPU). Every tensor made here is made on the device of
the input box.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bounds import rounding
from verifier.bounds.ibp import interval_of_spec
from verifier.cancel import checkpoint
from verifier.device import chunk_budget, halving_on_oom
from verifier.ir import Graph, Node
from verifier.kernels import concretize_box
from verifier.ops.base import ElementwiseNonlinear, Interval

#: ``hook(node, start, A, bounds)`` may replace a node's backward step (alpha-/beta-CROWN); it returns
#: ``(A_in, bias)`` like :meth:`Operator.backward`, or ``None`` to use the operator's own rule.
BackwardHook = Callable[[Node, str, Tensor, dict[str, Interval]], "tuple[list[Tensor | None], Tensor | None] | None"]


@dataclass
class CrownOptions:
    """Options of the CROWN bound computation.

    ``intermediate``: how pre-activation bounds are computed, ``"crown"`` (tighter) or ``"ibp"``.
    ``memory_budget``: bytes one chunk of backward coefficients may take (see the module docstring); ``None``:
    chosen from the memory free on the device (:func:`verifier.device.chunk_budget`).
    ``refine_all``: refine every neuron of a pre-activation tensor, not only those whose relaxation depends
    on the bounds: stable neurons' tighter bounds tighten IBP further on, where CROWN is intersected with it
    (worth it for small networks; costly for large ones).
    """

    intermediate: str = "crown"
    memory_budget: int | None = None
    refine_all: bool = False


def pre_activation_names(graph: Graph) -> list[str]:
    """Names of the tensors whose bounds a relaxation needs (inputs of nonlinear operators), in order."""
    names = {name for node in graph.nodes if node.op.needs_input_bounds for name in node.inputs}
    return [name for name in [graph.input_name] + [n.name for n in graph.nodes] if name in names]


def backward_lower(
    graph: Graph,
    start: str,
    A: Tensor,
    bounds: dict[str, Interval],
    hook: BackwardHook | None = None,
    return_coefficients: bool = False,
) -> Tensor | tuple[Tensor, Tensor | None, Tensor]:
    """Lower bound of ``A . y_start`` over the input box: ``[B, K]`` for ``A`` of shape ``[b, K, *shape]``.

    ``bounds`` must hold the input box and the bounds of every pre-activation tensor before ``start``.
    With ``return_coefficients`` also returns the linear lower bound itself, ``A . y >= A_x . x + c``:
    the input coefficients ``A_x`` (``[b, K, *input_shape]``, ``None`` if ``y`` does not depend on ``x``)
    and the constant ``c`` (``[B or 1, K]``).
    """
    pending: dict[str, Tensor] = {start: A}
    bias: Tensor | int = 0
    model = rounding.active()      # inside rounding.rigorous: each step's rounding error is summed
    error: Tensor | float = 0.0
    for position in range(graph.position(start), -1, -1):
        node = graph.nodes[position]
        coeffs = pending.pop(node.name, None)
        if coeffs is None:
            continue
        checkpoint()
        if model is not None:
            error = error + _required(model.step_error(node.name, coeffs, hook), node.name)
        step = hook(node, start, coeffs, bounds) if hook is not None else None
        if step is None:
            inputs = [bounds.get(name) for name in node.inputs] if node.op.needs_input_bounds else []
            step = node.op.backward(coeffs, inputs)
        del coeffs
        A_inputs, node_bias = step
        if node_bias is not None:
            bias = bias + node_bias
        for name, A_in in zip(node.inputs, A_inputs):
            if A_in is None:
                continue
            pending[name] = pending[name] + A_in if name in pending else A_in
    lower, upper = bounds[graph.input_name]
    A_input = pending.pop(graph.input_name, None)
    constant = bias if isinstance(bias, Tensor) else lower.new_zeros(1, A.shape[1])
    if A_input is None:  # the start tensor does not depend on the input
        result = constant.expand(lower.shape[0], -1)
    else:
        result = concretize_box(A_input, None, lower, upper) + constant
        result = result.expand(lower.shape[0], -1) if result.shape[0] != lower.shape[0] else result
        if model is not None:
            error = error + _required(model.step_error(graph.input_name, A_input), graph.input_name)
    if model is not None:
        result = rounding.finish(result, constant, error)
    return (result, A_input, constant) if return_coefficients else result


def _required(error: Tensor | None, name: str) -> Tensor:
    if error is None:
        raise ValueError(f"the rigorous rounding model has no weight for node {name!r}")
    return error


def two_sided(
    graph: Graph, start: str, A: Tensor, bounds: dict[str, Interval], hook: BackwardHook | None = None
) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds of ``A . y_start`` in one backward pass over the stacked rows ``[A; -A]``."""
    K = A.shape[1]
    both = backward_lower(graph, start, torch.cat([A, -A], dim=1), bounds, hook)
    return both[:, :K], -both[:, K:]


def _largest_layer(graph: Graph) -> dict[str, int]:
    """For each tensor, the largest number of elements of any tensor on the way back from it to the input."""
    largest = {graph.input_name: graph.numel(graph.input_name)}
    for node in graph.nodes:
        largest[node.name] = max([graph.numel(node.name)] + [largest[i] for i in node.inputs])
    return largest


@dataclass
class _Chunks:
    """Rows per backward pass (halved for good when a pass does not fit in memory)."""

    batch: int


def _chunk_rows(options: CrownOptions, batch: int, numel: int, like: Tensor) -> int:
    """Rows per backward pass: one coefficient tensor ``[batch, 2 * rows, numel]`` within the budget."""
    budget = options.memory_budget if options.memory_budget is not None else chunk_budget(like.device)
    return max(1, budget // max(1, 2 * batch * numel * like.element_size()))


def _refined_neurons(graph: Graph, name: str, lower: Tensor, upper: Tensor) -> Tensor:
    """Mask ``[B, N]`` of the neurons of tensor ``name`` whose bounds the relaxations reading it depend on,
    per domain: all, unless every reader is elementwise with a relaxation that is exact where the
    function is linear on the box (a stable ReLU), in which case those neurons are left out."""
    readers = [n for n in graph.nodes if name in n.inputs and n.op.needs_input_bounds]
    exact = [n.op.exact_relaxation(lower, upper) if isinstance(n.op, ElementwiseNonlinear) else None for n in readers]
    batch = lower.shape[0]
    if readers and all(mask is not None for mask in exact):
        return ~torch.stack(exact).all(0).reshape(batch, -1)
    return torch.ones(batch, lower[0].numel(), dtype=torch.bool, device=lower.device)


def refine_with_crown(
    graph: Graph,
    name: str,
    bounds: dict[str, Interval],
    options: CrownOptions,
    largest: dict[str, int],
    hook: BackwardHook | None = None,
) -> Interval:
    """CROWN bounds of the neurons of tensor ``name`` whose relaxation needs them, intersected with the
    current bounds (see :func:`_refined_neurons`: unstable ReLUs only, when only ReLUs read the tensor).

    The output of an elementwise nonlinearity ``f`` (a ReLU before a MaxPool) needs refining only where
    its input was not refined: IBP through ``f`` is the exact range of ``f`` over the input bounds, and a
    single-neuron linear relaxation back-substituted through those same bounds can only be looser. So
    after a ReLU only the stable neurons with a non-constant output (the active ones) are refined.

    The specification rows are unit vectors for the wanted neurons: shared by all domains (the union of
    what each wants) or, when domains want few and different neurons, chosen per domain."""
    lower, upper = bounds[name]
    batch = lower.shape[0]
    flat_lower, flat_upper = lower.reshape(batch, -1).clone(), upper.reshape(batch, -1).clone()
    wanted = _refined_neurons(graph, name, lower, upper)
    if options.refine_all:
        wanted = torch.ones_like(wanted)
    producer = graph.node(name)
    if isinstance(producer.op, ElementwiseNonlinear):
        if producer.inputs[0] == graph.input_name:  # the input box is exact: so is IBP through f
            return lower, upper
        input_refined = _refined_neurons(graph, producer.inputs[0], *bounds[producer.inputs[0]])
        wanted &= ~input_refined & (flat_upper > flat_lower)
    union = wanted.any(0)
    per_domain = int(wanted.sum(1).max()) if batch > 1 else 0
    if per_domain and per_domain < 0.5 * int(union.sum()):
        _refine_per_domain(graph, name, wanted, flat_lower, flat_upper, bounds, options, largest, hook)
    else:
        _refine_shared(graph, name, union.nonzero().flatten(), flat_lower, flat_upper, bounds, options, largest, hook)
    return flat_lower.reshape(lower.shape), flat_upper.reshape(upper.shape)


def unit_rows(index: Tensor, size: int, like: Tensor) -> Tensor:
    """Specification rows ``[1, k, size]`` picking the neurons ``index`` (``[k]``): unit vectors, in the dtype
    and on the device of ``like``."""
    A = like.new_zeros(1, index.numel(), size)
    A[0, torch.arange(index.numel(), device=index.device), index] = 1
    return A


def _refine_shared(graph, name, index, flat_lower, flat_upper, bounds, options, largest, hook) -> None:
    """Refine the neurons ``index`` in every domain, with one shared set of unit-vector rows."""
    if index.numel() == 0:
        return
    shape = graph.shape(name)
    batch = flat_lower.shape[0]
    chunking = _Chunks(_chunk_rows(options, batch, largest[name], flat_lower))

    def run(start: int, stop: int) -> tuple[Tensor, Tensor]:
        A = unit_rows(index[start:stop], flat_lower.shape[1], flat_lower)
        return two_sided(graph, name, A.reshape(1, stop - start, *shape), bounds, hook)

    for start, stop, (chunk_lower, chunk_upper) in halving_on_oom(run, index.numel(), chunking, flat_lower.device):
        chunk = index[start:stop]
        flat_lower[:, chunk] = torch.maximum(flat_lower[:, chunk], chunk_lower)
        flat_upper[:, chunk] = torch.minimum(flat_upper[:, chunk], chunk_upper)


def _refine_per_domain(graph, name, wanted, flat_lower, flat_upper, bounds, options, largest, hook) -> None:
    """Refine, in each domain, only the neurons that domain wants: row ``k`` of domain ``b`` is the unit
    vector of its ``k``-th wanted neuron (rows past a domain's count are zero and ignored)."""
    shape = graph.shape(name)
    batch, size = wanted.shape
    counts = wanted.sum(1)
    order = torch.argsort(wanted.to(torch.int8), dim=1, descending=True, stable=True)
    chunking = _Chunks(_chunk_rows(options, batch, largest[name], flat_lower))
    total = int(counts.max())

    def rows(start: int, stop: int) -> tuple[Tensor, Tensor]:
        if stop == total:  # the last chunk as wide as the others (its rows past every count are zero, ignored)
            stop = min(size, start + chunking.batch)
        index = order[:, start:stop]                                        # [B, k]
        valid = torch.arange(start, stop, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)
        return index, valid

    def run(start: int, stop: int) -> tuple[Tensor, Tensor]:
        index, valid = rows(start, stop)
        A = flat_lower.new_zeros(batch, index.shape[1], size)
        A.scatter_(2, index.unsqueeze(-1), valid.unsqueeze(-1).to(A.dtype))
        return two_sided(graph, name, A.reshape(batch, index.shape[1], *shape), bounds, hook)

    for start, stop, (chunk_lower, chunk_upper) in halving_on_oom(run, total, chunking, flat_lower.device):
        index, valid = rows(start, stop)
        old_lower, old_upper = flat_lower.gather(1, index), flat_upper.gather(1, index)
        new_lower = torch.where(valid, torch.maximum(old_lower, chunk_lower), old_lower)
        new_upper = torch.where(valid, torch.minimum(old_upper, chunk_upper), old_upper)
        flat_lower.scatter_(1, index, new_lower)
        flat_upper.scatter_(1, index, new_upper)


def compute_intermediate_bounds(
    graph: Graph,
    lower: Tensor,
    upper: Tensor,
    options: CrownOptions,
    hook: BackwardHook | None = None,
    prior: dict[str, Interval] | None = None,
    keep: Collection[str] = (),
) -> dict[str, Interval]:
    """Bounds of every tensor: IBP through the graph, with every pre-activation tensor refined by CROWN
    (when ``options.intermediate == "crown"``) before anything after it is bounded.

    ``prior`` holds bounds known to be valid on these boxes (e.g. from a parent domain in branch and
    bound); they are intersected with IBP first, so neurons they prove stable are not refined again.
    Pre-activation tensors named in ``keep`` are not refined (their prior is taken as it is)."""
    bounds: dict[str, Interval] = {graph.input_name: (lower, upper)}
    refine = set(pre_activation_names(graph)) if options.intermediate == "crown" else set()
    refine.discard(graph.input_name)
    refine.difference_update(keep)
    largest = _largest_layer(graph)
    for node in graph.nodes:
        bounds[node.name] = rounding.widen_interval(node.name, *node.op.interval(*(bounds[i] for i in node.inputs)))
        if prior is not None and node.name in prior:
            known_lower, known_upper = prior[node.name]
            node_lower, node_upper = bounds[node.name]
            bounds[node.name] = (torch.maximum(node_lower, known_lower), torch.minimum(node_upper, known_upper))
        if node.name in refine:
            bounds[node.name] = refine_with_crown(graph, node.name, bounds, options, largest, hook)
    return bounds


def crown_bounds(
    graph: Graph,
    lower: Tensor,
    upper: Tensor,
    spec: Tensor,
    options: CrownOptions | None = None,
    bounds: dict[str, Interval] | None = None,
    hook: BackwardHook | None = None,
) -> tuple[Tensor, Tensor]:
    """CROWN lower and upper bounds of ``spec @ y`` (``y`` the flattened output) over each input box.

    ``spec`` is ``[b, K, n_out]`` (``b`` = 1 or B); returns two ``[B, K]`` tensors, intersected with the
    IBP bounds of the same quantity. Pre-computed intermediate ``bounds`` may be passed in.
    """
    options = options or CrownOptions()
    if bounds is None:
        bounds = compute_intermediate_bounds(graph, lower, upper, options, hook)
    batch = lower.shape[0]
    out_shape = graph.output_shape
    K = spec.shape[1]
    chunking = _Chunks(_chunk_rows(options, batch, _largest_layer(graph)[graph.output_name], lower))

    def run(start: int, stop: int) -> tuple[Tensor, Tensor]:
        part = spec[:, start:stop]
        return two_sided(graph, graph.output_name, part.reshape(part.shape[0], part.shape[1], *out_shape), bounds,
                         hook)

    pieces_lower, pieces_upper = [], []
    for _, _, (part_lower, part_upper) in halving_on_oom(run, K, chunking, lower.device):
        pieces_lower.append(part_lower)
        pieces_upper.append(part_upper)
    crown_lower, crown_upper = torch.cat(pieces_lower, 1), torch.cat(pieces_upper, 1)
    out_lower, out_upper = bounds[graph.output_name]
    ibp_lower, ibp_upper = interval_of_spec(spec, out_lower.reshape(batch, -1), out_upper.reshape(batch, -1))
    return torch.maximum(crown_lower, ibp_lower), torch.minimum(crown_upper, ibp_upper)
