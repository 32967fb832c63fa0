"""Cuts learned from branch and bound (verifier/bab/cuts.py): the store's pruning and unit propagation by
hand, and verdicts unchanged with cuts on against exact answers (a MILP on tiny random networks, the
public ground truth on mnist_fc)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import verifier
from tests.conftest import shared_family
from tests.test_verify_milp import decided_cases
from verifier.bab.cuts import CutStore
from verifier.complete import VerifyOptions, verify


def _splits(rows):
    flat = torch.tensor(rows, dtype=torch.int8)
    return {"a": flat[:, :3].contiguous(), "b": flat[:, 3:].contiguous()}


def test_store_prunes_and_implies():
    store = CutStore({"a": 3, "b": 2}, torch.float32)
    store.add(torch.tensor([[1, 0, 0, -1, 0]], dtype=torch.int8))          # never a1 active with b0 inactive
    keep, implied = store.apply(_splits([
        [1, 0, 0, -1, 0],     # holds the cut: dropped
        [1, 1, 0, 0, 0],      # a1 active, b0 open: b0 must be active
        [0, 0, 0, -1, 1],     # b0 inactive, a0 open: a0 must be inactive
        [-1, 0, 0, -1, 0],    # contradicts the cut: untouched
        [0, 0, 0, 0, 0],      # two literals open: untouched
    ]))
    assert keep.tolist() == [False, True, True, True, True]
    flat = store.flat(implied)
    assert flat[1].tolist() == [1, 1, 0, 1, 0]
    assert flat[2].tolist() == [-1, 0, 0, -1, 1]
    assert flat[3].tolist() == [-1, 0, 0, -1, 0]
    assert flat[4].tolist() == [0, 0, 0, 0, 0]
    assert store.pruned == 1 and store.implied == 2


def test_opposite_implications_drop_the_domain():
    store = CutStore({"a": 2}, torch.float32)
    store.add(torch.tensor([[1, 1], [1, -1]], dtype=torch.int8))           # a0 active excludes both a1 phases
    keep, _ = store.apply({"a": torch.tensor([[1, 0], [0, 0]], dtype=torch.int8)})
    assert keep.tolist() == [False, True]


def test_long_cuts_are_not_kept():
    store = CutStore({"a": 40}, torch.float32)
    store.add(torch.ones(1, 40, dtype=torch.int8))
    assert len(store) == 0


def test_verdicts_with_cuts_match_milp(tmp_path):
    rng = np.random.default_rng(321)
    counts = {"sat": 0, "unsat": 0}
    for i, path, spec, exact in decided_cases(rng, 30, tmp_path):
        result = verify(verifier.load_onnx(path), spec, timeout=60,
                        options=VerifyOptions(method="relu-split", seed=i, cuts=True, batch=4))
        expected = "sat" if exact <= 0 else "unsat"
        assert result.status == expected, (i, exact, result.status)
        counts[expected] += 1
    assert counts["sat"] >= 3 and counts["unsat"] >= 3, counts


@pytest.mark.parametrize("instance", ["mnist-net_256x2.onnx:prop_9_0.05", "mnist-net_256x2.onnx:prop_1_0.03"])
def test_mnist_ground_truth_with_cuts(instance):
    folder = shared_family("mnist_fc")
    with open(folder / "ground_truth.csv") as handle:
        rows = {f"{r['onnx'].split('/')[-1]}:{r['vnnlib'].split('/')[-1].removesuffix('.vnnlib')}": r
                for r in csv.DictReader(handle)}
    row = rows[instance]
    result = verify(folder / row["onnx"], folder / row["vnnlib"], timeout=120,
                    options=VerifyOptions(cuts=True, milp=False))
    assert result.status == row["consensus"]


@pytest.mark.parametrize("options", [dict(method="milp"), dict(method="relu-split", float_sound=True),
                                     dict(method="relu-split", cuts=True, batch=4)])
def test_new_paths_under_the_device_guard(options):
    """The MILP, float soundness and cuts create every tensor on the network's device (the device stream's
    guard, on the CPU given explicitly): no tensor lands on the wrong device."""
    from tests.test_device_plumbing import guarded, tiny_instances

    for network, spec in list(tiny_instances().values())[:2]:
        def run(network=network, spec=spec):
            torch.manual_seed(0)
            return verify(network, spec, timeout=60, device="cpu",
                          options=VerifyOptions(attack=False, **options)).status

        # (float soundness may leave an instance unknown where only the LP refutes fixed-phase domains)
        allowed = ("sat", "unsat", "unknown") if options.get("float_sound") else ("sat", "unsat")
        assert guarded(run) in allowed
