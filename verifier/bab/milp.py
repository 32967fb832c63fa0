"""Exact decision of a property on a small piecewise-linear network by mixed-integer linear programming.

The network becomes a MILP (Tjeng et al. 2019) built in float64 from the tightest pre-activation bounds at
hand (alpha-CROWN's at the root of a search, or a domain's):

* every tensor is an affine expression over the MILP's variables (the inputs, then one variable per ReLU
  output that is not constant); affine operators compose expressions (their Jacobians, sparse), so no
  variable is spent on them;
* a ReLU neuron with bounds ``[l, u]``: ``u <= 0`` gives the constant 0; ``l >= 0`` a variable equal to its
  input; ``l < 0 < u`` a variable ``a`` and a binary ``delta`` with the big-M constraints
  ``a >= z, a >= 0, a <= u delta, a <= z - l (1 - delta)``; a split neuron is fixed to its phase;
* LeakyReLU ``max(z, s z) = s z + (1 - s) relu(z)`` goes through the same ReLU encoding.

A case "``C_r y <= d_r`` for all rows ``r``" is decided by ``min t`` subject to ``C_r y - d_r <= t`` (HiGHS,
through ``scipy.optimize.milp``): a solution with ``t <= 0`` is a *candidate* counterexample (it is
re-checked by onnxruntime like every other); the case is refuted only when the optimum exceeds
:func:`refutation_margin`, which covers HiGHS's feasibility tolerance at the problem's scale. An optimum
between 0 and that margin is resolved by nothing: the case stays open.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import Tensor

from verifier.complete.float_sound import accept_solver_refutation
from verifier.complete.problem import Problem
from verifier.ir import Graph
from verifier.ops.activation import Relu
from verifier.ops.piecewise import LeakyRelu

#: HiGHS's feasibility tolerances for our problems (its defaults are 1e-6 / 1e-7)
FEASIBILITY_TOLERANCE = 1e-9
#: a refutation needs ``min t`` above this many feasibility tolerances times the problem's scale
MARGIN_FACTOR = 1000.0


def refutation_margin(scale: float, tolerance: float = FEASIBILITY_TOLERANCE) -> float:
    """The least optimum that counts as a refutation: the solver's feasibility ``tolerance`` times the scale
    of the quantities in the problem (the largest magnitude of the bounded output margins), times
    :data:`MARGIN_FACTOR` for the constraints the violations can accumulate over."""
    return MARGIN_FACTOR * tolerance * max(1.0, scale)


class Unsupported(Exception):
    """The graph has an operator the MILP encoding does not handle."""


@dataclass
class Encoding:
    """The network's constraints: variables ``[x | layer variables]``, their bounds and integrality, rows
    ``row_lower <= A v <= row_upper``, and the output as ``y = E v + c``."""

    n_vars: int
    lower: np.ndarray
    upper: np.ndarray
    integrality: np.ndarray
    A: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    out_E: sp.csr_matrix
    out_c: np.ndarray
    binaries: int
    n_inputs: int


class _Builder:
    def __init__(self, lower: np.ndarray, upper: np.ndarray):
        self.var_lower = list(lower)
        self.var_upper = list(upper)
        self.integer = [0] * len(lower)
        self.rows: list[tuple[np.ndarray, np.ndarray]] = []   # (indices, values) per row
        self.row_lower: list[float] = []
        self.row_upper: list[float] = []

    @property
    def n(self) -> int:
        return len(self.var_lower)

    def add_vars(self, lower, upper, integer: int = 0) -> np.ndarray:
        start = self.n
        self.var_lower.extend(np.asarray(lower, float).tolist())
        self.var_upper.extend(np.asarray(upper, float).tolist())
        self.integer.extend([integer] * len(lower))
        return np.arange(start, self.n)

    def add_rows(self, E: sp.csr_matrix, extra: list[tuple[np.ndarray, np.ndarray]], lo, hi) -> None:
        """Rows ``lo <= E_i v + sum_k extra_k[1][i] v[extra_k[0][i]] <= hi`` for every row ``i`` of ``E``."""
        E = E.tocsr()
        for i in range(E.shape[0]):
            start, end = E.indptr[i], E.indptr[i + 1]
            index = [E.indices[start:end]] + [np.array([cols[i]]) for cols, _ in extra]
            value = [E.data[start:end]] + [np.array([vals[i]], float) for _, vals in extra]
            self.rows.append((np.concatenate(index), np.concatenate(value)))
        self.row_lower.extend(np.broadcast_to(np.asarray(lo, float), (E.shape[0],)).tolist())
        self.row_upper.extend(np.broadcast_to(np.asarray(hi, float), (E.shape[0],)).tolist())

    def matrix(self) -> sp.csr_matrix:
        if not self.rows:
            return sp.csr_matrix((0, self.n))
        indptr = np.cumsum([0] + [len(i) for i, _ in self.rows])
        return sp.csr_matrix((np.concatenate([v for _, v in self.rows]), np.concatenate([i for i, _ in self.rows]),
                              indptr), shape=(len(self.rows), self.n))


def _pad(E: sp.csr_matrix, n: int) -> sp.csr_matrix:
    E = E.tocsr()
    if E.shape[1] == n:
        return E
    E = E.copy()
    E.resize((E.shape[0], n))
    return E


def _jacobians(op, shapes: list[tuple[int, ...]], out_shape: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """The Jacobian ``[N_out, N_in]`` of an affine operator with respect to each input, and its offset."""
    cpu = torch.device("cpu")        # the MILP is built on the host, from the graph's float64 CPU copy
    zeros = [torch.zeros(1, *s, dtype=torch.float64, device=cpu) for s in shapes]
    with torch.no_grad():
        offset = op.forward(*zeros).reshape(-1).cpu().numpy().astype(np.float64)
        jacobians = []
        for i, s in enumerate(shapes):
            size = int(np.prod(s))
            inputs = [z.expand(size, *z.shape[1:]) for z in zeros]
            inputs[i] = torch.eye(size, dtype=torch.float64, device=cpu).reshape(size, *s)
            jacobians.append(op.linear_part(*inputs).reshape(size, -1).T.cpu().numpy().copy())
    return jacobians, offset


def encode(graph: Graph, lower: np.ndarray, upper: np.ndarray, pre_bounds: dict[str, tuple[np.ndarray, np.ndarray]],
           splits: dict[str, np.ndarray] | None = None) -> Encoding:
    """The MILP of ``graph`` (float64 constants) over the box ``[lower, upper]`` (flat float64), with the
    pre-activation bounds ``pre_bounds[name] = (l, u)`` (flat) of every ReLU / LeakyReLU input and, optionally,
    split decisions ``splits[name]`` (+1 active, -1 inactive, 0 free). Raises :class:`Unsupported` for an
    operator that is neither affine nor a ReLU / LeakyReLU."""
    builder = _Builder(lower, upper)
    n_in = lower.size
    exprs: dict[str, tuple[sp.csr_matrix, np.ndarray]] = {graph.input_name: (sp.identity(n_in, format="csr"),
                                                                            np.zeros(n_in))}
    binaries = 0
    for node in graph.nodes:
        op = node.op
        if op.is_affine:
            shapes = [graph.shape(name) for name in node.inputs]
            jacobians, offset = _jacobians(op, shapes, node.shape)
            E, c = None, offset
            for J, name in zip(jacobians, node.inputs):
                E_in, c_in = exprs[name]
                J = sp.csr_matrix(J)
                term = J @ _pad(E_in, builder.n)
                E = term if E is None else E + term
                c = c + J @ c_in
            E = E.tocsr()
            E.eliminate_zeros()
            exprs[node.name] = (E, c)
        elif isinstance(op, (Relu, LeakyRelu)):
            name = node.inputs[0]
            E, c = exprs[name]
            E = _pad(E, builder.n)
            if name not in pre_bounds:
                raise Unsupported(f"no bounds for the input of {node.name}")
            l, u = (np.asarray(b, np.float64).reshape(-1) for b in pre_bounds[name])
            if splits is not None and name in splits:
                split = np.asarray(splits[name]).reshape(-1)
                l, u = np.where(split > 0, np.maximum(l, 0), l), np.where(split < 0, np.minimum(u, 0), u)
            relu_E, relu_c, count = _relu(builder, E, c, l, u)
            binaries += count
            if isinstance(op, LeakyRelu):
                slope = float(op.alpha) if not isinstance(op.alpha, Tensor) or op.alpha.numel() == 1 else None
                if slope is None:
                    raise Unsupported(f"LeakyRelu {node.name} with a per-channel slope")
                relu_E = slope * _pad(E, builder.n) + (1 - slope) * _pad(relu_E, builder.n)
                relu_c = slope * c + (1 - slope) * relu_c
            exprs[node.name] = (relu_E.tocsr(), relu_c)
        else:
            raise Unsupported(f"{op.op_type} ({node.name})")
    E, c = exprs[graph.output_name]
    return Encoding(builder.n, np.array(builder.var_lower), np.array(builder.var_upper), np.array(builder.integer),
                    builder.matrix(), np.array(builder.row_lower), np.array(builder.row_upper),
                    _pad(E, builder.n), c, binaries, n_in)


def _relu(builder: _Builder, E: sp.csr_matrix, c: np.ndarray, l: np.ndarray, u: np.ndarray):
    """The ReLU of the expressions ``E v + c`` with bounds ``[l, u]``: new variables for the active and unstable
    neurons, constraints for them; returns the output expressions and the number of binaries added."""
    size = len(c)
    active = l >= 0
    unstable = (l < 0) & (u > 0)
    # active: a = z
    act = np.nonzero(active)[0]
    unst = np.nonzero(unstable)[0]
    a_act = builder.add_vars(l[act], u[act])
    a_uns = builder.add_vars(np.zeros(len(unst)), u[unst])
    d_uns = builder.add_vars(np.zeros(len(unst)), np.ones(len(unst)), integer=1)
    n = builder.n
    E = _pad(E, n)
    if len(act):
        builder.add_rows(-E[act], [(a_act, np.ones(len(act)))], c[act], c[act])          # a - z = 0
    if len(unst):
        Eu, cu, lu, uu = E[unst], c[unst], l[unst], u[unst]
        ones = np.ones(len(unst))
        builder.add_rows(-Eu, [(a_uns, ones)], cu, np.inf)                                # a - z >= 0
        builder.add_rows(-Eu, [(a_uns, ones), (d_uns, -lu)], -np.inf, cu - lu)            # a - z - l d <= -l
        builder.add_rows(sp.csr_matrix((len(unst), n)), [(a_uns, ones), (d_uns, -uu)], -np.inf, 0.0)  # a <= u d
    n = builder.n
    rows = np.concatenate([act, unst]).astype(np.int64)
    cols = np.concatenate([a_act, a_uns]).astype(np.int64)
    out_E = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, n))
    return out_E, np.zeros(size), len(unst)


@dataclass
class CaseResult:
    """``status``: ``"refuted"``, ``"violated"`` (with ``x``, a candidate), ``"unknown"`` or ``"timeout"``;
    ``value``: the optimum of ``min t`` (or the best bound), ``margin``: the refutation margin used."""

    status: str
    x: np.ndarray | None = None
    value: float = float("nan")
    margin: float = 0.0


def solve_case(encoding: Encoding, C: np.ndarray, d: np.ndarray, time_limit: float,
               output_scale: float) -> CaseResult:
    """``min t`` s.t. ``C_r y - d_r <= t`` (``C`` ``[k, n_out]``) over the encoded network; see the module."""
    n = encoding.n_vars
    margin = refutation_margin(output_scale)
    if len(C) == 0:                           # no rows: every point of the box violates the case
        x = (encoding.lower[: encoding.n_inputs] + encoding.upper[: encoding.n_inputs]) / 2
        return CaseResult("violated", x=x, value=-np.inf, margin=margin)
    CE = sp.csr_matrix(C) @ encoding.out_E                                   # [k, n]
    rows = sp.hstack([CE, sp.csr_matrix(-np.ones((len(C), 1)))]).tocsr()   # C E v - t <= d - C c
    A = sp.vstack([sp.hstack([encoding.A, sp.csr_matrix((encoding.A.shape[0], 1))]), rows]).tocsr()
    row_lower = np.concatenate([encoding.row_lower, np.full(len(C), -np.inf)])
    row_upper = np.concatenate([encoding.row_upper, d - C @ encoding.out_c])
    # t <= margin: only solutions that could be counterexamples are searched for
    lower = np.append(encoding.lower, -np.inf)
    upper = np.append(encoding.upper, margin)
    objective = np.zeros(n + 1)
    objective[-1] = 1.0
    options = {"time_limit": max(0.05, float(time_limit)), "presolve": True, "mip_rel_gap": 0.0,
               "mip_feasibility_tolerance": FEASIBILITY_TOLERANCE,
               "primal_feasibility_tolerance": FEASIBILITY_TOLERANCE, "output_flag": False}
    with warnings.catch_warnings(), _quiet_stdout():
        warnings.simplefilter("ignore", RuntimeWarning)     # the tolerances go to HiGHS verbatim, as meant
        result = milp(objective, integrality=np.append(encoding.integrality, 0), bounds=Bounds(lower, upper),
                      constraints=LinearConstraint(A, row_lower, row_upper), options=options)
    if result.status == 2:                    # infeasible: no point has t <= margin
        return CaseResult("refuted", value=float("inf"), margin=margin)
    if result.x is not None and result.fun is not None:
        value = float(result.fun)
        if value <= 0:
            return CaseResult("violated", x=result.x[: encoding.n_inputs], value=value, margin=margin)
        if result.status == 0:                # optimal but within the margin: undecided
            return CaseResult("unknown", x=result.x[: encoding.n_inputs], value=value, margin=margin)
    dual = getattr(result, "mip_dual_bound", None)
    if dual is not None and np.isfinite(dual) and dual > margin:
        return CaseResult("refuted", value=float(dual), margin=margin)
    return CaseResult("timeout" if result.status == 1 else "unknown", margin=margin)


@contextlib.contextmanager
def _quiet_stdout():
    """File descriptor 1 to /dev/null while HiGHS runs: the HiGHS build in scipy prints a debug line to stdout
    on some MIP solutions whatever its output options, which would corrupt ``verifier verify --json``."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        _flush_c_stdio()          # what the C library buffered goes to /dev/null, not to the restored stdout
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def unstable_count(pre_bounds: dict[str, tuple[Tensor, Tensor]], splits: dict[str, Tensor] | None = None) -> int:
    """Unstable, unsplit neurons among the given pre-activation bounds (``[1, *shape]`` or ``[*shape]``)."""
    total = 0
    for name, (lower, upper) in pre_bounds.items():
        open_ = (lower.reshape(-1) < 0) & (upper.reshape(-1) > 0)
        if splits is not None and name in splits:
            open_ &= splits[name].reshape(-1) == 0
        total += int(open_.sum())
    return total


