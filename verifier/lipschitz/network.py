"""Upper bounds on the Lipschitz constants of a network's logit differences ``f_y - f_j``.

Every tensor ``t`` of the graph gets two numbers, ``L2[t]`` and ``Linf[t]``: Lipschitz constants of
``x -> t(x)`` from the input norm ``p`` (L2 or L-infinity) to the L2 and L-infinity norms of ``t``.
They are propagated in topological order:

* the input: ``L2 = 1``, ``Linf = 1`` for ``p = 2``; ``L2 = sqrt(d)``, ``Linf = 1`` for ``p = inf``;
* a chain of affine layers ``M`` (consecutive, nothing else reading what lies between them; bounded as one
  map, see :mod:`verifier.lipschitz.operator_norms`): ``L2' = min(||M||_2 L2, ||M||_{inf->2} Linf)`` and
  ``Linf' = min(||M||_inf Linf, ||M||_{2->inf} L2)``;
* an elementwise activation whose derivative is at most ``k`` in magnitude (ReLU, LeakyReLU, Clip, Abs,
  Tanh, Sin, Cos: 1; Sigmoid 1/4; Softplus 1; Erf 2/sqrt(pi); GELU 1.13): both times ``k``;
* a sum or difference of two tensors (a residual block): the sum of the constants;
* a concatenation: ``sqrt`` of the sum of squares (L2), the maximum (L-infinity);
* a max pool: 1 in L-infinity, ``sqrt(c)`` in L2 with ``c`` the most windows one element belongs to.

A logit difference ``g = c . y`` (``c = e_y - e_j``) is pushed back through the affine chain that ends at
the output, so its row ``a = c^T M`` is the exact one (``w_y - w_j`` for a final dense layer, not the
layer's norm times ``||c||``), and ``Lip_p(g) <= min(||a||_2 L2[t], ||a||_1 Linf[t])`` for the tensor
``t`` that chain starts from. Networks made of norm-preserving (orthogonal) layers thus get
``||w_y - w_j||_2``, their true constant when the activations preserve norms too.

The constants are for the function the weights define in real arithmetic (as every bound of the engine);
each step rounds upwards by a relative margin (:data:`~verifier.lipschitz.operator_norms.RELATIVE_MARGIN`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from verifier.errors import VerifierError
from verifier.ir import Graph, Node
from verifier.lipschitz.operator_norms import MATERIALIZE_LIMIT, RELATIVE_MARGIN, Norms, chain_jacobian, chain_norms
from verifier.network import Network


class LipschitzError(VerifierError):
    """The network has an operator without a global Lipschitz bound here (named with its node)."""


#: largest |f'| of each 1-D activation (its Lipschitz constant); LeakyReLU/PReLU are handled apart
ACTIVATION_CONSTANTS = {
    "Relu": 1.0, "Clip": 1.0, "Abs": 1.0, "Tanh": 1.0, "Sin": 1.0, "Cos": 1.0, "Softplus": 1.0,
    "Sigmoid": 0.25, "Erf": 2 / math.sqrt(math.pi), "Gelu": 1.13,
}


@dataclass
class LipschitzBounds:
    """Upper bounds ``L[y, j]`` on the Lipschitz constant of ``f_y - f_j`` w.r.t. the input's ``norm``
    (``"l2"`` or ``"linf"``), for every pair of outputs (the diagonal is 0).

    ``per_tensor`` holds the (L2, L-infinity) constants of every tensor (see the module docstring)."""

    norm: str
    matrix: np.ndarray
    per_tensor: dict[str, tuple[float, float]] = field(repr=False, default_factory=dict)

    def radius(self, logits: np.ndarray, labels: np.ndarray, slack: float = 0.0) -> np.ndarray:
        """The certified radius of each input: ``min_j (f_y - f_j - slack) / L[y, j]`` over ``j != y``,
        0 where that is not positive (the label is not the strict top class). ``logits`` ``[N, K]``."""
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        n = logits.shape[0]
        margin = logits[np.arange(n), labels][:, None] - logits - slack         # [N, K]
        constant = self.matrix[labels]                                          # [N, K]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(constant > 0, margin / constant, np.where(margin > 0, np.inf, -np.inf))
        ratio[np.arange(n), labels] = np.inf
        radius = ratio.min(1) if logits.shape[1] > 1 else np.full(n, np.inf)
        return np.where(radius > 0, radius, 0.0)


def lipschitz_bounds(network: Network, norm: str = "l2", materialize_limit: int = MATERIALIZE_LIMIT
                     ) -> LipschitzBounds:
    """Upper bounds on the Lipschitz constants of every logit difference ``f_y - f_j`` of ``network`` with
    respect to the input's ``norm`` (``"l2"`` or ``"linf"``); see the module docstring for the rules.
    ``materialize_limit``: chains of affine layers up to this many Jacobian entries get exact norms.
    Raises :class:`LipschitzError` for an operator with no global Lipschitz bound (Exp, a product of two
    variables, ...)."""
    norm = _norm_name(norm)
    graph = network.graph
    device = network.device
    consumers = graph.consumers()
    d = graph.numel(graph.input_name)
    constants: dict[str, tuple[float, float]] = {graph.input_name: (1.0, 1.0) if norm == "l2" else (math.sqrt(d), 1.0)}
    chains = _affine_chains(graph, consumers)
    final_chain = None
    for node in graph.nodes:
        if node.name in constants:
            continue
        chain = chains.get(node.name)
        if chain is not None:
            start = chain[0].inputs[0]
            if chain[-1].name == graph.output_name:
                final_chain = chain
            norms = _chain_norms(graph, chain, device, materialize_limit)
            l2_in, linf_in = constants[start]
            constants[chain[-1].name] = (min(norms.l2 * l2_in, norms.linf_to_l2 * linf_in),
                                         min(norms.linf * linf_in, norms.l2_to_linf * l2_in))
            for inner in chain[:-1]:
                constants[inner.name] = (math.inf, math.inf)  # never read: only the chain's end is
            continue
        constants[node.name] = _node_constants(graph, node, constants)
    return LipschitzBounds(norm, _pair_matrix(graph, final_chain, constants, device, materialize_limit), constants)


def _norm_name(norm: str) -> str:
    name = str(norm).lower().replace("-", "").replace("_", "")
    if name in ("l2", "2"):
        return "l2"
    if name in ("linf", "inf", "l∞"):
        return "linf"
    raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")


def _affine_chains(graph: Graph, consumers: dict[str, list[Node]]) -> dict[str, list[Node]]:
    """Maximal chains of single-input affine nodes, each node but the last read only by the next; keyed
    by the chain's first node."""
    chains: dict[str, list[Node]] = {}
    taken: set[str] = set()
    for node in graph.nodes:
        if node.name in taken or not _single_affine(node):
            continue
        chain = [node]
        while chain[-1].name != graph.output_name:
            readers = consumers.get(chain[-1].name, [])
            if len(readers) != 1 or not _single_affine(readers[0]):
                break
            chain.append(readers[0])
        taken.update(n.name for n in chain)
        chains[node.name] = chain
    return chains


