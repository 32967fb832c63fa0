"""Lower bounds of the margins ``C y`` over input boxes, differentiable in the network's parameters.

Every bound here is computed by the engine (:mod:`verifier.bounds`): on a network built with
``from_torch(module, example, share_parameters=True)`` the operators hold the module's parameters, so the
bounds backpropagate into them. Methods:

* ``ibp``: interval bound propagation (Gowal et al. 2018) with the last affine layers *elided* into the spec:
  ``C (W h + b)`` is bounded over the IBP box of ``h`` as one affine map ``(C W) h + C b`` (a backward pass
  through the affine tail, concretised on that box), tighter than bounding ``W h + b`` first.
* ``crown-ibp``: IBP pre-activation bounds, then one CROWN backward pass from the spec (Zhang et al. 2020);
  with ``beta < 1`` the bound is ``beta * CROWN-IBP + (1 - beta) * IBP`` (their eq. 9; both sound, so is
  the mix). ``crown_rows=k`` (an option for speed, not in the paper): the CROWN pass bounds only the ``k``
  margins of each sample whose IBP bound is lowest (those the cross-entropy weighs most) and the other rows
  keep their IBP bound; every row is still a sound bound, and the pass costs ``k / (K - 1)`` of the full one.
* ``crown``: CROWN pre-activation bounds and a CROWN pass from the spec, the best of it and elided IBP.
* ``alpha-crown``: ``crown`` with the final pass's ReLU lower slopes optimised first (a few Adam steps of
  alpha-CROWN on the current parameters, slopes then held fixed; Xu et al. 2021); every slope in ``[0, 1]``
  gives a sound bound, and the bound stays differentiable in the parameters.

Only lower bounds are computed (the loss needs no upper bound), in one backward pass for the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bounds.alpha import AlphaOptions, optimize_slopes, slope_step
from verifier.bounds.crown import CrownOptions, backward_lower, compute_intermediate_bounds
from verifier.bounds.ibp import interval_bounds, interval_of_spec
from verifier.ir import Graph, Node
from verifier.ops.base import Interval
from verifier.training.relu_step import relu_hook

METHODS = ("ibp", "crown-ibp", "crown", "alpha-crown")


@dataclass
class MarginBounds:
    """``lower``: the margin lower bounds the loss uses ``[B, K]``; ``bounds``: the bounds of every tensor
    (IBP, or CROWN-refined pre-activations) by name; ``ibp`` / ``crown``: the two parts where computed."""

    lower: Tensor
    bounds: dict[str, Interval]
    ibp: Tensor | None = None
    crown: Tensor | None = None


def affine_tail(graph: Graph) -> tuple[str, list[Node]]:
    """The chain of single-input affine nodes that ends at the output (a Flatten and the last Linear, say), and
    the tensor it reads; an empty chain when the output's producer is not affine."""
    nodes: list[Node] = []
    name = graph.output_name
    while name != graph.input_name:
        node = graph.node(name)
        if not node.op.is_affine or len(node.inputs) != 1:
            break
        nodes.append(node)
        name = node.inputs[0]
    return name, nodes[::-1]


def elided_interval_lower(graph: Graph, bounds: dict[str, Interval], spec: Tensor) -> Tensor:
    """Lower bounds ``[B, K]`` of ``spec @ y`` with the affine tail of the graph folded into the spec and
    concretised over the box of the tensor it reads (IBP with elision of the last layer)."""
    start, tail = affine_tail(graph)
    batch = bounds[graph.input_name][0].shape[0]
    if not tail:
        out_lower, out_upper = bounds[graph.output_name]
        return interval_of_spec(spec, out_lower.reshape(batch, -1), out_upper.reshape(batch, -1))[0]
    sub = Graph(start, graph.shape(start), tail, graph.output_name)
    A = spec.reshape(spec.shape[0], spec.shape[1], *graph.output_shape)
    return backward_lower(sub, graph.output_name, A, {start: bounds[start]})


def crown_lower(graph: Graph, bounds: dict[str, Interval], spec: Tensor, hook=None) -> Tensor:
    """CROWN lower bounds ``[B, K]`` of ``spec @ y`` given the pre-activation ``bounds`` (one backward pass);
    when gradients are recorded, ReLU steps go through :func:`verifier.training.relu_step.relu_hook`."""
    A = spec.reshape(spec.shape[0], spec.shape[1], *graph.output_shape)
    if hook is None and torch.is_grad_enabled():
        hook = relu_hook()
    return backward_lower(graph, graph.output_name, A, bounds, hook)


