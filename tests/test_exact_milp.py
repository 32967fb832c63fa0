"""The exact MILP (verifier/bab/milp.py) against answers we did not compute with it: the reference MILP of
tests/milp.py (built from the raw weights with interval big-M) on tiny random networks, and brute force /
DPLL on ReLU networks encoding 3-SAT formulas (tests/satnet.py). Every `sat` witness is re-run by
onnxruntime.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import verifier
from tests import satnet
from tests.milp import exact_min_violation, random_network, to_onnx, to_torch
from tests.netutil import run_onnxruntime
from verifier.bab.milp import milp_decide, refutation_margin, relu_pre_activations
from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds
from verifier.complete import VerifyOptions, verify
from verifier.complete.problem import Problem
from verifier.spec import parse_vnnlib
from verifier.spec.specification import Case, Specification


def _decide(network, spec, seconds=30.0, stop=None):
    problem = Problem.from_group(spec.box_groups()[0], network)
    with torch.no_grad():
        bounds = compute_intermediate_bounds(network.graph, problem.lower.unsqueeze(0), problem.upper.unsqueeze(0),
                                             CrownOptions())
    pre = {name: bounds[name] for name in relu_pre_activations(network.graph)}

    def candidate(points):
        y = network.forward_flat(points)
        return points[0] if bool(problem.violation(y)[0][0] <= 0) else None

    stats: dict = {}
    status, witness = milp_decide(network.graph, problem, pre, time.monotonic() + seconds, candidate, stats,
                                  output_bounds=bounds[network.graph.output_name], stop=stop)
    return status, witness, stats


@pytest.mark.parametrize("seed", range(2))
def test_milp_equals_reference_milp_on_tiny_networks(seed):
    rng = np.random.default_rng(500 + seed)
    counts = {"sat": 0, "unsat": 0}
    for _ in range(40):
        layers = random_network(rng)
        n_in, n_out = layers[0][0].shape[1], layers[-1][0].shape[0]
        network = verifier.from_torch(to_torch(layers), torch.zeros(1, n_in, dtype=torch.float64))
        centre, radius = rng.uniform(-1, 1, n_in), rng.uniform(0.05, 0.8, n_in)
        k = int(rng.integers(1, 3))
        C, d = rng.standard_normal((k, n_out)), rng.standard_normal(k)
        exact = exact_min_violation(layers, centre - radius, centre + radius, C, d)
        if abs(exact) < 1e-6:
            continue
        spec = Specification(n_in, n_out, (Case(centre - radius, centre + radius, C, d),))
        status, witness, stats = _decide(network, spec)
        expected = "sat" if exact <= 0 else "unsat"
        assert status == expected, (exact, stats)
        counts[expected] += 1
        if expected == "sat":
            y = network.forward_flat(witness.reshape(1, -1))[0].numpy()
            assert np.all(C @ y <= d)
    assert counts["sat"] >= 5 and counts["unsat"] >= 5, counts


def test_sat_network_encoding_matches_formula():
    """The encoding's claim, checked by sampling: max y is 1 on satisfiable formulas, <= 0 otherwise."""
    rng = np.random.default_rng(3)
    for n in (5, 7, 9):
        for ratio in (3, 6):
            formula = satnet.random_formula(n, ratio * n, rng)
            model = satnet.brute_force(formula, n)
            assert (model is None) == (satnet.dpll(formula, n) is None)
            layers = satnet.weights(formula, n)
            x = rng.uniform(0, 1, (4000, n))
            x[:1000] = np.round(x[:1000])
            top = satnet.forward(layers, x).max()
            if model is None:
                assert top <= 1e-9
            else:
                assert satnet.forward(layers, model[None].astype(float))[0, 0] == 1.0


@pytest.mark.parametrize("n", [6, 8, 10, 12])
def test_milp_and_verify_decide_sat_networks_like_brute_force(n, tmp_path):
    rng = np.random.default_rng(n)
    for index, ratio in enumerate((3.0, 4.5, 6.0)):
        formula = satnet.random_formula(n, int(ratio * n), rng)
        expected = "sat" if satnet.brute_force(formula, n) is not None else "unsat"
        model, prop = satnet.write_instance(tmp_path, f"f{index}", formula, n)
        network = verifier.load_onnx(model)
        spec = parse_vnnlib(prop, n_inputs=n, n_outputs=1)
        status, _, stats = _decide(network, spec)
        assert status == expected, (n, ratio, stats)
        for method in ("milp", "auto"):
            result = verify(network, spec, timeout=60, options=VerifyOptions(method=method))
            assert result.status == expected, (n, ratio, method, result.message)
            if expected == "sat":
                x = result.counterexample.x.reshape(1, n).astype(np.float32)
                assert run_onnxruntime(model, x).reshape(-1)[0] >= satnet.THRESHOLD
                assert np.all((x >= 0) & (x <= 1))


