"""Complete verification against exact answers: on hundreds of tiny random ReLU networks and random
properties, `verify` agrees with a MILP (scipy's HiGHS), for both `sat` and `unsat`, with both search
methods. Every `sat` carries a witness that onnxruntime confirms.
"""

from __future__ import annotations

import numpy as np
import pytest

import verifier
from tests.conftest import TEST_DEVICE
from tests.milp import exact_min_violation, random_network, to_onnx
from tests.netutil import run_onnxruntime
from verifier.complete import VerifyOptions, verify
from verifier.spec.specification import Case, Specification

MARGIN = 1e-3  # properties closer than this to the boundary are skipped (float32 networks)


def random_property(rng: np.random.Generator, layers, n_in: int) -> tuple[Specification, float]:
    """A box and one conjunction ``C y <= d`` of 1-2 rows, with ``d`` placed so that about half are sat."""
    center = rng.uniform(-1, 1, n_in)
    radius = rng.uniform(0.05, 0.8, n_in)
    lower, upper = center - radius, center + radius
    n_out = layers[-1][0].shape[0]
    k = int(rng.integers(1, 3))
    C = rng.standard_normal((k, n_out))
    d = np.zeros(k)
    value = exact_min_violation(layers, lower, upper, C, d)
    shift = value + rng.uniform(-1, 1) * max(0.5, abs(value))    # d -> d + shift moves the optimum by -shift
    d = d + shift
    exact = value - shift
    spec = Specification(n_in, n_out, (Case(lower, upper, C, d),))
    return spec, exact


def decided_cases(rng: np.random.Generator, count: int, folder):
    """``(index, ONNX path, property, exact minimum violation)`` for ``count`` random tiny networks and
    properties, those within :data:`MARGIN` of the boundary left out (the same draws whatever is kept)."""
    for i in range(count):
        layers = random_network(rng)
        spec, exact = random_property(rng, layers, layers[0][0].shape[1])
        if abs(exact) < MARGIN:
            continue
        path = folder / f"net{i}.onnx"
        path.write_bytes(to_onnx(layers))
        yield i, path, spec, exact


@pytest.mark.parametrize("method", ["input-split", "relu-split"])
@pytest.mark.parametrize("seed", range(3))
def test_verdicts_match_milp(method, seed, tmp_path):
    rng = np.random.default_rng(100 * seed + (method == "relu-split"))
    counts = {"sat": 0, "unsat": 0}
    for i, path, spec, exact in decided_cases(rng, 40, tmp_path):
        network = verifier.load_onnx(path)
        result = verify(network, spec, timeout=60, options=VerifyOptions(method=method, seed=i), device=TEST_DEVICE)
        expected = "sat" if exact <= 0 else "unsat"
        assert result.status == expected, f"network {i}: exact min violation {exact:.4g}, got {result.status}"
        counts[expected] += 1
        if expected == "sat":
            witness = result.counterexample
            y = run_onnxruntime(path, witness.x.reshape(1, spec.n_inputs).astype(np.float32)).reshape(-1)
            case = spec.cases[0]
            assert np.all(case.C @ y <= case.d) and np.all(witness.x >= case.lower) and np.all(witness.x <= case.upper)
    assert counts["sat"] >= 5 and counts["unsat"] >= 5, counts


def test_attack_disabled_still_finds_counterexamples_in_search(tmp_path):
    """With falsification off, sat answers must come from the search's own candidate points."""
    rng = np.random.default_rng(7)
    found = 0
    for i, path, spec, exact in decided_cases(rng, 30, tmp_path):
        if exact > 0:   # sat properties only (|exact| >= MARGIN already)
            continue
        for method in ("input-split", "relu-split"):
            result = verify(verifier.load_onnx(path), spec, timeout=60,
                            options=VerifyOptions(method=method, attack=False), device=TEST_DEVICE)
            assert result.status == "sat", (i, method, exact)
        found += 1
    assert found >= 5