def relu_pre_activations(graph: Graph) -> list[str]:
    """The tensors read by ReLU / LeakyReLU nodes (the encoding needs their bounds)."""
    return [node.inputs[0] for node in graph.nodes if isinstance(node.op, (Relu, LeakyRelu))]


def supports(graph: Graph) -> bool:
    """Whether every operator of ``graph`` is affine, a ReLU or a scalar-slope LeakyReLU."""
    for node in graph.nodes:
        op = node.op
        if op.is_affine or isinstance(op, Relu):
            continue
        if isinstance(op, LeakyRelu) and (not isinstance(op.alpha, Tensor) or op.alpha.numel() == 1):
            continue
        return False
    return True


def milp_decide(graph: Graph, problem: Problem, pre_bounds: dict[str, tuple[Tensor, Tensor]], deadline_end: float,
                try_candidates: Callable[[Tensor], object | None], stats: dict,
                splits: dict[str, Tensor] | None = None, output_bounds: tuple[Tensor, Tensor] | None = None,
                stop: Callable[[], bool] | None = None) -> tuple[str, object | None]:
    """Decide ``problem`` (every case of it) by MILP on ``graph`` (encoded from its float64 copy) until
    ``deadline_end`` (``time.monotonic`` clock, as :class:`verifier.complete.deadline.Deadline`):
    ``("unsat", None)`` when every case is refuted beyond the margin, ``("sat", witness)`` when a solution
    passes ``try_candidates`` (the onnxruntime re-check), else ``("unknown" | "timeout", None)``. Records its
    time, binaries and per-case optima in ``stats["milp"]``. ``stop()``, asked before each case: give up
    (``timeout``) because the answer is no longer needed (a solve under way cannot be interrupted)."""
    from verifier.bab.lp import float64_graph

    graph64 = float64_graph(graph)
    start = time.perf_counter()
    info = stats.setdefault("milp", {"time_s": 0.0, "solves": 0})
    lower = problem.lower.detach().double().reshape(-1).cpu().numpy()
    upper = problem.upper.detach().double().reshape(-1).cpu().numpy()
    bounds = {name: _widened(lo, hi) for name, (lo, hi) in pre_bounds.items()}
    if any(lo.dtype != torch.float64 for lo, _ in pre_bounds.values()):
        # the widening turns neurons bounded exactly at 0 unstable (a 60-variable 3-SAT network: 421 -> 481
        # binaries, HiGHS 18 -> 75 s); CROWN in float64, where rounding is negligible, settles them again
        from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds

        box = (torch.as_tensor(lower, device="cpu").reshape(1, *problem.lower.shape),
               torch.as_tensor(upper, device="cpu").reshape(1, *problem.lower.shape))
        with torch.no_grad():
            exact = compute_intermediate_bounds(graph64, *box, CrownOptions())
        for name, (lo, hi) in bounds.items():
            if name in exact:
                lo64, hi64 = (b.reshape(-1).cpu().numpy() for b in exact[name])
                bounds[name] = (np.maximum(lo, lo64), np.minimum(hi, hi64))
    np_splits = None if splits is None else {k: v.detach().reshape(-1).cpu().numpy() for k, v in splits.items()}
    try:
        encoding = encode(graph64, lower, upper, bounds, np_splits)
    except Unsupported as error:
        info["unsupported"] = str(error)
        return "unknown", None
    info["binaries"] = encoding.binaries
    info["encode_s"] = info.get("encode_s", 0.0) + time.perf_counter() - start
    C = problem.C.detach().double().cpu().numpy()
    d = problem.d.detach().double().cpu().numpy()
    row_case = problem.row_case.cpu().numpy()
    scale = _output_scale(C, d, output_bounds)
    statuses = []
    for case in range(problem.n_cases):
        remaining = deadline_end - time.monotonic() if deadline_end is not None else 3600.0
        if remaining <= 0.05 or (stop is not None and stop()):
            statuses.append("timeout")
            break
        rows = row_case == case
        result = solve_case(encoding, C[rows], d[rows], remaining, scale)
        info["solves"] += 1
        info.setdefault("optima", []).append(result.value)
        if result.status in ("violated", "unknown") and result.x is not None:
            point = torch.as_tensor(result.x, dtype=problem.lower.dtype, device=problem.lower.device
                                    ).reshape(1, *problem.lower.shape)
            witness = try_candidates(point)
            if witness is not None:
                info["time_s"] += time.perf_counter() - start
                return "sat", witness
            if result.status == "violated":
                # a solution of the MILP that the independent re-check rejects: a float artefact at the
                # boundary; the case cannot be refuted, so stays open
                info["rejected_candidates"] = info.get("rejected_candidates", 0) + 1
        statuses.append("refuted" if result.status == "refuted" else
                        "timeout" if result.status == "timeout" else "unknown")
    info["time_s"] += time.perf_counter() - start
    if len(statuses) == problem.n_cases and all(s == "refuted" for s in statuses):
        return "unsat", None
    return ("timeout" if "timeout" in statuses else "unknown"), None


