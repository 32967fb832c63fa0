"""Decide a VNN-LIB 2.0 query: parse, lower, compose the networks, search, and check every witness.

``verify_query(query, {"N": "model.onnx"}, timeout=60)`` returns a :class:`QueryResult` whose ``status`` is
``sat`` (with an assignment of every declared variable), ``unsat``, ``unknown`` or ``timeout``.

Soundness: the search runs on the composed network (:mod:`verifier.frontend.compose`) whose every floating-point
node carries its rounding-error envelope, over boxes that contain every admissible input; ``unsat`` is
reported only when every case is refuted there (and never when an input had no bound, see
:attr:`~verifier.spec.lowering.Lowered.unbounded_inputs`). A ``sat`` is reported only for an assignment that
satisfies the original query in its own semantics (:func:`verifier.spec.query.satisfies`): the inputs in their
declared types, the networks run by onnxruntime on the original model files (with and without onnxruntime's
graph optimisations, both must satisfy it), hidden and output values read from those runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from verifier.errors import VerifierError
from verifier.spec.query import FLOAT_TYPES, INTEGER_TYPES, REAL, Query, Variable, satisfies

#: the words of the standard's command line for each status
STANDARD_WORDS = {"sat": "sat", "unsat": "unsat", "unknown": "unknown", "timeout": "timed-out"}


@dataclass
class QueryResult:
    """The answer to a query. ``assignment`` (for ``sat``): every declared variable's values, flat, in its
    declared type (``real`` as float64). ``warnings``: lines about the query a user should see (stderr)."""

    status: str
    query: Query
    assignment: dict[str, np.ndarray] | None = None
    message: str = ""
    stats: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def standard_text(self) -> str:
        """The standard command line's output: the status line, then after ``sat`` every declared variable in
        declaration order as ``NAME TYPE [SHAPE]`` followed by its values in row-major order, one per line."""
        lines = [STANDARD_WORDS[self.status]]
        if self.status == "sat" and self.assignment is not None:
            for variable in self.query.variables:
                shape = ",".join(str(d) for d in variable.shape)
                lines.append(f"{variable.name} {variable.spelling or variable.element_type} [{shape}]")
                lines.extend(format_value(v, variable.element_type) for v in self.assignment[variable.name])
        return "\n".join(lines) + "\n"

    def serialise(self, folder: str | os.PathLike) -> list[Path]:
        """Write each variable of the assignment as ``FOLDER/NAME.pb``, a serialised ONNX TensorProto of the
        declared element type (``real``: float64) and shape."""
        from onnx import numpy_helper

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        if self.assignment is None:
            return written
        for variable in self.query.variables:
            kind = _numpy_type(variable.element_type)
            array = np.asarray(self.assignment[variable.name]).astype(kind).reshape(variable.shape)
            tensor = numpy_helper.from_array(array, variable.name)
            path = out / f"{variable.name}.pb"
            path.write_bytes(tensor.SerializeToString())
            written.append(path)
        return written


def format_value(value, element_type: str) -> str:
    """One value in the standard's text form: integers as integers, floats with a round-trip exact decimal."""
    if element_type in INTEGER_TYPES:
        return str(int(value))
    return repr(float(value))


def _numpy_type(element_type: str):
    return FLOAT_TYPES.get(element_type) or INTEGER_TYPES.get(element_type) or np.float64


