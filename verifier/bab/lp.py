"""Exact decision of a domain whose every ReLU has a known phase, by linear programming.

When every ReLU of a domain is stable or split, the network is affine on it: ``y = W x + b`` on the polytope
``P = {x in box : s_j z_j(x) >= 0 for every split neuron j}`` where each pre-activation ``z_j`` is itself
affine in ``x``. A case "``C y <= d`` for all rows" then has a counterexample in the domain iff the linear
program ``min t  s.t.  C_r (W x + b) - d_r <= t,  x in P`` has an optimum ``t <= 0``; its solution is the
witness. The affine maps are obtained by pushing the identity through the graph with the ReLU phases fixed.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

from verifier.complete.problem import Problem
from verifier.ir import Graph
from verifier.ops.activation import Relu


def affine_pieces(graph: Graph, phases: dict[str, Tensor], lower: Tensor) -> dict[str, Tensor] | None:
    """Affine maps ``[n_in + 1, *shape]`` (input coefficients, then the constant) of every tensor, with each ReLU
    fixed to its phase (``phases[pre_activation]``: 1 active, 0 inactive, per neuron); ``None`` if the graph has
    an operator that is neither affine nor a ReLU."""
    n = lower.numel()
    shape = graph.input_shape
    eye = torch.eye(n, dtype=lower.dtype, device=lower.device).reshape(n, *shape)
    maps = {graph.input_name: torch.cat([eye, lower.new_zeros(1, *shape)])}
    for node in graph.nodes:
        inputs = [maps[name] for name in node.inputs]
        if isinstance(node.op, Relu):
            mask = phases[node.inputs[0]].reshape(1, *node.shape).to(lower.dtype)
            maps[node.name] = inputs[0] * mask
        elif node.op.is_affine:
            linear = node.op.linear_part(*inputs)
            offset = node.op.forward(*[lower.new_zeros(1, *graph.shape(name)) for name in node.inputs])
            linear = linear.clone()
            linear[n] += offset[0]
            maps[node.name] = linear
        else:
            return None
    return maps


def decide_fixed_phases(graph: Graph, problem: Problem, pre_bounds: dict[str, tuple[Tensor, Tensor]],
                        splits: dict[str, Tensor]) -> tuple[str, np.ndarray | None]:
    """For one domain (bounds ``[*shape]`` and splits ``[N]`` per pre-activation), with no unstable ReLU left:
    ``("refuted", None)``, ``("violated", x)`` with ``x`` a point of the domain violating the property, or
    ``("unknown", None)`` when the graph is not piecewise linear or the solver fails."""
    phases, constraints = {}, []
    for name, (lower, _) in pre_bounds.items():
        split = splits[name].reshape(-1)
        active = (lower.reshape(-1) >= 0) | (split > 0)
        phases[name] = active
        constraints.append((name, split.cpu()))
    maps = affine_pieces(graph, phases, problem.lower)
    if maps is None:
        return "unknown", None
    n = problem.lower.numel()
    rows, bounds_b = [], []
    for name, split in constraints:
        pieces = maps[name].reshape(n + 1, -1).cpu()      # z = a . x + c per neuron (the LP runs on the host)
        chosen = split.nonzero().flatten()
        for j in chosen.tolist():
            sign = float(split[j])
            a, c = pieces[:n, j].double().numpy(), float(pieces[n, j])
            rows.append(np.append(-sign * a, 0.0))           # sign * (a x + c) >= 0
            bounds_b.append(sign * c)
    out = maps[graph.output_name].reshape(n + 1, -1).double().cpu().numpy()   # y = out[:n].T x + out[n]
    C, d = problem.C.double().cpu().numpy(), problem.d.double().cpu().numpy()
    box = [(float(l), float(u)) for l, u in zip(problem.lower.reshape(-1).tolist(), problem.upper.reshape(-1).tolist())]
    box.append((None, None))
    best_x, best_t = None, np.inf
    for case in range(problem.n_cases):
        case_rows = (problem.row_case == case).cpu().numpy()
        A_case = C[case_rows] @ out[:n].T                 # [k, n]
        b_case = C[case_rows] @ out[n] - d[case_rows]
        A_ub = [np.append(a, -1.0) for a in A_case] + rows
        b_ub = list(-b_case) + bounds_b
        objective = np.zeros(n + 1)
        objective[-1] = 1.0
        result = linprog(objective, A_ub=np.array(A_ub), b_ub=np.array(b_ub), bounds=box, method="highs")
        if result.status == 2:        # infeasible: the split constraints exclude every input
            continue
        if result.status != 0:
            return "unknown", None
        if result.fun < best_t:
            best_t, best_x = result.fun, result.x[:n]
    if best_x is None or best_t > 0:
        return "refuted", None
    return "violated", best_x