def test_a_milp_told_to_stop_gives_up_before_its_next_case(tmp_path):
    """The MILP beside a distributed search is told to stop once the search has answered: it solves no further
    case and answers timeout, never a verdict it did not reach."""
    n = 8
    formula = satnet.random_formula(n, 6 * n, np.random.default_rng(5))
    model, prop = satnet.write_instance(tmp_path, "stopped", formula, n)
    network = verifier.load_onnx(model)
    spec = parse_vnnlib(prop, n_inputs=n, n_outputs=1)
    status, witness, stats = _decide(network, spec, stop=lambda: True)
    assert (status, witness) == ("timeout", None) and stats["milp"]["solves"] == 0
    status, _, stats = _decide(network, spec, stop=lambda: False)
    assert status == ("sat" if satnet.brute_force(formula, n) is not None else "unsat") and stats["milp"]["solves"] == 1


def test_auto_strategy_decides_a_20_variable_formula(tmp_path):
    """20 inputs: ReLU splitting first, the MILP after its short start (whichever decides it)."""
    rng = np.random.default_rng(11)
    n = 20
    formula = satnet.random_formula(n, 6 * n, rng)
    assert satnet.dpll(formula, n) is None
    model, prop = satnet.write_instance(tmp_path, "unsat20", formula, n)
    result = verify(str(model), str(prop), timeout=60)
    assert result.status == "unsat", result.message


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, *_ in satnet.instance_set()])
def test_sat_networks_20_to_60_variables(name, tmp_path):
    _, formula, n, satisfiable = next(item for item in satnet.instance_set() if item[0] == name)
    model, prop = satnet.write_instance(tmp_path, name, formula, n)
    result = verify(str(model), str(prop), timeout=60)
    assert result.status == ("sat" if satisfiable else "unsat"), result.message
    if satisfiable:
        x = result.counterexample.x.reshape(1, n).astype(np.float32)
        assert run_onnxruntime(model, x).reshape(-1)[0] >= satnet.THRESHOLD


def test_margin_covers_the_solver_tolerance():
    assert refutation_margin(0.0) == refutation_margin(1.0) > 1e-7
    assert refutation_margin(1e4) == pytest.approx(1e4 * refutation_margin(1.0))


def test_milp_on_leaky_relu(tmp_path):
    """LeakyReLU goes through the ReLU encoding: verdicts equal dense sampling's on a 1-input network."""
    from tests.netutil import make_model

    w1 = np.array([[1.0], [-1.0], [2.0]], np.float32)
    b1 = np.array([0.0, 0.5, -1.0], np.float32)
    w2 = np.array([[1.0, 1.0, -1.0]], np.float32)
    nodes = [verifier_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), verifier_node("LeakyRelu", ["h"], ["r"],
                                                                                       alpha=0.1),
             verifier_node("Gemm", ["r", "w2"], ["y"], transB=1)]
    path = tmp_path / "leaky.onnx"
    path.write_bytes(make_model(nodes, [1, 1], [1, 1], {"w1": w1, "b1": b1, "w2": w2}))
    network = verifier.load_onnx(path)
    xs = np.linspace(-2, 2, 40001).reshape(-1, 1)
    ys = network.forward_flat(torch.as_tensor(xs, dtype=torch.float32))[:, 0].double().numpy()
    for threshold in (ys.min() - 0.05, ys.min() + 0.05):
        spec = Specification(1, 1, (Case(np.array([-2.0]), np.array([2.0]), np.array([[1.0]]),
                                         np.array([threshold])),))
        status, _, _ = _decide(network, spec)
        assert status == ("sat" if threshold >= ys.min() else "unsat")


def verifier_node(op, inputs, outputs, **attributes):
    from onnx import helper

    return helper.make_node(op, inputs, outputs, **attributes)


def test_milp_witness_of_onnx_network_is_rechecked(tmp_path):
    rng = np.random.default_rng(2)
    layers = [(rng.standard_normal((8, 3)), rng.standard_normal(8)), (rng.standard_normal((2, 8)), np.zeros(2))]
    path = tmp_path / "net.onnx"
    path.write_bytes(to_onnx(layers))
    lower, upper = -np.ones(3), np.ones(3)
    C = np.array([[1.0, -1.0]])
    value = exact_min_violation(layers, lower, upper, C, np.zeros(1))
    spec = Specification(3, 2, (Case(lower, upper, C, np.array([value + 0.5])),))
    result = verify(str(path), spec, timeout=30, options=VerifyOptions(method="milp", attack=False))
    assert result.status == "sat"
    y = run_onnxruntime(path, result.counterexample.x.reshape(1, 3).astype(np.float32)).reshape(-1)
    assert C[0] @ y <= value + 0.5
