"""Float-sound refutations: margins that survive the rounding of every bound computation.

**What is guaranteed** (``VerifyOptions(float_sound=True)``, ``verifier verify --float-sound``): an ``unsat``
holds *in the reals for the network as stored*: for every real ``x`` in the property's box (the decimal
numbers of the VNN-LIB file, enclosed by widening the parsed float64 box one unit outward), the network
evaluated in exact arithmetic with its stored weights (float32 weights are exact in float64) has no
violating output. Every bound pass runs in float64, and a domain counts as refuted only where its margin
lower bound exceeds a rigorous bound on the rounding error of the computation that produced it.

**What is not**: soundness for *float32 execution* (onnxruntime, or any BLAS, running the network in
float32 with its own summation order). The float32 output can differ from the real one by up to
``gamma_32 * M`` (same model as below with float32's unit roundoff): :func:`rounding_model` reports that
quantity as ``float32_execution_error`` in the stats, and on deep MNIST networks it is far above typical
margins, so no useful guarantee of that kind is possible by a priori analysis. ``sat`` answers are always
about float32 execution: the witness is re-run by onnxruntime.

**The error model** (a priori, per specification row). Every bound in the engine (IBP, CROWN, alpha- and
beta-CROWN, forward-mode, the concretisation over a box) is a sum of products of coefficients with weights,
biases and box ends, accumulated layer by layer. With ``u`` the unit roundoff of float64 and ``n`` the
longest dot product, each affine step adds at most ``gamma |A| (|W| m_in + |b|)`` (Higham's
``gamma_n = n u / (1 - n u)``, any summation order, FMA or not) where ``m_in`` bounds the magnitude of the
step's input over the box and ``|A|`` that of the coefficients reaching it. Forward over the graph:

* ``m``: magnitude of every tensor over the box (IBP bounds, widened by the magnitude of their own terms);
* ``M``: accumulated error weight, ``M_in = 0`` at the input; affine ``M = |L|(M_in) + |L|(m_in) + |b|``;
  an elementwise activation with slopes in ``[-1, 1]`` (ReLU, LeakyReLU, Sigmoid, Tanh, Clip, Abs)
  ``M = 2 M_in + m_in``: errors pass its relaxation, its pre-activation bounds were themselves computed with
  an error up to ``gamma M_in`` (a relaxation on bounds that are too tight is invalid by at most that
  much), and its lines' slopes and intercepts are rounded at the scale of ``m_in``.

Row ``r``'s error is ``gamma (|C_r| . M_out) + 2 u |d_r|``; a beta-CROWN domain adds ``gamma sum_j
beta_j M_j`` for the multipliers of its split constraints: beta-CROWN keeps, per domain and row, the best
over its iterates of the bound *less that iterate's own term* (``ReluBranchAndBound._optimise``), so the
bound a domain is refuted with always carries its error. Graphs with other operators are not covered
(:func:`rounding_model` returns ``None`` and ``unsat`` becomes ``unknown`` under float soundness).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.ibp import interval_bounds
from verifier.bounds.rounding import PosterioriModel, posteriori_gamma
from verifier.ir import Graph
from verifier.ops.activation import Relu, SShaped
from verifier.ops.base import ElementwiseNonlinear
from verifier.ops.piecewise import Abs, Clip, LeakyRelu

UNIT_ROUNDOFF = 2.0 ** -53
#: activations whose slopes lie in [-1, 1] (the error model's rule for them)
ONE_LIPSCHITZ = (Relu, LeakyRelu, Clip, Abs, SShaped)


@dataclass
class RoundingModel:
    """Bounds on the rounding error of any float64 bound computation over a box (see the module docstring):
    ``row_error`` ``[R]`` per specification row, ``pre_weight`` ``M`` of each pre-activation tensor (flat),
    ``gamma``; ``float32_execution_error`` ``[R]``: the same bound for a float32 execution of the network."""

    row_error: Tensor
    pre_weight: dict[str, Tensor]
    gamma: float
    float32_execution_error: Tensor
    #: the a posteriori model of the same box (:mod:`verifier.bounds.rounding`), None where the graph has
    #: nonlinearities other than ReLU
    posteriori: PosterioriModel | None = None
    #: the passes are rigorous by themselves (inside :func:`verifier.bounds.rounding.rigorous` with
    #: ``posteriori``): no a priori split-multiplier term is subtracted (:meth:`beta_error` is 0)
    passes_rigorous: bool = False
    #: ``float_sound="auto"``: a refutation only a solver makes within its tolerances (the MILP's infeasibility,
    #: the LP of a fully split domain where no certified bound reaches it) is accepted and counted
    #: (:func:`accept_solver_refutation`) instead of leaving the domain open
    accept_solver: bool = False

    def restrict(self, rows: Tensor) -> RoundingModel:
        return RoundingModel(self.row_error[rows], self.pre_weight, self.gamma, self.float32_execution_error[rows],
                             self.posteriori, self.passes_rigorous, self.accept_solver)

    def beta_error(self, betas: dict[str, Tensor]) -> Tensor:
        """``gamma sum_j beta_j M_j`` per domain and row for split multipliers ``betas[name]`` ``[D, R, N]``."""
        if self.passes_rigorous:
            return 0.0
        total = None
        for name, beta in betas.items():
            weight = self.pre_weight[name].to(beta.dtype)
            term = (beta.detach().clamp(min=0) * weight).sum(-1)
            total = term if total is None else total + term
        return 0.0 if total is None else self.gamma * total


def rounding_model(graph: Graph, lower: Tensor, upper: Tensor, C: Tensor, d: Tensor) -> RoundingModel | None:
    """The error model of ``graph`` (float64) over the box ``[lower, upper]`` (``[*input_shape]``) for the
    specification rows ``C`` ``[R, n_out]``, ``d`` ``[R]``; ``None`` when the graph has an operator the model
    does not cover."""
    lower, upper = lower.double().unsqueeze(0), upper.double().unsqueeze(0)
    sizes = [int(np.prod(graph.input_shape))] + [int(np.prod(node.shape)) for node in graph.nodes]
    n = max(sizes) + 16
    gamma = 2 * n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)
    with torch.no_grad():
        bounds = interval_bounds(graph, lower, upper)
        magnitude = {graph.input_name: torch.maximum(lower.abs(), upper.abs())}
        weight = {graph.input_name: torch.zeros_like(lower)}
        steps = {graph.input_name: 2 * magnitude[graph.input_name]}   # the a posteriori weights
        for node in graph.nodes:
            op = node.op
            lo, hi = bounds[node.name]
            if op.is_affine:
                m_in = [magnitude[name] for name in node.inputs]
                zeros = [torch.zeros_like(m) for m in m_in]
                offset = op.forward(*zeros).abs()
                terms = op.abs_linear_part(*m_in) + offset
                weight[node.name] = op.abs_linear_part(*[weight[name] for name in node.inputs]) + terms
                step = terms
            elif isinstance(op, ElementwiseNonlinear) and isinstance(op, ONE_LIPSCHITZ):
                m_in = magnitude[node.inputs[0]]
                weight[node.name] = 2 * weight[node.inputs[0]] + m_in
                terms = m_in
                step = 2 * m_in if isinstance(op, Relu) and steps is not None else None
            else:
                return None
            magnitude[node.name] = torch.maximum(lo.abs(), hi.abs()) + gamma * terms
            if step is None:
                steps = None
            elif steps is not None:
                steps[node.name] = step + magnitude[node.name]
    out = weight[graph.output_name].reshape(-1)
    C64, d64 = C.double(), d.double()
    base = C64.abs() @ out
    row_error = gamma * base + 2 * UNIT_ROUNDOFF * d64.abs()
    gamma32 = 2 * n * 2.0 ** -24 / (1 - n * 2.0 ** -24)
    pre = {}
    for node in graph.nodes:
        if isinstance(node.op, ElementwiseNonlinear):
            pre[node.inputs[0]] = weight[node.inputs[0]].reshape(-1)
    posteriori = None
    if steps is not None:
        posteriori = PosterioriModel({name: value.reshape(-1) for name, value in steps.items()},
                                     posteriori_gamma(max(sizes), len(graph.nodes)))
    return RoundingModel(row_error, pre, gamma, gamma32 * base, posteriori)


def make_float_sound(graph: Graph, problems: list, stats: dict, accept_solver: bool = False) -> str | None:
    """Prepare the problems (float64 boxes, already widened one unit outward by ``Problem.from_group``) of one
    run for float-sound refutations, in place: each gets its rounding model, and its row errors become the
    refutation tolerance (``accept_solver``: the models accept solver refutations, see :class:`RoundingModel`).
    Returns ``None``, or why an ``unsat`` cannot be made float-sound (an operator the model does not cover);
    the error bounds go to ``stats["float_sound"]``."""
    largest, largest32 = 0.0, 0.0
    for problem in problems:
        model = rounding_model(graph, problem.lower, problem.upper, problem.C, problem.d)
        if model is None:
            return f"the rounding-error model does not cover {', '.join(uncovered_operators(graph))}"
        model.accept_solver = accept_solver
        problem.rounding = model
        problem.tolerance = model.row_error.to(problem.lower.dtype)
        largest = max(largest, float(model.row_error.max()))
        largest32 = max(largest32, float(model.float32_execution_error.max()))
    stats["float_sound"] = {"row_error": largest, "float32_execution_error": largest32}
    return None


def uncovered_operators(graph: Graph) -> list[str]:
    """The operator types of ``graph`` the rounding-error model does not cover (neither affine nor an
    activation with slopes in [-1, 1]; :func:`rounding_model` returns ``None`` on such a graph)."""
    return sorted({node.op.op_type for node in graph.nodes
                   if not node.op.is_affine
                   and not (isinstance(node.op, ElementwiseNonlinear) and isinstance(node.op, ONE_LIPSCHITZ))})


def posteriori_covers(graph: Graph) -> bool:
    """Whether the graph has only affine nodes and ReLUs: the a posteriori rounding bound
    (:mod:`verifier.bounds.rounding`) covers it, so a float32 search confirmed in float64 runs at float32 speed."""
    return all(node.op.is_affine or isinstance(node.op, Relu) for node in graph.nodes)


#: ``stats`` key counting the refutations accepted from a solver's tolerances under ``float_sound="auto"``
SOLVER_REFUTED = "float_sound_solver_refuted"


def accept_solver_refutation(problem, stats: dict, solver: str) -> bool:
    """Whether a refutation that only a solver made, to its own tolerances (``solver``: ``"milp"`` or ``"lp"``),
    counts for ``problem``: always without float soundness; never under strict float soundness; under
    ``float_sound="auto"`` yes, counted in ``stats[SOLVER_REFUTED][solver]`` (the ``unsat`` is then labelled as
    resting on the solver's tolerances, :func:`proof_label`)."""
    model = problem.rounding
    if model is None:
        return True
    if not model.accept_solver:
        return False
    count_solver_refutations(stats, {solver: 1})
    return True


def count_solver_refutations(stats: dict, counts: dict[str, int]) -> None:
    """Add ``counts`` (solver -> refutations accepted to its tolerances) to ``stats[SOLVER_REFUTED]``."""
    total = stats.setdefault(SOLVER_REFUTED, {})
    for solver, count in counts.items():
        total[solver] = total.get(solver, 0) + count


def proof_label(stats: dict, dtype: str, float_sound: bool, why_not: str | None) -> str:
    """What an ``unsat`` rests on, in one line: ``float-sound`` (every refutation past a rigorous bound on its
    rounding error), float-sound except the solver refutations counted in ``stats``, or the engine type's
    arithmetic with tolerance margins (``why_not``: why float soundness was not applied)."""
    if not float_sound:
        return f"{dtype} arithmetic with tolerance margins ({why_not or 'float soundness off'})"
    solver = stats.get(SOLVER_REFUTED) or {}
    if not solver:
        return "float-sound"
    parts = ", ".join(f"{count} by the {name.upper()}" for name, count in sorted(solver.items()))
    return f"float-sound except domains refuted within HiGHS's tolerances ({parts})"


def default_tolerance(network, problem) -> Tensor:
    """The refutation tolerance of the default path, per row: 8 units of rounding of the engine's type at the
    scale of the row's margin at the box centre. It covers bounds that land within a few ulps of zero (where
    a plain ``> 0`` would trust the last rounding), not large cancellations; those need float soundness."""
    eps = torch.finfo(problem.lower.dtype).eps
    with torch.no_grad():
        centre = ((problem.lower + problem.upper) / 2).unsqueeze(0)
        y = network.forward_flat(centre)[0]
    scale = problem.C.abs() @ y.abs() + problem.d.abs() + 1.0
    return 8 * eps * scale.nan_to_num(nan=0.0, posinf=0.0)