class WitnessChecker:
    """Turns a candidate point of the composed input into an assignment of the query's variables and checks it
    against the original query (see the module docstring); keeps the last accepted assignment."""

    def __init__(self, query: Query, lowered, networks):
        self.query = query
        self.lowered = lowered
        self.networks = networks
        self.assignment: dict[str, np.ndarray] | None = None
        self.rejected = 0
        self._sessions: dict[tuple[str, int], object] = {}

    def accept(self, counterexample) -> bool:
        case = self.lowered.specification.cases[counterexample.case]
        values = self.inputs(np.asarray(counterexample.x, dtype=np.float64), case.lower, case.upper)
        if values is None:
            self.rejected += 1
            return False
        assignments = []
        for level in (0, 1):
            try:
                computed = dict(values)
                for network in self.networks:
                    computed.update(self.run(network, values, level))
            except Exception:  # noqa: BLE001 - a model onnxruntime cannot run on this point: no witness
                self.rejected += 1
                return False
            if not satisfies(self.query, computed):
                self.rejected += 1
                return False
            assignments.append(computed)
        self.assignment = assignments[0]
        return True

    def inputs(self, x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> dict[str, np.ndarray] | None:
        """Every declared input's values in its declared type, inside the case's box (``None`` if rounding to the
        type cannot stay inside it)."""
        values = {}
        for network in self.networks:
            for variable in network.declaration.inputs:
                part = self.lowered.input_indices(variable)
                value = _to_type(x[part], lower[part], upper[part], variable, network.model_types[variable.name])
                if value is None:
                    return None
                values[variable.name] = value
        return values

    def run(self, network, values: Mapping[str, np.ndarray], level: int) -> dict[str, np.ndarray]:
        """Outputs and hidden values of one network on the inputs ``values``, by onnxruntime (``level`` 0: default
        graph optimisations, 1: none), in their declared types."""
        from onnx import helper

        declaration = network.declaration
        session = self._session(network, level)
        feeds = {}
        for variable, info in zip(declaration.inputs, [network.bindings[v.name] for v in declaration.inputs]):
            kind = helper.tensor_dtype_to_np_dtype(network.model_types[variable.name])
            feeds[info] = np.asarray(values[variable.name]).astype(kind).reshape(variable.shape)
        wanted = [*declaration.hidden, *declaration.outputs]
        results = session.run([network.bindings[v.name] for v in wanted], feeds)
        out = {}
        for variable, result in zip(wanted, results):
            out[variable.name] = _declared(np.asarray(result).reshape(-1), variable)
        return out

    def _session(self, network, level: int):
        key = (network.path, level, tuple(v.name for v in network.declaration.hidden))
        if key not in self._sessions:
            import onnxruntime as ort
            from onnx import helper

            model = network.model
            hidden = [network.bindings[v.name] for v in network.declaration.hidden]
            outputs = {o.name for o in model.graph.output}
            if any(h not in outputs for h in hidden):
                from onnx import ModelProto

                copy = ModelProto()
                copy.CopyFrom(model)
                for name in hidden:
                    if name not in outputs:
                        copy.graph.output.append(helper.make_empty_tensor_value_info(name))
                        outputs.add(name)
                model = copy
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = 1
            if level == 1:
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self._sessions[key] = ort.InferenceSession(model.SerializeToString(), options,
                                                       providers=["CPUExecutionProvider"])
        return self._sessions[key]


def _declared(values: np.ndarray, variable: Variable) -> np.ndarray:
    """A network's values in the variable's declared type (an isomorphic network's cast; ``real``: float64)."""
    if variable.element_type == REAL:
        return values.astype(np.float64)
    kind = _numpy_type(variable.element_type)
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(kind)


def _to_type(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, variable: Variable, model_code: int):
    """``x`` as values of the input's declared type inside ``[lower, upper]``: nearest value of the type, moved
    inward where rounding left the box; integers truncated (as the composed model's cast); ``real`` inputs as
    values of the model's type (what the model computes on)."""
    from onnx import helper

    if variable.element_type in INTEGER_TYPES:
        value = np.trunc(np.clip(x, lower, upper))
        return value.astype(INTEGER_TYPES[variable.element_type])
    if variable.element_type == REAL:
        model_kind = helper.tensor_dtype_to_np_dtype(model_code)
        kind = model_kind.type if np.issubdtype(model_kind, np.floating) else np.float64
    else:
        kind = FLOAT_TYPES[variable.element_type]
    value = np.clip(x, lower, upper).astype(kind)
    low, high = lower.astype(kind), upper.astype(kind)
    low = np.where(low.astype(np.float64) < lower, np.nextafter(low, kind(np.inf)), low)
    high = np.where(high.astype(np.float64) > upper, np.nextafter(high, kind(-np.inf)), high)
    if np.any(low > high):
        return None
    value = np.clip(value, low, high)
    return value.astype(np.float64) if variable.element_type == REAL else value


def _sample_executions(spec, checker: WitnessChecker, seed: int = 0, per_case: int = 8, max_cases: int = 16,
                       until: float | None = None):
    """A point of some case's box whose execution by onnxruntime satisfies the query (the box's centre, its two
    extreme corners and random points), or ``None`` (also once ``until``, a ``time.monotonic()`` time, has
    passed). The engine's attacks run the exact function; this finds the witnesses that exist only because of
    the networks' floating-point rounding."""
    from verifier.complete.result import Counterexample

    rng = np.random.default_rng(seed)
    for index, case in enumerate(spec.cases[:max_cases]):
        points = [(case.lower + case.upper) / 2, case.lower, case.upper]
        points += list(rng.uniform(case.lower, case.upper, (per_case - len(points), len(case.lower))))
        for x in points:
            if until is not None and time.monotonic() > until:
                return None
            candidate = Counterexample(x=np.asarray(x, dtype=np.float64), y=np.zeros(0), case=index)
            if checker.accept(candidate):
                return candidate
    return None


def _needs_input_splitting(network) -> bool:
    """Whether the network has an operator whose relaxation reads its input bounds other than ReLU (a
    comparison, Where, a truncating cast, an S-shaped activation...): ReLU splitting keeps the bounds of ReLU
    inputs only, so such networks are searched by splitting the input."""
    return any(node.op.needs_input_bounds and node.op.op_type != "Relu" for node in network.graph.nodes)


def _refuted_at_root(network, spec, float64: bool | None) -> bool:
    """Whether CROWN intersected with interval bounds refutes every case on its whole box (a cheap first proof:
    on wide boxes of exponentials the interval bounds are finite where the linear relaxations are not)."""
    import torch

    from verifier.complete.api import _as_dtype

    if network.input_size > 4096:
        return False
    bound_network = _as_dtype(network, torch.float64) if float64 or network.input_size <= 16 else network
    for group in spec.box_groups():
        if not len(group.d):
            return False
        try:
            bounds = bound_network.bounds(group.lower, group.upper, method="crown", C=group.C)
        except Exception:  # noqa: BLE001 - an operator without a CROWN rule here: leave it to the search
            return False
        margins = bounds.lower[0].double().numpy() - group.d
        if group.strict is not None:
            margins = np.where(group.strict & (margins >= 0), np.inf, margins)
        worst = np.full(len(group.case_indices), -np.inf)
        np.maximum.at(worst, group.row_case, np.nan_to_num(margins, nan=-np.inf))
        if not (worst > 0).all():
            return False
    return True


def verify_query(
    query: str | os.PathLike | Query,
    networks: Mapping[str, str | os.PathLike],
    timeout: float | None = None,
    options=None,
    device="auto",
) -> QueryResult:
    """Decide a VNN-LIB 2.0 query: ``networks`` maps each declared network (but those declared ``equal-to``) to
    its ONNX file. ``timeout``: wall-clock seconds, everything included. ``device``: where the search runs
    (see :func:`verifier.verify`). See the module docstring."""
    started = time.monotonic()
    from verifier.frontend.compose import bind_networks, compose, load_composed
    from verifier.spec.lowering import lower_query
    from verifier.spec.vnnlib2 import parse_query

    stats: dict = {"phases": {}}
    if not isinstance(query, Query):
        query = parse_query(query)
    lowered = lower_query(query)
    bound = bind_networks(query, networks)
    composed = compose(lowered, bound)
    spec = lowered.specification
    if spec.cases:
        lower = np.min(np.stack([c.lower for c in spec.cases]), axis=0)
        upper = np.max(np.stack([c.upper for c in spec.cases]), axis=0)
    else:
        lower = upper = np.zeros(lowered.n_inputs)
    network = load_composed(composed, lower, upper, name=f"the networks of {query.source}")
    stats["phases"]["load"] = time.monotonic() - started
    checker = WitnessChecker(query, lowered, bound)

    from verifier.complete import VerifyOptions, verify

    options = options or VerifyOptions()
    options.accept = checker.accept
    if any(n.typed for n in bound) and options.float64 is None:
        options.float64 = True   # bounds of float32 execution need more precision than float32 itself
    if options.method == "auto" and _needs_input_splitting(network):
        options.method = "input-split"
    remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
    from verifier.complete.result import Result

    if spec.cases and _refuted_at_root(network, spec, options.float64):
        result = Result("unsat", stats={"method": "root bounds (CROWN and IBP)"})
    elif (witness := _sample_executions(spec, checker, options.seed,
                                        until=None if remaining is None else time.monotonic() + remaining / 4)) \
            is not None:
        result = Result("sat", counterexample=witness, stats={"method": "sampling with onnxruntime"})
    else:
        checker.rejected = 0   # count only the search's candidates
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        result = verify(network, spec, timeout=remaining, options=options, device=device)
    phases = {**stats["phases"], **result.stats.get("phases", {})}
    stats.update(result.stats)
    stats["phases"] = phases
    status, message = result.status, result.message
    if status == "unsat" and lowered.unbounded_inputs:
        status = "unknown"
        message = (f"no counterexample within the finite range of {', '.join(lowered.unbounded_inputs)}, which "
                   "has no bound in the query; the infinities of its type (or, for real, the reals beyond "
                   "float64) were not analysed")
    if status == "sat" and checker.assignment is None:  # cannot happen: accept() ran on the witness
        raise VerifierError("internal error: a witness without an assignment")
    if status != "sat" and checker.rejected and not message:
        message = f"{checker.rejected} candidate(s) violated the query only up to rounding and were rejected"
    return QueryResult(status, query, checker.assignment if status == "sat" else None, message, stats,
                       composed.warnings)
