"""Searches cut into time slices: a search paused, its frontier handed to a fresh search, and so on until the
end, gives the verdict of one uninterrupted search, and the domains it refuted weigh exactly 1 (every domain
of the tree accounted for); what the distributed search is built on (no Dask needed here)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import verifier
from tests.distributed_cases import ACAS, DIGITS, acas_margin, digits_margin
from verifier.complete.deadline import Deadline
from verifier.complete.problem import Problem
from verifier.complete.result import PAUSED, SAT, UNSAT
from verifier.distributed import frontier as frontiers
from verifier.distributed.ledger import Ledger, LedgerError
from verifier.distributed.worker import SearchContext, candidate_checker, make_search
from verifier.spec import parse_vnnlib


def _setup(model, prop, method, dtype):
    net = verifier.load_onnx(model)
    spec = parse_vnnlib(prop, n_inputs=net.input_size, n_outputs=net.output_size)
    bound = net if dtype == net.dtype else __import__("copy").deepcopy(net).to(dtype)
    problems = [Problem.from_group(g, bound) for g in spec.box_groups()]
    context = SearchContext("test", method, bound, spec, problems)
    return net, spec, bound, problems, context


def _sliced(model, prop, method, dtype, steps_per_slice, pieces):
    """Run the search in slices of ``steps_per_slice`` steps, each slice's frontier cut into ``pieces`` searches
    run one after the other; returns the verdict, the refuted domains by depth, the slices run."""
    net, spec, bound, problems, context = _setup(model, prop, method, dtype)
    problem = problems[0]
    check = candidate_checker(net, spec, problem)
    first = make_search(context, bound, problem, {}, check)
    found = first.start()
    if found is not None:  # the root's own counterexample search (PGD in the box) found it
        return *found, Counter(), 0
    keep = getattr(first, "keep_cases", None)
    refuted = Counter()
    todo = [first]
    slices = 0
    while todo:
        search = todo.pop()
        steps = [0]

        def pause(steps=steps) -> bool:
            steps[0] += 1
            return steps[0] > steps_per_slice

        status, witness = search.run(Deadline(120), pause)
        slices += 1
        refuted += search.closed
        if status == SAT:
            return SAT, witness, refuted, slices
        if status == PAUSED:
            for piece in frontiers.split(frontiers.portable(search.frontier()), pieces):
                fresh = make_search(context, bound, problem, {}, check)
                if keep is not None:
                    fresh.restrict(keep)
                fresh.add(piece)
                todo.append(fresh)
        else:
            assert status == UNSAT, status
    return UNSAT, None, refuted, slices


@pytest.mark.parametrize("method,model,dtype", [("input-split", ACAS, torch.float64),
                                                ("relu-split", DIGITS, torch.float32)])
def test_sliced_search_proves_what_one_search_proves_and_accounts_for_every_domain(tmp_path, method, model, dtype):
    prop = acas_margin(tmp_path, -0.41) if method == "input-split" else digits_margin(tmp_path, 1.44)
    whole = verifier.verify(model, prop, timeout=120)
    assert whole.status == "unsat" and whole.stats["method"] == method
    status, _, refuted, slices = _sliced(model, prop, method, dtype, steps_per_slice=2, pieces=2)
    assert status == UNSAT and slices > 4
    assert frontiers.weight(refuted) == 1  # exactly: the refuted domains tile the root


def test_sliced_search_finds_the_counterexample(tmp_path):
    prop = acas_margin(tmp_path, -0.4)  # sampling finds Y_0 - Y_1 = -0.4068 in this box, not at its centre
    status, witness, _, _ = _sliced(ACAS, prop, "input-split", torch.float64, steps_per_slice=1, pieces=2)
    assert status == SAT and witness is not None
    assert witness.y[0] - witness.y[1] <= -0.4  # onnxruntime's output, checked with zero tolerance


def _boxes(depths: list[int]):
    count = len(depths)
    return (torch.zeros(count, 2), torch.ones(count, 2), torch.zeros(count, 1), torch.zeros(count),
            torch.tensor(depths))


def test_ledger_balances_exactly_and_ignores_late_results():
    ledger = Ledger()
    ledger.close_locally(Counter({1: 1}), Counter())                # half the root refuted by the coordinator
    a, b = ledger.open(_boxes([2])), ledger.open(_boxes([3, 3]))      # the other half, as two subtrees
    ledger.check()
    assert (a.count, a.weight, b.count, b.weight) == (1, 0.25, 2, 0.25)
    first = ledger.start(a)
    assert ledger.requeue(a.id, first, "worker lost")
    assert {s.id for s in ledger.queued()} == {a.id, b.id} and ledger.requeued_domains == 1
    second = ledger.start(a)
    assert not ledger.requeue(a.id, first, "late news of the old attempt")   # only the running attempt counts
    with pytest.raises(LedgerError, match="does not balance"):        # a domain gone missing
        ledger.settle(a.id, Counter({3: 1}), Counter(), None)
    new = ledger.settle(a.id, Counter({3: 1}), Counter(), _boxes([3]), pieces=4)
    assert len(new) == 1 and new[0].count == 1 and second == 2
    assert ledger.settle(a.id, Counter({2: 1}), Counter(), None) is None and ledger.ignored == 1  # duplicate
    assert not ledger.proved()
    for subtree in list(ledger.queued()):
        ledger.start(subtree)
        ledger.settle(subtree.id, frontiers.depth_counts(subtree.domains), Counter(), None)
    assert ledger.proved() and ledger.refuted == 1 and ledger.summary()["requeued_settled"]


def test_frontier_split_keeps_every_domain_once():
    boxes = _boxes([1, 2, 3, 4, 5, 6, 7])
    pieces = frontiers.split(boxes, 3)
    assert [frontiers.size(p) for p in pieces] == [3, 2, 2]
    assert sorted(torch.cat([p[4] for p in pieces]).tolist()) == [1, 2, 3, 4, 5, 6, 7]
    assert frontiers.split(boxes, 20)[0][4].tolist() == [1] and len(frontiers.split(boxes, 20)) == 7
