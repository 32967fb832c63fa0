"""The default float soundness (``VerifyOptions(float_sound="auto")``): float-sound wherever it costs about
nothing, the MILP's and the LP's refutations accepted to HiGHS's tolerances (and said so) where nothing rigorous
reaches them, off where it would cost a float64 search; every ``unsat`` says what its proof rests on.

Verdicts are checked against brute force (DPLL on the 3-SAT networks), against the strict mode and against
``float_sound=False``: auto never loses an answer the engine gives without float soundness, and never proves
what the strict mode refutes.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import verifier
from tests import satnet
from tests.netutil import make_model
from verifier.complete import VerifyOptions, verify
from verifier.errors import OptionError
from verifier.spec import parse_vnnlib

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _unsat_formula(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        formula = satnet.random_formula(n, 6 * n, rng)
        if satnet.dpll(formula, n) is None:
            return formula
    raise AssertionError("no unsatisfiable formula drawn")


def test_default_proof_on_a_relu_network_is_float_sound():
    result = verify(str(ROOT / "models/acasxu_like.onnx"), str(ROOT / "models/acasxu_like_prop_1.vnnlib"), timeout=60)
    assert result.status == "unsat"
    assert result.stats["proof"] == "float-sound" and result.stats["float_sound_mode"] == "auto"
    off = verify(str(ROOT / "models/acasxu_like.onnx"), str(ROOT / "models/acasxu_like_prop_1.vnnlib"), timeout=60,
                 options=VerifyOptions(float_sound=False))
    assert off.status == "unsat" and off.stats["float_sound_mode"] == "off"
    assert off.stats["proof"].startswith("float64 arithmetic with tolerance margins")


def test_milp_infeasibility_is_accepted_by_auto_and_labelled(tmp_path):
    """An unsatisfiable 3-SAT network decided by the MILP alone: strict float soundness leaves it ``unknown``
    (HiGHS's infeasibility is not rigorous), the default proves it and says the MILP did."""
    n = 8
    model, prop = satnet.write_instance(tmp_path, "unsat8", _unsat_formula(n, 1), n)
    network = verifier.load_onnx(model)
    spec = parse_vnnlib(prop, n_inputs=n, n_outputs=1)
    auto = verify(network, spec, timeout=60, options=VerifyOptions(method="milp"))
    assert auto.status == "unsat", auto.message
    assert auto.stats["float_sound_solver_refuted"] == {"milp": 1}
    assert "1 by the MILP" in auto.stats["proof"] and auto.stats["proof"].startswith("float-sound except")
    strict = verify(network, spec, timeout=60, options=VerifyOptions(method="milp", float_sound=True))
    assert strict.status == "unknown" and "not float-sound" in strict.message
    off = verify(network, spec, timeout=60, options=VerifyOptions(method="milp", float_sound=False))
    assert off.status == "unsat" and "float_sound_solver_refuted" not in off.stats


def test_lp_refutations_of_fixed_phase_domains_are_accepted_by_auto():
    """A tiny network whose last domains only the LP refutes (every ReLU phase fixed; 300 certified
    beta-CROWN steps do not reach the LP's value): strict says ``unknown``, auto and off prove it, auto
    counting the LP's refutations in its label."""
    from tests.test_device_plumbing import tiny_instances

    network, spec = tiny_instances()[20]
    assert _tiny_exact_min_violation(20) > 0   # unsat by the reference MILP of tests/milp.py, independently
    results = {mode: verify(network, spec, timeout=60,
                            options=VerifyOptions(method="relu-split", attack=False, float_sound=mode))
               for mode in (True, "auto", False)}
    assert results[True].status == "unknown"
    assert results["auto"].status == results[False].status == "unsat"
    lp = results["auto"].stats["float_sound_solver_refuted"]["lp"]
    assert lp >= 1 and f"{lp} by the LP" in results["auto"].stats["proof"]


def _tiny_exact_min_violation(index: int) -> float:
    """The exact minimum violation of ``tests.test_device_plumbing.tiny_instances()[index]`` (the same draws),
    from the reference MILP built on the raw weights (``tests.milp``): positive means unsat."""
    from tests.milp import random_network
    from tests.test_verify_milp import random_property

    rng = np.random.default_rng(5)
    for _ in range(index + 1):
        layers = random_network(rng)
        _, exact = random_property(rng, layers, layers[0][0].shape[1])
    return exact


def test_auto_is_off_where_it_would_cost_a_float64_search(tmp_path):
    """A float32 sigmoid network with many inputs (ReLU splitting's territory, where the a posteriori rounding
    bound does not apply): auto leaves float soundness off and says why; strict applies it."""
    rng = np.random.default_rng(0)
    n = 20
    w1 = rng.normal(size=(8, n)).astype(np.float32) * 0.1
    w2 = rng.normal(size=(1, 8)).astype(np.float32)
    from onnx import helper

    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Sigmoid", ["h"], ["s"]),
             helper.make_node("Gemm", ["s", "w2", "b2"], ["y"], transB=1)]
    path = tmp_path / "sigmoid.onnx"
    path.write_bytes(make_model(nodes, [1, n], [1, 1], {"w1": w1, "b1": np.zeros(8, np.float32), "w2": w2,
                                                        "b2": np.zeros(1, np.float32)}))
    network = verifier.load_onnx(path)
    top = float(torch.sigmoid(torch.zeros(8)) @ torch.as_tensor(w2[0])) + float(np.abs(w2).sum())   # above any y
    prop = tmp_path / "p.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + ["(declare-const Y_0 Real)"]
    lines += [f"(assert (>= X_{i} -0.1))\n(assert (<= X_{i} 0.1))" for i in range(n)]
    prop.write_text("\n".join(lines + [f"(assert (>= Y_0 {top + 1}))"]) + "\n")
    auto = verify(network, str(prop), timeout=60)
    assert auto.status == "unsat"
    assert auto.stats["float_sound_mode"] == "off"
    assert "Sigmoid" in auto.stats["proof"] and "--float-sound" in auto.stats["proof"]
    strict = verify(network, str(prop), timeout=60, options=VerifyOptions(float_sound=True))
    assert strict.status == "unsat" and strict.stats["proof"] == "float-sound"


