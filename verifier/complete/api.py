"""``verifier.verify``: decide a property for a network within a wall-clock budget.

The phases, in order:

1. *falsification*: random sampling and PGD on every group of cases; a candidate that survives the
   independent re-check (onnxruntime on the original file) gives ``sat``;
2. *incomplete proof*: one bound computation per group; groups whose every case is refuted are done;
3. *branch and bound* on what is left: input splitting when the input has few dimensions, otherwise
   ReLU splitting with beta-CROWN; the choice, batch sizes and iteration counts come from the network
   and the property.

``unsat`` is only ever reported when every case of every group was refuted by a sound bound.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from verifier.cancel import TimeLimitReached, time_limit
from verifier.complete.deadline import Deadline
from verifier.complete.falsify import find_candidates
from verifier.complete.problem import Problem
from verifier.complete.result import SAT, TIMEOUT, UNKNOWN, UNSAT, Counterexample, Result
from verifier.complete.validate import validate
from verifier.errors import ShapeError
from verifier.network import Network
from verifier.spec.specification import Specification

#: networks with at most this many inputs are searched by input splitting (and bounded in float64)
INPUT_SPLIT_MAX_INPUTS = 16


@dataclass
class VerifyOptions:
    """Knobs of :func:`verify`; every ``None`` is chosen automatically from the network and property.

    ``method``: ``"auto"``, ``"input-split"``, ``"relu-split"`` or ``"bounds"`` (incomplete: no branching).
    ``attack``: run falsification first. ``batch``: sub-domains bounded together. ``float64``: bound in
    double precision (default: for networks with few inputs, where it is cheap). ``seed``: attack seed.
    """

    method: str = "auto"
    attack: bool = True
    batch: int | None = None
    float64: bool | None = None
    seed: int = 0


def verify(
    network: Network | str | os.PathLike,
    spec: Specification | str | os.PathLike,
    timeout: float | None = None,
    options: VerifyOptions | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
) -> Result:
    """Decide whether any input in the property's boxes violates its output constraints.

    ``network``: a :class:`Network` or an ONNX path; ``spec``: a parsed :class:`Specification` or a
    VNN-LIB path. ``timeout``: wall-clock seconds (``None``: no limit); the answer comes by then.
    Returns a :class:`Result` with ``status`` ``sat`` (with a validated counterexample), ``unsat``,
    ``unknown`` or ``timeout`` and statistics (time per phase, domains visited).

    Branch and bound over several processes (:mod:`verifier.distributed`, needs the extra
    ``verifier[distributed]``): ``workers=N`` starts N local worker processes for this run, ``scheduler=
    "tcp://HOST:PORT"`` uses an existing Dask cluster, ``client=`` a ``dask.distributed.Client`` of yours.
    """
    deadline = Deadline(timeout)
    options = options or VerifyOptions()
    stats: dict = {"phases": {}}
    from verifier.distributed import start_parallel

    starter = start_parallel(workers=workers, scheduler=scheduler, client=client)  # starts while we load
    try:
        return _verify(network, spec, deadline, options, stats, starter)
    finally:
        if starter is not None:
            starter.close()


def _verify(network, spec, deadline: Deadline, options: VerifyOptions, stats: dict, starter) -> Result:
    if not isinstance(network, Network):
        from verifier.api import load_onnx

        start = time.perf_counter()
        network = load_onnx(network)
        stats["phases"]["load_model"] = time.perf_counter() - start
    if not isinstance(spec, Specification):
        from verifier.spec import parse_vnnlib

        start = time.perf_counter()
        spec = parse_vnnlib(spec, n_inputs=network.input_size, n_outputs=network.output_size)
        stats["phases"]["load_property"] = time.perf_counter() - start
    if spec.n_inputs != network.input_size or spec.n_outputs != network.output_size:
        raise ShapeError(
            f"the property has {spec.n_inputs} inputs and {spec.n_outputs} outputs; the network has "
            f"{network.input_size} and {network.output_size}"
        )
    # every engine loop checks the limit; a little is kept back to write the answer
    end = None if deadline.end is None else deadline.end - min(0.2, 0.02 * max(0.0, deadline.remaining()))
    parallel = None
    if starter is not None:
        from verifier.distributed.coordinator import ParallelVerifier

        parallel = ParallelVerifier(starter, network, spec, stats)
    try:
        with time_limit(end):
            result = _run(network, spec, deadline, options, stats, parallel)
    except TimeLimitReached:
        result = Result(TIMEOUT, stats=stats, message="the time limit was reached before an answer")
    if parallel is not None:
        parallel.finish()
    stats["time_s"] = deadline.elapsed()
    return result


def _run(network: Network, spec: Specification, deadline: Deadline, options: VerifyOptions, stats: dict,
         parallel=None) -> Result:
    groups = spec.box_groups()
    if not groups:
        return Result(UNSAT, stats=stats, message="the property has no satisfiable case")
    small = network.input_size <= INPUT_SPLIT_MAX_INPUTS
    use_float64 = options.float64 if options.float64 is not None else small
    bound_network = _as_dtype(network, torch.float64 if use_float64 else network.dtype)
    problems = [Problem.from_group(group, bound_network) for group in groups]
    stats["cases"] = len(spec.cases)
    stats["dtype"] = str(bound_network.dtype).replace("torch.", "")

    def try_candidates(points: torch.Tensor, problem: Problem) -> Counterexample | None:
        lower, upper = problem.exact_lower, problem.exact_upper
        for point in points[:8]:
            witness = validate(network, spec, point.detach().double().numpy(), lower, upper)
            if witness is not None:
                return witness
        return None

    # 1. falsification, with as many samples as cost about as much as a few hundred thousand neuron evaluations
    if options.attack:
        start = time.perf_counter()
        attack_deadline = deadline.sub(0.2, at_most=30.0)
        size = sum(bound_network.graph.numel(node.name) for node in bound_network.graph.nodes)
        samples = int(max(512, min(50_000, 2e7 // max(1, size))))
        restarts = 32 if samples >= 10_000 else 8
        for index, problem in enumerate(problems):
            if problem.has_trivial_case():
                candidates = [(problem.lower + problem.upper) / 2]
            else:
                candidates = find_candidates(bound_network, problem, attack_deadline, samples=samples,
                                             restarts=restarts, seed=options.seed + index)
            if candidates:
                witness = try_candidates(torch.stack(candidates), problem)
                if witness is not None:
                    stats["phases"]["attack"] = time.perf_counter() - start
                    return Result(SAT, counterexample=witness, stats=stats)
            if attack_deadline.expired():
                break
        stats["phases"]["attack"] = time.perf_counter() - start

    # 2-3. proof search, group by group
    from verifier.bab.input_split import InputSplitOptions, input_split_search

    method = options.method
    if method == "auto":
        has_relu = any(node.op.op_type == "Relu" for node in bound_network.graph.nodes)
        # without ReLUs there is nothing for ReLU splitting to branch on: split the input instead
        method = "input-split" if small or not has_relu else "relu-split"
    stats["method"] = method
    statuses = []
    start = time.perf_counter()
    for index, problem in enumerate(problems):
        if deadline.expired():
            statuses.append(TIMEOUT)
            break
        if method == "input-split":
            search_options = InputSplitOptions()
            if options.batch:
                search_options.batch = options.batch

            def split_inputs(budget: Deadline, p: Problem = problem,
                             o: InputSplitOptions = search_options) -> tuple[str, Counterexample | None]:
                return input_split_search(bound_network, p, budget, o, stats, lambda points: try_candidates(points, p))

            if small and parallel is not None:
                status, witness = parallel.search(method, bound_network, problems, index, deadline,
                                                  lambda points, p=problem: try_candidates(points, p), search_options)
            elif small:
                status, witness = split_inputs(deadline)
            else:
                # many inputs and no ReLU: a short input-split search (it proves easy cases at once and checks
                # the linear bound's minimiser for counterexamples), then full alpha-CROWN, then the rest
                status, witness = split_inputs(deadline.sub(0.05, at_most=5.0))
                if status == TIMEOUT and not deadline.expired():
                    if _proved_by_full_alpha(bound_network, problem, stats, deadline.sub(0.5)):
                        status = UNSAT
                    else:
                        status, witness = split_inputs(deadline)
        elif parallel is not None and method == "relu-split":
            status, witness = parallel.search(method, bound_network, problems, index, deadline,
                                              lambda points, p=problem: try_candidates(points, p), batch=options.batch)
        else:
            from verifier.bab.relu_split import relu_split_search

            status, witness = relu_split_search(
                bound_network, problem, deadline, stats, lambda points, p=problem: try_candidates(points, p),
                method=method, batch=options.batch,
            )
        if status == SAT:
            stats["phases"]["search"] = time.perf_counter() - start
            return Result(SAT, counterexample=witness, stats=stats)
        statuses.append(status)
        if status in (TIMEOUT, UNKNOWN) and method != "bounds":
            break
    stats["phases"]["search"] = time.perf_counter() - start
    if all(s == UNSAT for s in statuses) and len(statuses) == len(problems):
        return Result(UNSAT, stats=stats)
    if TIMEOUT in statuses or deadline.expired():
        return Result(TIMEOUT, stats=stats, message="the time limit was reached before an answer")
    return Result(UNKNOWN, stats=stats, message=stats.get("unknown_reason", "the search ended without an answer"))


#: full alpha-CROWN steps at the root of a high-dimensional network without ReLUs (see below)
ROOT_FULL_ALPHA_ITERATIONS = 100


def _proved_by_full_alpha(network: Network, problem: Problem, stats: dict, budget: Deadline) -> bool:
    """Whether full alpha-CROWN over the whole box (every intermediate bound's slopes optimised, their widths
    in the loss) refutes every case within ``budget``. For networks of S-shaped activations on many inputs,
    where input splitting makes little progress, this is the strongest bound available; it costs a few
    hundred backward passes (about 25 s on ERAN's 6x200 sigmoid network)."""
    from verifier.bounds.alpha import optimize_all_slopes

    start = time.perf_counter()
    spec = problem.C.reshape(1, problem.rows, *network.output_shape)
    lower, upper = problem.lower.unsqueeze(0), problem.upper.unsqueeze(0)
    try:
        with time_limit(budget.end):
            found = optimize_all_slopes(network.graph, lower, upper, spec, problem.d,
                                        iterations=ROOT_FULL_ALPHA_ITERATIONS, lr=0.1)
    except TimeLimitReached:  # its share of the time is spent: the input-split search gets the rest
        found = None
    stats["phases"]["root_full_alpha"] = stats["phases"].get("root_full_alpha", 0.0) + time.perf_counter() - start
    if found is None:
        return False
    lb = found[0]
    stats["root_lower_bound"] = float(problem.case_max(lb).min())
    proved = bool(problem.refuted(lb).all())
    if proved:
        stats["domains"] = stats.get("domains", 0) + 1
    return proved


def _as_dtype(network: Network, dtype: torch.dtype) -> Network:
    if network.dtype == dtype:
        return network
    return copy.deepcopy(network).to(dtype)


def load_result_witness(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the witness of a ``sat`` result file back (for tests and tooling)."""
    from verifier.spec.witness import parse_counterexample

    return parse_counterexample(Path(path).read_text())
