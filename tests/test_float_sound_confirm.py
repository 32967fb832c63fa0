"""Float-sound ReLU splitting that searches in float32 and confirms each refutation in float64
(:mod:`verifier.bab.confirm`): the same verdicts as exact answers and as the all-float64 float-sound search,
and a refutation float64 does not confirm is never closed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import verifier
from tests.test_verify_milp import decided_cases
from verifier.bab.relu_split import ReluSplitSearch
from verifier.complete import VerifyOptions, verify
from verifier.complete.float_sound import make_float_sound
from verifier.complete.problem import Problem
from verifier.complete.robustness import robustness_specification

#: (image, epsilon) on models/digits_mlp.onnx whose proofs need ReLU splitting
BRANCHING = [(0, 0.1), (1, 0.08), (3, 0.06), (5, 0.06)]


def _digits(index: int, epsilon: float):
    images = np.load("models/digits_test_images.npy")
    labels = np.load("models/digits_test_labels.npy")
    return robustness_specification(images[index].reshape(-1), int(labels[index]), epsilon, 10)


@pytest.mark.parametrize("index,epsilon", BRANCHING)
def test_confirmed_search_proves_what_the_float64_search_proves(index, epsilon):
    network = verifier.load_onnx("models/digits_mlp.onnx")
    spec = _digits(index, epsilon)
    confirmed = verify(network, spec, timeout=60, options=VerifyOptions(float_sound=True))
    float64 = verify(network, spec, timeout=60, options=VerifyOptions(float_sound=True, float64=True))
    plain = verify(network, spec, timeout=60)
    assert confirmed.status == float64.status == plain.status == "unsat", confirmed.message
    assert confirmed.stats["method"] == "relu-split" and confirmed.stats["dtype"] == "float64"
    counts = confirmed.stats["float_sound_confirmation"]
    assert counts["confirmed"] > 0
    assert "float_sound_confirmation" not in float64.stats   # searched in float64 throughout


def test_verdicts_match_milp_with_confirmation(tmp_path):
    """Random tiny networks with exact answers from a MILP, searched by ReLU splitting in float32 with every
    refutation confirmed in float64: never the wrong answer, and ``unknown`` only where the all-float64
    float-sound search says so too (a domain with every phase fixed that its long optimisation cannot refute
    in place of the linear program)."""
    rng = np.random.default_rng(31)
    counts = {"sat": 0, "unsat": 0, "unknown": 0}
    for i, path, spec, exact in decided_cases(rng, 30, tmp_path):
        network = verifier.load_onnx(path)
        result = verify(network, spec, timeout=60,
                        options=VerifyOptions(method="relu-split", float_sound=True, float64=False))
        expected = "sat" if exact <= 0 else "unsat"
        if result.status == "unknown":
            float64 = verify(network, spec, timeout=60, options=VerifyOptions(method="relu-split", float_sound=True))
            assert float64.status == "unknown", f"network {i}: the float64 search says {float64.status}"
        else:
            assert result.status == expected, f"network {i}: exact min violation {exact:.4g}, got {result.status}"
        counts[result.status] += 1
    assert counts["sat"] >= 3 and counts["unsat"] >= 3 and counts["unknown"] <= 3, counts


def _search_with_confirmation():
    """A ReLU-split search of digits image 0 at eps 0.1 in float32, confirming in float64, after its root."""
    network = verifier.load_onnx("models/digits_mlp.onnx")
    spec = _digits(0, 0.1)
    network64 = verifier.load_onnx("models/digits_mlp.onnx").to(torch.float64)
    problem = Problem.from_group(spec.box_groups()[0], network64)
    assert make_float_sound(network64.graph, [problem], {}) is None
    stats: dict = {}
    search = ReluSplitSearch(network64, problem, stats, lambda points: None, search_network=network)
    assert search.start() is None
    return search, stats


def test_a_refutation_float64_does_not_confirm_stays_open():
    """Children whose float32 bounds are replaced by a false claim (every row refuting) keep only the rows the
    float64 pass confirms; the others are lowered below refutation and counted as reopened."""
    search, stats = _search_with_confirmation()
    pool, _, coefficients = search.stack[-1]
    children, _ = search.search.branch(pool, coefficients)
    bounded = search.search.bound(children, search.options.iterations)[0]
    claimed = type(bounded)(bounded.bounds, bounded.splits, bounded.alphas, bounded.betas,
                            torch.ones_like(bounded.lb))
    problem = search.problem
    checked = search.confirmation.confirm(claimed, children.lb, problem)
    index, row = torch.ones_like(claimed.lb, dtype=torch.bool).nonzero(as_tuple=True)
    margins = search.confirmation.pair_margins(claimed, index, row).reshape(claimed.lb.shape)
    truly = search.confirmation.problem.row_refutes(margins)
    assert bool((~truly).any()), "the claim should be false for some rows"
    kept = problem.row_refutes(checked.lb)
    assert torch.equal(kept, truly)
    assert stats["float_sound_confirmation"]["reopened"] == int((~truly).sum())
    assert not bool(problem.refuted(checked.lb).all(1)[~truly.all(1)].any())


def test_rows_refuted_before_are_not_checked_again():
    """Rows already refuting before the pass (confirmed where they were bounded) cost no float64 pass."""
    search, stats = _search_with_confirmation()
    pool, _, coefficients = search.stack[-1]
    children, _ = search.search.branch(pool, coefficients)
    bounded = search.search.bound(children, search.options.iterations)[0]
    before = stats["float_sound_confirmation"]["seconds"]
    same = search.confirmation.confirm(bounded, bounded.lb, search.problem)
    assert same is bounded and stats["float_sound_confirmation"]["seconds"] == before


def test_the_milp_proves_nothing_under_confirmation():
    """The confirmation's problem keeps its rounding model, so the exact MILP (whose infeasibility holds only up
    to HiGHS's tolerances) cannot answer unsat for a float-sound search; the same MILP does prove it plainly."""
    from dataclasses import replace

    from verifier.bab.milp import MilpStrategy, milp_phase
    from verifier.complete.deadline import Deadline

    search, _ = _search_with_confirmation()
    exact = search.confirmation.search
    output = exact.root_bounds.get(exact.graph.output_name)

    def decide(problem):
        return milp_phase(exact.graph, problem, search.root64.bounds, output, Deadline(60), lambda points: None, {},
                          MilpStrategy())

    assert decide(exact.problem)[0] == "unknown"
    assert decide(replace(exact.problem, rounding=None))[0] == "unsat"


def test_domains_handed_to_another_search_have_new_refutations_confirmed(monkeypatch):
    """A search continuing another's open domains (a worker of a distributed run) bounds them once in float32
    before branching; a row that pass refutes for the first time is confirmed in float64 like any other, so a
    false float32 claim there is lowered below refutation instead of being inherited, unchecked, by every
    child."""
    search, stats = _search_with_confirmation()
    open_domains = search.frontier()
    original = search.search.bound

    def claims_everything(domains, iterations):
        bounded, A_x, coefficients = original(domains, iterations)
        claimed = type(bounded)(bounded.bounds, bounded.splits, bounded.alphas, bounded.betas,
                                torch.ones_like(bounded.lb))
        return claimed, A_x, coefficients

    monkeypatch.setattr(search.search, "bound", claims_everything)
    search.add(open_domains)
    (entry,) = search.stack
    kept = search.problem.row_refutes(entry[0].lb)
    assert stats["float_sound_confirmation"]["reopened"] > 0
    assert not bool(kept.all()), "a false claim on an open root must not survive the float64 check"