def margin_lower_bounds(
    graph: Graph,
    lower: Tensor,
    upper: Tensor,
    spec: Tensor,
    method: str = "ibp",
    beta: float = 1.0,
    alpha: AlphaOptions | None = None,
    crown_rows: int | None = None,
) -> MarginBounds:
    """Sound lower bounds of ``spec @ y`` (``spec`` ``[B or 1, K, n_out]``) over the boxes ``[lower, upper]``
    (``[B, *input_shape]``) by ``method`` (see the module docstring); differentiable in the parameters the
    graph's operators hold and in the boxes. ``crown_rows``: see the module docstring (``crown-ibp`` only)."""
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if method in ("ibp", "crown-ibp"):
        bounds = interval_bounds(graph, lower, upper)
        ibp = elided_interval_lower(graph, bounds, spec)
        if method == "ibp" or beta == 0.0:
            return MarginBounds(ibp, bounds, ibp=ibp)
        if crown_rows is not None and crown_rows < spec.shape[1]:
            return _crown_on_hardest_rows(graph, bounds, spec, ibp, beta, max(int(crown_rows), 1))
        crown = crown_lower(graph, bounds, spec)
        mixed = crown if beta == 1.0 else beta * crown + (1.0 - beta) * ibp
        return MarginBounds(mixed, bounds, ibp=ibp, crown=crown)
    bounds = compute_intermediate_bounds(graph, lower, upper, CrownOptions(intermediate="crown"))
    ibp = elided_interval_lower(graph, bounds, spec)
    hook = None
    if method == "alpha-crown":
        hook = _optimised_slopes(graph, bounds, spec, alpha or AlphaOptions(iterations=5, lr=0.25))
    crown = crown_lower(graph, bounds, spec, hook)
    return MarginBounds(torch.maximum(crown, ibp), bounds, ibp=ibp, crown=crown)


def _crown_on_hardest_rows(graph: Graph, bounds: dict[str, Interval], spec: Tensor, ibp: Tensor, beta: float,
                           rows: int) -> MarginBounds:
    """CROWN-IBP on the ``rows`` spec rows of each sample with the lowest IBP bound, IBP on the others."""
    index = ibp.detach().topk(rows, dim=1, largest=False).indices                     # [B, rows]
    full = spec.expand(ibp.shape[0], -1, -1)
    chosen = full.gather(1, index.unsqueeze(-1).expand(-1, -1, full.shape[2]))
    crown = crown_lower(graph, bounds, chosen)
    picked = ibp.gather(1, index)
    mixed = crown if beta == 1.0 else beta * crown + (1.0 - beta) * picked
    return MarginBounds(ibp.scatter(1, index, mixed), bounds, ibp=ibp, crown=None)


def _optimised_slopes(graph: Graph, bounds: dict[str, Interval], spec: Tensor, options: AlphaOptions):
    """A CROWN backward hook with the final pass's slopes optimised by alpha-CROWN (on detached bounds and
    frozen parameters, so the optimisation itself sends no gradient to the model), then held constant."""
    detached = {name: (low.detach(), up.detach()) for name, (low, up) in bounds.items()}
    A = spec.detach().reshape(spec.shape[0], spec.shape[1], *graph.output_shape)
    offset = A.new_zeros(A.shape[1])
    with _frozen(graph):
        _, slopes = optimize_slopes(graph, A, offset, detached, options)
    fixed = {name: value.detach() for name, value in slopes.slopes.items()}
    relu = relu_hook(fixed, graph.output_name)

    def hook(node: Node, start: str, A: Tensor, node_bounds: dict[str, Interval]):
        step = relu(node, start, A, node_bounds)
        if step is not None or start != graph.output_name or node.name not in fixed:
            return step
        return slope_step(node, A, node_bounds, fixed[node.name])  # S-shaped activations

    return hook


@contextlib.contextmanager
def _frozen(graph: Graph) -> Iterator[None]:
    """``requires_grad`` off on every leaf tensor the graph's operators hold (shared parameters), restored after."""
    leaves = [t for node in graph.nodes for t in node.op.constants().values() if t.is_leaf and t.requires_grad]
    for t in leaves:
        t.requires_grad_(False)
    try:
        yield
    finally:
        for t in leaves:
            t.requires_grad_(True)
