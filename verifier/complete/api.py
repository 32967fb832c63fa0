"""``verifier.verify``: decide a property for a network within a wall-clock budget.

The phases, cheapest proof first:

1. *root bound*: one CROWN pass per group of cases sharing a box (milliseconds on small networks); cases
   it refutes are done, and when every case is, the answer is ``unsat`` without anything else imported
   or compiled;
2. *falsification*: random sampling and PGD on the open cases; a candidate that survives the independent
   re-check (onnxruntime on the original file) gives ``sat``;
3. *branch and bound* on what is left: input splitting when the input has few dimensions, otherwise
   ReLU splitting with beta-CROWN; the choice, batch sizes and iteration counts come from the network
   and the property. What the search needs (scipy, onnxruntime) is imported before it starts, not while
   the clock is tight.

Loading the model and the property runs under the same deadline. ``stats`` holds ``phase``, ``domains``,
``open_domains`` and ``lower_bound`` (the smallest bound on the property's margin over the open domains)
while the run goes on, for :class:`verifier.progress.SearchMonitor`.

``unsat`` is only ever reported when every case of every group was refuted by a sound bound.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verifier.cancel import TimeLimitReached, time_limit
from verifier.complete.deadline import Deadline
from verifier.complete.falsify import find_candidates
from verifier.complete.problem import Problem
from verifier.complete.result import SAT, TIMEOUT, UNKNOWN, UNSAT, Counterexample, Result
from verifier.complete.validate import validate
from verifier.device import DeviceLike, is_out_of_memory, resolve_device
from verifier.errors import OptionError, ShapeError
from verifier.network import Network
from verifier.spec.specification import Specification

METHODS = ("auto", "input-split", "relu-split", "milp", "bounds")
#: networks with at most this many inputs are searched by input splitting (and bounded in float64)
INPUT_SPLIT_MAX_INPUTS = 16


@dataclass
class VerifyOptions:
    """Knobs of :func:`verify`; every ``None`` is chosen automatically from the network and property.

    ``method``: ``"auto"``, ``"input-split"``, ``"relu-split"``, ``"milp"`` (the exact MILP alone, ReLU
    networks) or ``"bounds"`` (incomplete: no branching).
    ``attack``: run falsification first. ``batch``: sub-domains bounded together. ``float64``: bound in
    double precision (default: for networks with few inputs, where it is cheap). ``seed``: attack seed.
    ``milp``: with ``method="auto"``, hand problems with few unstable ReLUs after the root bound to the exact
    MILP (:mod:`verifier.bab.milp`). ``float_sound=True``: every refutation by a float64 bound past a rigorous
    bound on its rounding error (:mod:`verifier.complete.float_sound`): ``unsat`` holds in exact arithmetic;
    ReLU splitting on a float32 network then searches in float32 and confirms each refuted domain in float64
    (:mod:`verifier.bab.confirm`; ``float64=True`` searches in float64 throughout). ``"auto"`` (the default):
    the same where it costs little (networks of affine maps and ReLUs, or searched in float64 anyway),
    accepting the MILP's and the LP's refutations to HiGHS's tolerances where nothing rigorous reaches them;
    ``stats["proof"]`` says what each ``unsat`` rests on. ``False``: proofs in the engine's type with
    tolerance margins.
    ``cuts``: ReLU splitting learns cuts from refuted domains (:mod:`verifier.bab.cuts`; off: see the README).
    ``memory_limit``: bytes a model or property given as a path may take when loaded (default: a quarter of
    the available memory). ``monitor``: a :class:`verifier.progress.SearchMonitor` printing progress.
    """

    method: str = "auto"
    attack: bool = True
    batch: int | None = None
    float64: bool | None = None
    seed: int = 0
    milp: bool = True
    float_sound: bool | str = "auto"
    cuts: bool = False
    memory_limit: int | None = None
    monitor: Any = None
    #: a further check of each validated counterexample (e.g. a VNN-LIB 2.0 query's own semantics): a witness
    #: it rejects is not reported and the search goes on
    accept: Callable[[Counterexample], bool] | None = None


def verify(
    network: Network | str | os.PathLike,
    spec: Specification | str | os.PathLike,
    timeout: float | None = None,
    options: VerifyOptions | None = None,
    device: DeviceLike = "auto",
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
) -> Result:
    """Decide whether any input in the property's boxes violates its output constraints.

    ``network``: a :class:`Network` or an ONNX path; ``spec``: a parsed :class:`Specification` or a
    VNN-LIB path. ``timeout``: wall-clock seconds (``None``: no limit); the answer comes by then.
    ``device``: where the bounds, the searches and the attacks run, ``"auto"`` (the first CUDA device when
    torch sees one, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; witnesses are re-checked by
    onnxruntime on the CPU either way. A network given on another device is copied, not moved.
    Returns a :class:`Result` with ``status`` ``sat`` (with a validated counterexample), ``unsat``,
    ``unknown`` or ``timeout`` and statistics (time per phase, domains visited).

    Branch and bound over several processes (:mod:`verifier.distributed`, needs the extra
    ``verifier[distributed]``): ``workers=N`` starts N local worker processes for this run, ``scheduler=
    "tcp://HOST:PORT"`` uses an existing Dask cluster, ``client=`` a ``dask.distributed.Client`` of yours.
    """
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout >= 0):
        raise OptionError(f"timeout must be a number of seconds >= 0 (or None), got {timeout!r}")
    deadline = Deadline(timeout)
    options = options or VerifyOptions()
    if options.method not in METHODS:
        raise OptionError(f"unknown method {options.method!r}; choose one of {', '.join(METHODS)}")
    if not (options.float_sound is True or options.float_sound is False or options.float_sound == "auto"):
        raise OptionError(f"float_sound must be True, False or 'auto', got {options.float_sound!r}")
    stats: dict = {"phases": {}, "phase": "loading"}
    target = resolve_device(device)
    stats["device"] = str(target)
    from verifier.distributed import start_parallel

    starter = start_parallel(workers=workers, scheduler=scheduler, client=client)  # starts while we load
    try:
        return _verify(network, spec, deadline, options, stats, target, starter)
    finally:
        if starter is not None:
            starter.close()


def _verify(network, spec, deadline: Deadline, options: VerifyOptions, stats: dict, target: torch.device,
            starter) -> Result:
    owned = not isinstance(network, Network)
    # every engine loop checks the limit; a little is kept back to write the answer
    end = None if deadline.end is None else deadline.end - min(0.25, 0.05 + 0.02 * max(0.0, deadline.remaining()))
    monitor = options.monitor.watch(stats, deadline.start, deadline.end) if options.monitor else nullcontext()
    parallel = None
    try:
        with monitor, time_limit(end):
            network, spec = _load(network, spec, options, stats)
            if starter is not None:
                from verifier.distributed.coordinator import ParallelVerifier

                parallel = ParallelVerifier(starter, network, spec, stats)
            result = _run(network, spec, deadline, options, stats, target, owned, parallel)
    except TimeLimitReached:
        result = Result(TIMEOUT, stats=stats, message="the time limit was reached before an answer")
    except Exception as error:  # noqa: BLE001 - an allocation failure no batch halving could avoid: no answer
        if not is_out_of_memory(error):
            raise
        result = Result(UNKNOWN, stats=stats, message=f"out of memory on {target}: {str(error).splitlines()[0]}")
    if parallel is not None:
        parallel.finish()
    stats["time_s"] = deadline.elapsed()
    stats.pop("phase", None)
    return result


def _load(network: Network | str | os.PathLike, spec: Specification | str | os.PathLike, options: VerifyOptions,
          stats: dict) -> tuple[Network, Specification]:
    """The network and the property, loaded (within the memory limit) if given as paths, checked to fit."""
    if not isinstance(network, Network):
        from verifier.api import load_onnx

        start = time.perf_counter()
        network = load_onnx(network, memory_limit=options.memory_limit)
        stats["phases"]["load_model"] = time.perf_counter() - start
    if not isinstance(spec, Specification):
        from verifier.spec import parse_vnnlib

        start = time.perf_counter()
        spec = parse_vnnlib(spec, n_inputs=network.input_size, n_outputs=network.output_size,
                            memory_limit=options.memory_limit)
        stats["phases"]["load_property"] = time.perf_counter() - start
    if spec.n_inputs != network.input_size or spec.n_outputs != network.output_size:
        raise ShapeError(
            f"the property has {spec.n_inputs} inputs and {spec.n_outputs} outputs; the network has "
            f"{network.input_size} and {network.output_size}"
        )
    return network, spec


def _run(network: Network, spec: Specification, deadline: Deadline, options: VerifyOptions, stats: dict,
         device: torch.device, owned: bool, parallel=None) -> Result:
    groups = spec.box_groups()
    if not groups:
        return Result(UNSAT, stats=stats, message="the property has no satisfiable case")
    small = network.input_size <= INPUT_SPLIT_MAX_INPUTS
    use_float64 = options.float64 if options.float64 is not None else small
    float_sound, why_not = _float_sound_mode(network, options, use_float64, device)
    bound_network = _prepared(network, device, torch.float64 if use_float64 or float_sound else network.dtype,
                              owned)
    problems = [Problem.from_group(group, bound_network) for group in groups]
    # float-sound ReLU splitting searches in the network's own (faster) type and confirms in float64
    search_network = _prepared(network, device, network.dtype, owned) \
        if float_sound and not use_float64 and network.dtype != torch.float64 else None
    uncovered = None
    from verifier.complete.float_sound import default_tolerance

    for problem in problems:
        problem.tolerance = default_tolerance(bound_network, problem)
    if float_sound:
        from verifier.complete.float_sound import make_float_sound

        # (auto checks coverage first: only the strict mode can meet an uncovered graph here)
        uncovered = make_float_sound(bound_network.graph, problems, stats, accept_solver=options.float_sound == "auto")
    stats["cases"] = len(spec.cases)
    stats["dtype"] = str(bound_network.dtype).replace("torch.", "")
    stats["float_sound_mode"] = ("strict" if options.float_sound is True else "auto") if float_sound else "off"
    basis = (float_sound, why_not)

    def try_candidates(points: torch.Tensor, problem: Problem) -> Counterexample | None:
        lower, upper = problem.exact_lower, problem.exact_upper
        for point in points[:8]:
            witness = validate(network, spec, point.detach().double().cpu().numpy(), lower, upper)
            if witness is not None and (options.accept is None or options.accept(witness)):
                return witness
        return None

    # 1. the cheapest proof: one CROWN pass per group; the cases it refutes need no attack and no search
    stats["phase"] = "root bound"
    start = time.perf_counter()
    problems = _open_after_root_bound(bound_network, problems, stats, screen=search_network)
    stats["phases"]["root_bound"] = time.perf_counter() - start
    if not problems:
        stats["method"] = "crown"
        stats["domains"] = 0
        return _proved(stats, uncovered, basis)
    method = options.method
    milp_strategy = None
    if method == "auto" and options.milp:
        from verifier.bab.milp import MilpStrategy

        milp_strategy = MilpStrategy()
    if method == "auto":
        has_relu = any(node.op.op_type == "Relu" for node in bound_network.graph.nodes)
        # without ReLUs there is nothing for ReLU splitting to branch on: split the input instead
        method = "input-split" if small or not has_relu else "relu-split"
    _import_search(method, network.source is not None, milp_strategy is not None)

    # 2. falsification, with as many samples as cost about as much as a few hundred thousand neuron evaluations
    if options.attack:
        stats["phase"] = "attack"
        start = time.perf_counter()
        attack_deadline = deadline.sub(0.2, at_most=30.0)
        size = sum(bound_network.graph.numel(node.name) for node in bound_network.graph.nodes)
        samples = int(max(512, min(50_000, 2e7 // max(1, size))))
        restarts = 32 if samples >= 10_000 else 8
        for index, problem in enumerate(problems):
            if problem.has_trivial_case():
                candidates = [(problem.lower + problem.upper) / 2]
            else:
                # (a float-sound search's float32 copy attacks at float32 speed: witnesses are re-checked anyway)
                attacked = (search_network, problem.in_type(search_network.dtype)) if search_network is not None \
                    else (bound_network, problem)
                candidates = find_candidates(*attacked, attack_deadline, samples=samples, restarts=restarts,
                                             seed=options.seed + index)
            if candidates:
                witness = try_candidates(torch.stack(candidates), problem)
                if witness is not None:
                    stats["phases"]["attack"] = time.perf_counter() - start
                    return Result(SAT, counterexample=witness, stats=stats)
            if attack_deadline.expired():
                break
        stats["phases"]["attack"] = time.perf_counter() - start

    # 3. proof search, group by group
    from verifier.bab.input_split import InputSplitOptions, input_split_search

    stats["method"] = method
    stats["phase"] = f"search ({method})"
    # the workers run the plain searches and the float-sound ones (each confirming its own refutations);
    # cuts stay in this process
    spread = parallel is not None and not options.cuts
    if parallel is not None and not spread:
        stats["distributed_skipped"] = "cuts run in one process"
    statuses = []
    start = time.perf_counter()
    for index, problem in enumerate(problems):
        if deadline.expired():
            statuses.append(TIMEOUT)
            break
        if method == "milp":
            from verifier.bab.milp import exact_search

            status, witness = exact_search(bound_network, problem, deadline, stats,
                                           lambda points, p=problem: try_candidates(points, p))
        elif method == "input-split":
            search_options = InputSplitOptions()
            if options.batch:
                search_options.batch = options.batch

            def split_inputs(budget: Deadline, p: Problem = problem, i: int = index,
                             o: InputSplitOptions = search_options,
                             over_workers: bool = spread) -> tuple[str, Counterexample | None]:
                if over_workers:   # (also before and after the MILP's turn)
                    return parallel.search(method, bound_network, problems, i, budget,
                                           lambda points: try_candidates(points, p), o)
                return input_split_search(bound_network, p, budget, o, stats, lambda points: try_candidates(points, p))

            if small and milp_strategy is not None and network.input_size >= milp_strategy.input_split_min_inputs \
                    and _milp_supported(bound_network):
                # a short input-split start settles easy problems; then the MILP's turn, then the rest
                status, witness = split_inputs(Deadline(milp_strategy.start_time(deadline) - time.monotonic()))
                if status == TIMEOUT and not deadline.expired():
                    from verifier.bab.milp import milp_turn

                    decided = milp_turn(bound_network, problem, deadline, stats,
                                        lambda points, p=problem: try_candidates(points, p), milp_strategy)
                    if decided is not None and decided[0] in (SAT, UNSAT):
                        status, witness = decided
                        stats["decided_by"] = "milp"
                    elif not deadline.expired():
                        status, witness = split_inputs(deadline)
            elif small:
                status, witness = split_inputs(deadline)
            else:
                # many inputs and no ReLU: a short input-split search (it proves easy cases at once and checks
                # the linear bound's minimiser for counterexamples), then full alpha-CROWN, then the rest
                if spread:
                    stats["distributed_skipped"] = "input splitting on many inputs runs in one process"
                status, witness = split_inputs(deadline.sub(0.05, at_most=5.0), over_workers=False)
                if status == TIMEOUT and not deadline.expired():
                    root = _full_alpha_root(bound_network, problem, stats, deadline.sub(0.5))
                    refuted = problem.refuted(root[0])[0] if root is not None else None
                    if refuted is not None and bool(refuted.all()):
                        status = UNSAT
                        stats["domains"] = stats.get("domains", 0) + 1
                    elif root is not None and _activation_split_applies(bound_network, problem):
                        from verifier.bab.activation_split import activation_split_search

                        # the cases full alpha-CROWN left open, split on S-shaped neurons from its bounds
                        status = activation_split_search(bound_network, problem.restrict(~refuted)[0], root[1],
                                                         deadline, stats)
                        stats["method"] = "activation-split"
                    else:
                        status, witness = split_inputs(deadline, over_workers=False)
        elif spread and method == "relu-split":
            status, witness = parallel.search(method, bound_network, problems, index, deadline,
                                              lambda points, p=problem: try_candidates(points, p), batch=options.batch,
                                              search_network=search_network, milp_strategy=milp_strategy)
        else:
            from verifier.bab.relu_split import relu_split_search

            status, witness = relu_split_search(
                bound_network, problem, deadline, stats, lambda points, p=problem: try_candidates(points, p),
                method=method, batch=options.batch, milp_strategy=milp_strategy, cuts=options.cuts,
                search_network=search_network,
            )
        if status == SAT:
            stats["phases"]["search"] = time.perf_counter() - start
            return Result(SAT, counterexample=witness, stats=stats)
        statuses.append(status)
        if status in (TIMEOUT, UNKNOWN) and method != "bounds":
            break
    stats["phases"]["search"] = time.perf_counter() - start
    if all(s == UNSAT for s in statuses) and len(statuses) == len(problems):
        return _proved(stats, uncovered, basis)
    if TIMEOUT in statuses or deadline.expired():
        return Result(TIMEOUT, stats=stats, message="the time limit was reached before an answer")
    return Result(UNKNOWN, stats=stats, message=stats.get("unknown_reason", "the search ended without an answer"))


def _open_after_root_bound(network: Network, problems: list[Problem], stats: dict,
                           screen: Network | None = None) -> list[Problem]:
    """The problems with the cases one CROWN pass over their whole box refutes removed (problems left without
    cases dropped); records the global lower bound (``stats["lower_bound"]``, the smallest of the open cases'
    best row bounds) and the open groups as ``open_domains``. With ``screen`` (the same network in a faster
    type: a float-sound run's search network) the pass runs there first, and the float64 pass, which alone
    may refute, only where the fast one refutes every case of the problem (it costs 3-4x the fast pass on
    large networks); a problem the fast pass does not settle goes on whole to the attack and the search,
    whose float64-confirmed root drops the cases it refutes."""
    from verifier.bounds.crown import CrownOptions, backward_lower, compute_intermediate_bounds

    def root_lower(net: Network, problem: Problem) -> torch.Tensor:
        lower, upper = problem.lower.unsqueeze(0), problem.upper.unsqueeze(0)
        spec = problem.C.reshape(1, problem.rows, *net.output_shape)
        with torch.no_grad():
            bounds = compute_intermediate_bounds(net.graph, lower, upper, CrownOptions())
            return backward_lower(net.graph, net.graph.output_name, spec, bounds) - problem.d

    open_problems, lowest = [], float("inf")
    for problem in problems:
        if screen is not None:
            fast = problem.in_type(screen.dtype)
            lb = root_lower(screen, fast)
            if not bool(fast.refuted(lb).all()):
                lowest = min(lowest, float(fast.case_max(lb)[0].min()))
                open_problems.append(problem)
                continue
        lb = root_lower(network, problem)
        refuted = problem.refuted(lb)[0]
        if bool(refuted.all()):
            continue
        lowest = min(lowest, float(problem.case_max(lb)[0][~refuted].min()))
        open_problems.append(problem.restrict(~refuted)[0] if bool(refuted.any()) else problem)
    stats["lower_bound"] = lowest if open_problems else None
    stats["open_domains"] = len(open_problems)
    stats["domains"] = len(problems)
    return open_problems


def _import_search(method: str, onnx_witnesses: bool, milp: bool = False) -> None:
    """Import what the search (and a ``sat`` answer's check) will need now, while the clock is not tight:
    scipy's LP solver (ReLU splitting), its MILP solver (the exact MILP), onnxruntime (every witness of an ONNX
    model is re-checked with it)."""
    if onnx_witnesses:
        import onnxruntime  # noqa: F401

    if milp or method == "milp":
        import verifier.bab.milp  # noqa: F401

    if method in ("relu-split", "bounds"):
        import verifier.bab.relu_split  # noqa: F401
    else:
        import verifier.bab.input_split  # noqa: F401


def _proved(stats: dict, uncovered: str | None, basis: tuple[bool, str | None]) -> Result:
    """Every case refuted: ``unsat``, labelled with what the proof rests on (``stats["proof"]``,
    :func:`verifier.complete.float_sound.proof_label`; ``basis``: whether the run was float-sound, and if not
    why); or, under strict float soundness on a graph its rounding model does not cover (``uncovered`` says
    why), ``unknown``."""
    stats["open_domains"] = 0
    if uncovered is not None:
        return Result(UNKNOWN, stats=stats, message=f"proved, but not float-sound: {uncovered}")
    from verifier.complete.float_sound import proof_label

    stats["proof"] = proof_label(stats, stats.get("dtype", "?"), *basis)
    return Result(UNSAT, stats=stats)


#: share of the free memory of the device the float64 copy of the weights may take under ``float_sound="auto"``
AUTO_FLOAT64_MEMORY_SHARE = 0.25


def _float_sound_mode(network: Network, options: VerifyOptions, use_float64: bool,
                      device: torch.device) -> tuple[bool, str | None]:
    """Whether this run refutes float-soundly, and if not, why (for the proof's label). ``float_sound=True``:
    always (strict); ``False``: never; ``"auto"`` (the default): where it costs little, i.e. where the search
    runs in float64 anyway (few inputs) or the graph has only affine maps and ReLUs (a float32 search confirmed
    in float64 with the a posteriori rounding bound); not with cuts (they are not confirmed), and not where
    the network's float64 copy would take more than :data:`AUTO_FLOAT64_MEMORY_SHARE` of the device's free
    memory (an answer lost to memory is worse than a proof in float32)."""
    mode = options.float_sound
    if mode is True:
        return True, None
    if mode is False:
        return False, "float soundness off"
    from verifier.complete.float_sound import posteriori_covers, uncovered_operators

    graph = network.graph
    if options.cuts:
        return False, "cuts are not confirmed in float64"
    if not use_float64 and network.dtype != torch.float64:
        from verifier.device import free_memory
        from verifier.limits import format_bytes

        weights = sum(t.numel() for node in graph.nodes for t in node.op.constants().values() if t.is_floating_point())
        needed, free = 8 * weights, free_memory(device)
        if needed > AUTO_FLOAT64_MEMORY_SHARE * free:
            return False, (f"the network's float64 copy would take {format_bytes(needed)} of the "
                           f"{format_bytes(free)} free on {device}: --float-sound applies it anyway")
    if use_float64 or network.dtype == torch.float64:
        if not uncovered_operators(graph):
            return True, None
    elif posteriori_covers(graph):
        return True, None
    kinds = sorted({node.op.op_type for node in graph.nodes
                    if not node.op.is_affine and node.op.op_type != "Relu"})
    return False, (f"float soundness costs a float64 search on {', '.join(kinds)}: --float-sound applies it"
                   if kinds else "float soundness not applied")


#: full alpha-CROWN steps at the root of a high-dimensional network without ReLUs (see below)
ROOT_FULL_ALPHA_ITERATIONS = 100


def _full_alpha_root(network: Network, problem: Problem, stats: dict, budget: Deadline
                     ) -> tuple[torch.Tensor, dict] | None:
    """Full alpha-CROWN over the whole box (every intermediate bound's slopes optimised, their widths in the
    loss) within ``budget``: the margins' lower bounds ``[1, R]`` and the pre-activation bounds, or None when
    it did not finish. For networks of S-shaped activations on many inputs, where input splitting makes little
    progress, this is the strongest bound available; it costs a few hundred backward passes (about 25 s on
    ERAN's 6x200 sigmoid network)."""
    from verifier.bounds.alpha import optimize_all_slopes

    start = time.perf_counter()
    spec = problem.C.reshape(1, problem.rows, *network.output_shape)
    lower, upper = problem.lower.unsqueeze(0), problem.upper.unsqueeze(0)
    try:
        with time_limit(budget.end):
            found = optimize_all_slopes(network.graph, lower, upper, spec, problem.d,
                                        iterations=ROOT_FULL_ALPHA_ITERATIONS, lr=0.1)
    except TimeLimitReached:  # its share of the time is spent: the search gets the rest
        found = None
    stats["phases"]["root_full_alpha"] = stats["phases"].get("root_full_alpha", 0.0) + time.perf_counter() - start
    if found is None:
        return None
    stats["root_lower_bound"] = float(problem.case_max(found[0]).min())
    return found[0], found[1]


def _activation_split_applies(network: Network, problem: Problem) -> bool:
    """Whether branch and bound over S-shaped neurons (:mod:`verifier.bab.activation_split`) can search this
    problem: the graph has S-shaped activations to split, and no float-sound rounding model is attached (its
    bounds carry no rounding-error term for the split multipliers, so a strict float-sound run keeps to input
    splitting)."""
    from verifier.bab.activation_split import s_shaped_nodes

    return problem.rounding is None and bool(s_shaped_nodes(network.graph))


def _milp_supported(network: Network) -> bool:
    from verifier.bab.milp import supports

    return supports(network.graph)


def _prepared(network: Network, device: torch.device, dtype: torch.dtype, owned: bool) -> Network:
    """The network on ``device`` in ``dtype``: itself when it is there already, else a copy (or, for a network
    this call loaded and nobody else holds, the network itself, moved)."""
    if network.dtype == dtype and network.device == device:
        return network
    if owned and network.dtype == dtype:
        return network.to(device)
    return copy.deepcopy(network).to(device, dtype)


def _as_dtype(network: Network, dtype: torch.dtype) -> Network:
    """The network in ``dtype`` on its own device: itself, or a copy."""
    return _prepared(network, network.device, dtype, owned=False)


def load_result_witness(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the witness of a ``sat`` result file back (for tests and tooling)."""
    from verifier.spec.witness import parse_counterexample

    return parse_counterexample(Path(path).read_text())