def test_cuts_turn_auto_float_soundness_off():
    result = verify(str(ROOT / "models/acasxu_like.onnx"), str(ROOT / "models/acasxu_like_prop_1.vnnlib"), timeout=60,
                    options=VerifyOptions(cuts=True))
    assert result.status == "unsat" and result.stats["float_sound_mode"] == "off"
    assert "cuts" in result.stats["proof"]


@pytest.mark.parametrize("value", ["yes", 1.0, None])
def test_float_sound_option_is_checked(value):
    with pytest.raises(OptionError, match="float_sound must be"):
        verify(str(ROOT / "models/acasxu_like.onnx"), str(ROOT / "models/acasxu_like_prop_1.vnnlib"),
               options=VerifyOptions(float_sound=value))


def test_command_line_prints_what_the_proof_rests_on():
    base = [sys.executable, "-m", "verifier", "verify", "models/acasxu_like.onnx", "models/acasxu_like_prop_1.vnnlib",
            "--timeout", "60"]
    default = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert default.stdout.strip() == "unsat" and "proof: float-sound" in default.stderr
    off = subprocess.run(base + ["--no-float-sound"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert off.stdout.strip() == "unsat" and "proof: float64 arithmetic with tolerance margins" in off.stderr
    both = subprocess.run(base + ["--float-sound", "--no-float-sound"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert both.returncode != 0 and "not allowed with argument" in both.stderr


def test_auto_is_off_where_the_float64_copy_would_crowd_memory(monkeypatch):
    """Where the float64 copy of the weights would take more than the allowed share of the free memory, auto
    proves in float32 (and says so) rather than risk losing the answer to memory; strict applies it anyway."""
    from verifier.complete import api

    paths = (str(ROOT / "models/digits_cnn.onnx"), str(ROOT / "models/digits_cnn_img0_eps0.02.vnnlib"))
    assert verify(*paths, timeout=60).stats["proof"] == "float-sound"
    monkeypatch.setattr(api, "AUTO_FLOAT64_MEMORY_SHARE", 1e-9)
    crowded = verify(*paths, timeout=60)
    assert crowded.status == "unsat" and crowded.stats["float_sound_mode"] == "off"
    assert "float64 copy would take" in crowded.stats["proof"]
    assert verify(*paths, timeout=60, options=VerifyOptions(float_sound=True)).stats["proof"] == "float-sound"