def _widened(lower: Tensor, upper: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activation bounds as float64 arrays, widened by 64 units of rounding of the type they were computed
    in at their magnitude: bounds from a float32 bound pass may be off by a few of them, and a big-M constraint
    from a bound that is too tight would cut off real points."""
    eps = torch.finfo(lower.dtype).eps
    lo, hi = lower.detach().double().reshape(-1).cpu().numpy(), upper.detach().double().reshape(-1).cpu().numpy()
    slack = 64 * eps * np.maximum(np.abs(lo), np.abs(hi)) + (0.0 if lower.dtype == torch.float64 else 1e-30)
    return lo - slack, hi + slack


def _output_scale(C: np.ndarray, d: np.ndarray, output_bounds) -> float:
    """The magnitude of the row margins ``C y - d`` over the box (from the output bounds when given)."""
    if output_bounds is None:
        return float(np.abs(d).max(initial=1.0))
    lo, hi = (b.detach().double().reshape(-1).cpu().numpy() for b in output_bounds)
    magnitude = np.maximum(np.abs(lo), np.abs(hi))
    return float((np.abs(C) @ magnitude + np.abs(d)).max(initial=1.0))


@dataclass
class MilpStrategy:
    """When the search hands a problem to the MILP (measured on the Boolean-formula networks and mnist_fc, see
    the README). After a short branch-and-bound start (``delay``): with at most ``alone`` unstable ReLUs left
    after the root bound and at most ``alone_max_inputs`` inputs, the MILP gets the whole remaining time
    (the 3-SAT networks: 20-60 inputs, 100-420 unstable ReLUs, decided in 1-25 s where branch and bound
    does not finish); with at most ``portfolio`` unstable ReLUs it gets ``share`` of the remaining time and
    branch and bound continues after it; above that it is not tried (mnist_fc 256x4 prop 11 at eps 0.05:
    168 unstable ReLUs on 784 inputs, HiGHS had not finished after 55 s, branch and bound needs 8 s)."""

    alone: int = 450
    alone_max_inputs: int = 64
    portfolio: int = 100
    share: float = 0.5
    #: branch and bound runs alone for this fraction of the time left after the root (at most ``delay_max``
    #: seconds) before the MILP's turn: easy problems are settled by a few domains in less time than HiGHS
    #: takes to solve the LP relaxation of a 784-input network (mnist_fc 256x2 prop 9: 11 domains, 2.5 s;
    #: the MILP 4.2 s)
    delay: float = 0.1
    delay_max: float = 10.0
    #: input splitting hands over only on networks with at least this many inputs: ACAS Xu (5 inputs) stays
    #: with input splitting, where it is strong and the MILP was not measured; a 6-variable 3-SAT network
    #: already defeats input splitting for 60 s (its proof needs every input split at 1/2)
    input_split_min_inputs: int = 6

    def start_time(self, deadline) -> float:
        """The ``time.monotonic`` time at which the MILP gets its turn."""
        left = deadline.remaining()
        wait = self.delay_max if left == float("inf") else min(self.delay * left, self.delay_max)
        return time.monotonic() + wait


def milp_phase(graph: Graph, problem: Problem, pre_bounds: dict[str, tuple[Tensor, Tensor]],
               output_bounds: tuple[Tensor, Tensor] | None, deadline, try_candidates, stats: dict,
               strategy: MilpStrategy | None = None, stop: Callable[[], bool] | None = None
               ) -> tuple[str, object | None] | None:
    """The MILP step of the automatic strategy after a root bound (``deadline``: a
    :class:`verifier.complete.deadline.Deadline`): ``None`` when the MILP is not tried (unsupported operator
    or too many unstable ReLUs), else its ``(status, witness)`` as :func:`milp_decide` gives it."""

    strategy = strategy or MilpStrategy()
    unstable = unstable_count(pre_bounds)
    stats["root_unstable"] = unstable
    alone = unstable <= strategy.alone and problem.lower.numel() <= strategy.alone_max_inputs
    if not (alone or unstable <= strategy.portfolio) or not supports(graph) or deadline.expired():
        return None
    budget = deadline if alone else deadline.sub(strategy.share)
    stats.setdefault("milp", {"time_s": 0.0, "solves": 0})["mode"] = "alone" if alone else "portfolio"
    status, witness = milp_decide(graph, problem, pre_bounds, budget.end, try_candidates, stats,
                                  output_bounds=output_bounds, stop=stop)
    if status == "unsat" and not accept_solver_refutation(problem, stats, "milp"):
        # strict float soundness: HiGHS's infeasibility holds up to its tolerances, not rigorously; only its
        # counterexamples (re-checked) count, the proof is left to branch and bound
        return "unknown", None
    return status, witness


def _root_bounds(graph: Graph, problem: Problem) -> dict[str, tuple[Tensor, Tensor]]:
    from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds

    with torch.no_grad():
        return compute_intermediate_bounds(graph, problem.lower.unsqueeze(0), problem.upper.unsqueeze(0),
                                           CrownOptions())


def milp_turn(network, problem: Problem, deadline, stats: dict, try_candidates,
              strategy: MilpStrategy) -> tuple[str, object | None] | None:
    """The MILP's turn in the input-split strategy (after the search's short start): CROWN bounds over the
    box, then :func:`milp_phase`."""
    if not supports(network.graph) or problem.lower.numel() < strategy.input_split_min_inputs:
        return None
    bounds = _root_bounds(network.graph, problem)
    pre = {name: bounds[name] for name in relu_pre_activations(network.graph)}
    return milp_phase(network.graph, problem, pre, bounds[network.graph.output_name], deadline, try_candidates,
                      stats, strategy)


def exact_search(network, problem: Problem, deadline, stats: dict, try_candidates) -> tuple[str, object | None]:
    """``method="milp"``: the MILP alone, with CROWN pre-activation bounds over the box for its big-M
    constants; ``(status, witness)``. Under float soundness it can only find counterexamples."""
    graph = network.graph
    if not supports(graph):
        kinds = sorted({n.op.op_type for n in graph.nodes if not n.op.is_affine} - {"Relu", "LeakyRelu"})
        stats["unknown_reason"] = f"the MILP encoding does not cover {', '.join(kinds)}"
        return "unknown", None
    bounds = _root_bounds(graph, problem)
    pre = {name: bounds[name] for name in relu_pre_activations(graph)}
    stats["root_unstable"] = unstable_count(pre)
    status, witness = milp_decide(graph, problem, pre, deadline.end, try_candidates, stats,
                                  output_bounds=bounds[graph.output_name])
    if status == "unsat" and not accept_solver_refutation(problem, stats, "milp"):
        stats["unknown_reason"] = "the MILP's infeasibility is not float-sound"
        return "unknown", None
    if status == "unknown":
        stats["unknown_reason"] = "the MILP left a case undecided (an optimum within its tolerance margin)"
    return status, witness
