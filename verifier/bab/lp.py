"""Exact decision of a domain whose every ReLU has a known phase, by linear programming.

When every ReLU of a domain is stable or split, the network is affine on it: ``y = W x + b`` on the polytope
``P = {x in box : s_j z_j(x) >= 0 for every split neuron j}`` where each pre-activation ``z_j`` is itself
affine in ``x``. A case "``C y <= d`` for all rows" then has a counterexample in the domain iff the linear
program ``min t  s.t.  C_r (W x + b) - d_r <= t,  x in P`` has an optimum ``t <= 0``; its solution is the
witness. The affine maps are obtained by pushing the identity through the graph with the ReLU phases fixed.

Everything is built in float64 (from a float64 copy of the graph: float32 weights are exact there), and a case
counts as refuted only when the optimum exceeds a margin covering HiGHS's feasibility tolerance at the scale
of the problem (:func:`verifier.bab.milp.refutation_margin`); an optimum between 0 and that margin leaves the
domain open (``"unknown"``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from scipy.optimize import linprog
from torch import Tensor

from verifier.bab.milp import FEASIBILITY_TOLERANCE, refutation_margin
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
    graph = float64_graph(graph)
    pre_bounds = {k: (lo.double().cpu(), hi.double().cpu()) for k, (lo, hi) in pre_bounds.items()}
    splits = {k: v.cpu() for k, v in splits.items()}
    phases, constraints = {}, []
    for name, (lower, _) in pre_bounds.items():
        split = splits[name].reshape(-1)
        active = (lower.reshape(-1) >= 0) | (split > 0)
        phases[name] = active
        constraints.append((name, split.cpu()))
    maps = affine_pieces(graph, phases, problem.lower.double().cpu())
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
        A_ub, b_ub = np.array(A_ub), np.array(b_ub)
        result = linprog(objective, A_ub=A_ub, b_ub=b_ub, bounds=box, method="highs",
                         options={"primal_feasibility_tolerance": FEASIBILITY_TOLERANCE,
                                  "dual_feasibility_tolerance": FEASIBILITY_TOLERANCE})
        if result.status == 2:        # infeasible: the split constraints exclude every input
            continue
        if result.status != 0:
            return "unknown", None
        # the scale: the largest magnitude a row's terms reach over the box
        reach = np.abs(A_ub[:, :n]) @ np.maximum(np.abs(problem.lower.double().reshape(-1).cpu().numpy()),
                                                  np.abs(problem.upper.double().reshape(-1).cpu().numpy()))
        margin = refutation_margin(float((reach + np.abs(b_ub)).max(initial=1.0)))
        if result.fun <= margin and result.fun < best_t:
            best_t, best_x = result.fun, result.x[:n]
    if best_x is None:
        return "refuted", None
    # an optimum in (0, margin] is within the solver's tolerance of a counterexample: not a refutation
    return ("violated" if best_t <= 0 else "unknown"), best_x


_FLOAT64: dict[int, tuple[Graph, Graph]] = {}


def float64_graph(graph: Graph) -> Graph:
    """A float64 copy of ``graph`` on the CPU, where the LP and MILP are built (kept for the graphs last asked
    for; the graph itself if it is float64 on the CPU already)."""
    from verifier.network import _graph_device, _graph_dtype

    if _graph_dtype(graph) == torch.float64 and _graph_device(graph).type == "cpu":
        return graph
    entry = _FLOAT64.get(id(graph))
    if entry is None or entry[0] is not graph:
        if len(_FLOAT64) > 4:
            _FLOAT64.clear()
        copied = copy.deepcopy(graph)
        for node in copied.nodes:
            node.op.to(dtype=torch.float64, device=torch.device("cpu"))
        entry = _FLOAT64[id(graph)] = (graph, copied)
    return entry[1]
