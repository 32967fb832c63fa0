"""Every tensor the engine creates is made on the device of the tensors it combines (tested without a GPU).

The network and the boxes are put on the CPU and the default device is switched to ``meta`` under
:class:`tests.device_guard.DeviceGuard`: a tensor the engine makes without a device then lands on ``meta``, as it
would land on the CPU beside a network on a GPU, and the guard turns that into an error naming the file and line
(see its docstring). First the guard is shown to catch what it must (a planted ``torch.zeros(n)`` in the engine's
code, a silent ``meta`` index, a CPU generator, ``.numpy()`` without ``.cpu()``); then every engine path runs under
it -- IBP, CROWN, forward-mode bounds, alpha-CROWN (final and full), both branch-and-bound searches, the attacks,
the exact LP of a fixed-phase domain, ``verify`` end to end and smoothing -- and must give the same answers as
without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import verifier
from tests.conftest import MODELS
from tests.device_guard import ENGINE, DeviceError, DeviceGuard
from verifier.attack.pgd import output_extremes
from verifier.bounds import crown as crown_module
from verifier.bounds.alpha import optimize_all_slopes, optimize_slopes
from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds
from verifier.bounds.forward import forward_bounds
from verifier.complete import VerifyOptions, verify, verify_robustness
from verifier.complete.falsify import find_candidates
from verifier.complete.problem import Problem
from verifier.spec import parse_vnnlib

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mlp():
    return verifier.load_onnx(MODELS / "digits_mlp.onnx")


@pytest.fixture(scope="module")
def cnn():
    return verifier.load_onnx(MODELS / "digits_cnn.onnx")


def box(network, eps: float, image: str = "digits_mlp_img0.npy"):
    x = torch.as_tensor(np.load(MODELS / image), dtype=network.dtype).reshape(1, *network.input_shape)
    return x - eps, x + eps


# -- the guard catches what it must -------------------------------------------------------------------------------
def _engine_function(source: str, name: str, namespace: dict):
    """A function compiled as if it were written in the engine's own code (``verifier/bounds/crown.py``)."""
    exec(compile(source, str(ENGINE / "bounds" / "crown.py"), "exec"), namespace)
    return namespace[name]


def test_guard_catches_a_planted_default_device_tensor(mlp, monkeypatch):
    original = crown_module._refined_neurons
    planted = _engine_function(
        "def planted(graph, name, lower, upper):\n"
        "    wanted = original(graph, name, lower, upper)\n"
        "    return wanted & (torch.zeros(wanted.shape[1]) == 0)\n",
        "planted", {"original": original, "torch": torch})
    monkeypatch.setattr(crown_module, "_refined_neurons", planted)
    lower, upper = box(mlp, 0.02)
    mlp.bounds(lower, upper)   # outside the guard the planted tensor is harmless on the CPU
    with pytest.raises(DeviceError, match=r"verifier/bounds/crown.py:3: torch.zeros without a device"):
        with DeviceGuard():
            mlp.bounds(lower, upper)


def test_guard_catches_mixing_even_where_torch_is_silent():
    values = torch.arange(4.0, device=CPU)
    with DeviceGuard():
        index = torch.arange(2)             # test code: not refused at creation, but it is on meta
        assert index.device.type == "meta"
        with pytest.raises(DeviceError, match="mixes tensors"):
            values[index]                    # torch itself returns garbage here, without an error
        with pytest.raises(DeviceError, match="mixes tensors"):
            values + torch.ones(4)


def test_guard_catches_a_generator_of_another_device():
    source = "def draw(like):\n    return torch.rand(3, generator=torch.Generator(), device=like.device)\n"
    with DeviceGuard():
        draw = _engine_function(source, "draw", {"torch": torch})
        draw(torch.empty(1, device=CPU))      # a CPU generator for a CPU tensor: fine
        with pytest.raises(DeviceError, match="generator"):
            draw(torch.empty(1, device="meta"))


def test_guard_catches_numpy_without_cpu_and_counts_syncs():
    source = ("def to_host(t):\n    return t.numpy()\n"
              "def to_host_properly(t):\n    return t.cpu().numpy()\n"
              "def decide(t):\n    return bool((t > 0).all())\n")
    namespace = {"torch": torch}
    with DeviceGuard() as guard:
        _engine_function(source, "to_host", namespace)
        t = torch.ones(3, device=CPU) * 2
        with pytest.raises(DeviceError, match="numpy"):
            namespace["to_host"](t)
        assert namespace["decide"](t)
        assert namespace["to_host_properly"](t).tolist() == [2.0, 2.0, 2.0]
    assert guard.syncs == {"verifier/bounds/crown.py:6": 1}


# -- every engine path runs under it ------------------------------------------------------------------------------
def same(a, b):
    if isinstance(a, torch.Tensor):
        assert a.device == CPU
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif isinstance(a, (tuple, list)):
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k])
    else:
        assert a == b