def _single_affine(node: Node) -> bool:
    return node.op.is_affine and len(node.inputs) == 1


def _chain_norms(graph: Graph, chain: list[Node], device, limit: int) -> Norms:
    shapes = [graph.shape(chain[0].inputs[0])] + [n.shape for n in chain]
    norms = chain_norms([n.op for n in chain], shapes, device, limit)
    if norms is None:
        names = ", ".join(f"{n.op.op_type} at node {n.name!r}" for n in chain)
        raise LipschitzError(f"no operator-norm bound for the affine layers {names}: they are too large to "
                             f"materialise ({math.prod(shapes[0])} x {math.prod(shapes[-1])} entries) and have "
                             "no structural rule (dense, convolution, elementwise scaling, reshape)")
    return norms


def _node_constants(graph: Graph, node: Node, constants: dict[str, tuple[float, float]]) -> tuple[float, float]:
    from verifier.ops.elementwise import AddVariables
    from verifier.ops.indexing import Concat
    from verifier.ops.piecewise import LeakyRelu
    from verifier.ops.pooling import MaxPool

    op = node.op
    ins = [constants[name] for name in node.inputs]
    if isinstance(op, LeakyRelu):
        alpha = op.alpha
        slope = float(alpha.abs().max()) if isinstance(alpha, torch.Tensor) else abs(float(alpha))
        k = max(1.0, slope)
        return ins[0][0] * k, ins[0][1] * k
    if op.op_type in ACTIVATION_CONSTANTS and len(ins) == 1:
        k = ACTIVATION_CONSTANTS[op.op_type]
        return ins[0][0] * k, ins[0][1] * k
    if isinstance(op, AddVariables):
        out = math.prod(node.shape)
        l2 = sum(c[0] * math.sqrt(out / graph.numel(name)) for c, name in zip(ins, node.inputs))
        return _up(l2), _up(sum(c[1] for c in ins))
    if isinstance(op, Concat):
        return _up(math.sqrt(sum(c[0] ** 2 for c in ins))), max(c[1] for c in ins)
    if isinstance(op, MaxPool):
        index = op.index[op.index < op.spatial_size]
        most = int(torch.bincount(index.reshape(-1).cpu()).max()) if index.numel() else 1
        return _up(ins[0][0] * math.sqrt(most)), ins[0][1]
    raise LipschitzError(f"no Lipschitz bound for operator {op.op_type!r} at node {node.name!r}: "
                         "supported are affine layers, 1-Lipschitz activations (ReLU, LeakyReLU, Clip, Abs, Tanh, "
                         "Sigmoid, Softplus, Erf, GELU, Sin, Cos), sums, concatenations and max pooling")


def _up(value: float) -> float:
    return float(value) * (1 + RELATIVE_MARGIN)


def _pair_matrix(graph: Graph, chain: list[Node] | None, constants, device, limit: int) -> np.ndarray:
    """``L[y, j]`` from the rows ``a = (e_y - e_j)^T M`` of the output's affine chain (or ``e_y - e_j``)."""
    n_out = graph.numel(graph.output_name)
    if chain is None:
        rows = torch.eye(n_out, dtype=torch.float64)
        start = graph.output_name
    else:
        start = chain[0].inputs[0]
        shapes = [graph.shape(start)] + [n.shape for n in chain]
        n_in = math.prod(shapes[0])
        if n_in * n_out <= limit:
            rows = chain_jacobian([n.op for n in chain], shapes[0], device).cpu()          # [n_out, n_in]
        else:
            from verifier.lipschitz.operator_norms import float64_copy

            A = torch.eye(n_out, dtype=torch.float64, device=device).reshape(1, n_out, *shapes[-1])
            for node in reversed(chain):
                (A,), _ = float64_copy(node.op).backward(A, [None] * len(node.inputs))
            rows = A.reshape(n_out, -1).cpu()
    l2_in, linf_in = constants[start]
    matrix = np.zeros((n_out, n_out))
    for y in range(n_out):
        diff = rows[y].unsqueeze(0) - rows                                                # [n_out, n]
        two = diff.norm(dim=1).numpy() * l2_in
        one = diff.abs().sum(1).numpy() * linf_in
        matrix[y] = np.minimum(two, one) * (1 + RELATIVE_MARGIN)
    np.fill_diagonal(matrix, 0.0)
    return matrix