def guarded(run):
    """``run()`` under the guard, and the same without it: the answers must be identical."""
    expected = run()
    with DeviceGuard():
        actual = run()
    same(actual, expected)
    return actual


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_bounds_under_the_guard(model, mlp, cnn):
    network = mlp if model == "mlp" else cnn
    lower, upper = box(network, 0.02, "digits_mlp_img0.npy" if model == "mlp" else "digits_cnn_img0.npy")
    C = torch.eye(10, dtype=network.dtype, device=CPU)[:3] - torch.eye(10, dtype=network.dtype, device=CPU)[3:6]
    guarded(lambda: tuple(network.bounds(lower, upper, method="ibp")))
    guarded(lambda: tuple(network.bounds(lower, upper, method="crown", C=C)))
    guarded(lambda: tuple(network.bounds(lower, upper, method="crown", intermediate="ibp", memory_budget=4096)))
    guarded(lambda: network.intermediate_bounds(lower.expand(3, *lower.shape[1:]), upper.expand(3, *lower.shape[1:])))


def test_alpha_crown_under_the_guard(mlp):
    lower, upper = box(mlp, 0.05)
    eye = torch.eye(10, dtype=mlp.dtype, device=CPU)
    spec = (eye[[2] * 9] - eye[[j for j in range(10) if j != 2]]).reshape(1, 9, *mlp.output_shape)
    offset = torch.zeros(9, dtype=mlp.dtype, device=CPU)

    def final():
        with torch.no_grad():
            bounds = compute_intermediate_bounds(mlp.graph, lower, upper, CrownOptions())
        return optimize_slopes(mlp.graph, spec, offset, bounds)[0]

    guarded(final)
    guarded(lambda: optimize_all_slopes(mlp.graph, lower, upper, spec, offset, iterations=3)[0])


def test_forward_bounds_and_attacks_under_the_guard():
    network = verifier.load_onnx(MODELS / "acasxu_like.onnx").to(torch.float64)
    center = torch.as_tensor(np.load(MODELS / "acasxu_like_prop_1_center.npy"), device=CPU).reshape(1, -1)
    lower, upper = network.as_batch(center - 0.05), network.as_batch(center + 0.05)
    guarded(lambda: forward_bounds(network.graph, lower, upper)[network.graph.output_name])
    guarded(lambda: output_extremes(network.forward_flat, lower, upper, steps=5, restarts=2))
    spec = parse_vnnlib(MODELS / "acasxu_like_prop_2.vnnlib", n_inputs=5, n_outputs=5)
    problem = Problem.from_group(spec.box_groups()[0], network)
    from verifier.complete.deadline import Deadline

    guarded(lambda: find_candidates(network, problem, Deadline(None), samples=256, steps=5, restarts=4))
    guarded(lambda: problem.restrict(torch.ones(problem.n_cases, dtype=torch.bool, device=CPU))[1])


def tiny_instances():
    """Tiny random ReLU networks with properties that both searches must branch on (found by trying seeds; the
    first is sat, the second unsat: 13 and 199, 2969 and 239 domains with input and ReLU splitting)."""
    from tests.milp import random_network, to_onnx
    from tests.test_verify_milp import random_property

    rng = np.random.default_rng(5)
    found = {}
    for i in range(21):
        layers = random_network(rng)
        spec, _ = random_property(rng, layers, layers[0][0].shape[1])
        if i in (13, 20):
            found[i] = (verifier.load_onnx(to_onnx(layers)), spec)
    return found


@pytest.mark.parametrize("method", ["input-split", "relu-split"])
def test_branch_and_bound_under_the_guard(method):
    """Both searches end to end (attack off, so the search itself finds the counterexample), on the CPU given
    explicitly: same verdicts and the same number of domains under the guard."""
    for network, spec in tiny_instances().values():
        def run(network=network, spec=spec):
            torch.manual_seed(0)  # the local attacks of input splitting draw from the global generator
            result = verify(network, spec, timeout=60, device="cpu", options=VerifyOptions(method=method, attack=False))
            return result.status, result.stats.get("domains")

        status, domains = guarded(run)
        assert domains > 10


def test_fixed_phase_lp_under_the_guard():
    """The exact LP of a domain whose every ReLU phase is fixed (every unstable neuron split active)."""
    from verifier.bab.lp import decide_fixed_phases

    network, spec = tiny_instances()[20]
    problem = Problem.from_group(spec.box_groups()[0], network)

    def run():
        bounds = compute_intermediate_bounds(network.graph, problem.lower.unsqueeze(0), problem.upper.unsqueeze(0),
                                             CrownOptions())
        pre = {n.inputs[0]: bounds[n.inputs[0]] for n in network.graph.nodes if n.op.op_type == "Relu"}
        splits = {name: ((lo < 0) & (hi > 0)).reshape(-1).to(torch.int8) for name, (lo, hi) in pre.items()}
        pre = {name: (lo[0], hi[0]) for name, (lo, hi) in pre.items()}
        verdict, point = decide_fixed_phases(network.graph, problem, pre, splits)
        return verdict, None if point is None else point.tolist()

    guarded(run)


def test_relu_split_on_digits_under_the_guard(mlp):
    x = np.load(MODELS / "digits_mlp_img1.npy")
    label = int(mlp.forward(x).argmax())
    guarded(lambda: verify_robustness(mlp, x, label, 0.03, timeout=60, device="cpu",
                                      options=VerifyOptions(method="relu-split", attack=True)).status)


def test_smoothing_under_the_guard(mlp):
    from verifier.smoothing import SmoothedClassifier

    x = np.load(MODELS / "digits_mlp_img0.npy")

    def run():
        smoothed = SmoothedClassifier(mlp, sigma=0.25, seed=0, device="cpu")
        return smoothed.sample_counts(x, 300, batch_size=128).tolist()

    guarded(run)
