"""``verifier.certify``: soundness against attacks of this test's own and exact MILP answers, the ordering of
the methods, L2 balls, radius mode, input normalisation, torch modules and resumption."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

import verifier
from tests.conftest import MODELS
from tests.milp import exact_min_violation, random_network, to_onnx
from verifier.certification import CertifyOptions, certify
from verifier.certification.balls import BallConcretization, PerturbationSet
from verifier.certification.crown import lower_bounds

DATA = np.load(MODELS / "digits_test.npz")
DETERMINISTIC = ("ibp", "crown", "alpha", "lipschitz", "complete")


def own_attack(net: verifier.Network, x: np.ndarray, labels: np.ndarray, eps, norm: str, clip=(0.0, 1.0),
               restarts: int = 6, steps: int = 60, seed: int = 0) -> np.ndarray:
    """For each input, the smallest margin ``f_y - max_j f_j`` found in its set (radius ``eps``, one or one per
    input) by signed (L-infinity) or normalised (L2) gradient steps from random starts, all inputs and
    restarts at once, evaluated in float64: <= 0 is a counterexample."""
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    center = torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(n, -1).repeat(restarts, 1)
    label = torch.as_tensor(np.asarray(labels)).repeat(restarts)
    radius = torch.as_tensor(np.broadcast_to(eps, (n,)).copy(), dtype=torch.float64).repeat(restarts).unsqueeze(1)
    point = center + radius * (2 * torch.rand(center.shape, generator=generator, dtype=torch.float64) - 1)
    best = torch.full((n * restarts,), np.inf, dtype=torch.float64)

    def margin(points):
        out = net.forward_flat(points)
        true = out.gather(1, label.unsqueeze(1)).squeeze(1)
        return true - out.scatter(1, label.unsqueeze(1), -np.inf).amax(1)

    for step in range(steps + 1):
        point = _project(center, point, radius, norm, clip).requires_grad_(True)
        value = margin(point)
        best = torch.minimum(best, value.detach())
        if step == steps:
            break
        grad, = torch.autograd.grad(value.sum(), point)
        with torch.no_grad():
            direction = grad.sign() if norm == "linf" else grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-30)
            point = point - radius * 0.3 * 0.95**step * direction
    return best.reshape(restarts, n).amin(0).numpy()


def _project(center, point, radius, norm, clip):
    delta = point.detach() - center
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, radius), -radius)
    else:
        delta = delta * torch.clamp(radius / delta.norm(dim=1, keepdim=True).clamp(min=1e-30), max=1.0)
    point = center + delta
    return point if clip is None else point.clamp(*clip)


def _double(path) -> verifier.Network:
    return verifier.load_onnx(path).to(torch.float64)


@pytest.mark.parametrize("model, norm, eps", [
    ("digits_mlp", "linf", 0.03),
    ("digits_cnn", "linf", 0.02),
    ("digits_mlp", "l2", 0.3),
    pytest.param("digits_orthogonal", "l2", 0.5, marks=pytest.mark.slow),
])
def test_certified_inputs_survive_an_independent_attack_and_methods_are_ordered(model, norm, eps):
    path = MODELS / f"{model}.onnx"
    x, labels = DATA["x"][:16], DATA["labels"][:16]
    # the complete verifier proves L2 balls on their enclosing box only: every method on every input is for
    # L-infinity; for L2 it runs on what the others leave open (the run with reuse, below)
    methods = "pgd,ibp,crown,alpha,lipschitz" + (",complete" if norm == "linf" else "")
    result = certify(path, x, labels, eps, norm=norm, methods=methods, timeout_per_input=0.3,
                     options=CertifyOptions(reuse=False, batch=10))
    net = _double(path)
    certified = {m: result.certified(m, eps) for m in result.methods}
    # soundness: no attack of ours breaks an input some deterministic method certified
    union = np.zeros(len(labels), dtype=bool)
    for method in DETERMINISTIC:
        union |= certified.get(method, union)
    found = own_attack(net, x, labels, eps, norm)
    assert (found[union] > 0).all(), f"inputs {np.flatnonzero(union & (found <= 0))} certified but attacked"
    # ordering, as sets (stronger than counts): ibp <= crown <= alpha <= pgd <= clean; complete <= pgd
    assert not (certified["ibp"] & ~certified["crown"]).any()
    assert not (certified["crown"] & ~certified["alpha"]).any()
    for method in DETERMINISTIC:
        if method in certified:
            assert not (certified[method] & ~certified["pgd"]).any(), method
    assert not (certified["pgd"] & ~certified["clean"]).any()
    assert result.extras["conflicts"] == 0
    # with reuse (the default) the columns are ordered by construction and agree with the runs above
    reused = certify(path, x, labels, eps, norm=norm, methods="pgd,ibp,crown,alpha,lipschitz,complete",
                     timeout_per_input=0.3)
    counts = [reused.certified(m, eps).sum() for m in ("ibp", "crown", "alpha", "complete", "pgd", "clean")]
    assert counts == sorted(counts)
    assert (reused.certified("complete", eps) >= certified["alpha"]).all()
    found = own_attack(net, x, labels, eps, norm)
    assert (found[reused.certified("complete", eps)] > 0).all()
    assert (reused.certified("complete", eps) >= certified["lipschitz"]).all()


def test_l2_ball_concretisation_is_tighter_than_the_box_and_sound():
    """CROWN with the dual norm at the input against CROWN on the enclosing box: never looser, and its bounds
    hold for points sampled in the ball (and on its sphere)."""
    net = verifier.load_onnx(MODELS / "digits_mlp.onnx").to(torch.float64)
    network = verifier.certification.model.prepare_model(net, DATA["x"][:1]).network
    entry = net.graph.input_name
    x = torch.as_tensor(DATA["x"][:16], dtype=torch.float64).reshape(16, 1, 64)
    labels = torch.as_tensor(DATA["labels"][:16])
    eps = torch.full((16,), 0.4, dtype=torch.float64)
    ball = lower_bounds(network, entry, PerturbationSet("l2", (0.0, 1.0)), x, labels, eps)
    box = lower_bounds(network, entry, PerturbationSet("linf", (0.0, 1.0)), x, labels, eps)
    assert (ball >= box - 1e-9).all()
    assert (ball > box + 1e-6).any()
    generator = torch.Generator().manual_seed(0)
    spec_rows = verifier.certification.balls.margin_spec(labels, 10, torch.float64)
    for i in range(16):
        direction = torch.randn(3000, 64, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True)
        radius = 0.4 * torch.cat([torch.ones(1500), torch.rand(1500, generator=generator) ** (1 / 64)]).double()
        points = (x[i, 0] + direction * radius.unsqueeze(1)).clamp(0, 1)
        values = net.forward_flat(points) @ spec_rows[i].T
        assert (values >= ball[i] - 1e-9).all()
    assert isinstance(BallConcretization(entry, x, eps), BallConcretization)


@pytest.mark.parametrize("seed", range(3))
def test_complete_column_equals_a_milp(seed, tmp_path):
    rng = np.random.default_rng(seed)
    layers = random_network(rng)
    while layers[-1][0].shape[0] < 2:
        layers = random_network(rng)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(to_onnx(layers))
    n_in = layers[0][0].shape[1]
    x = rng.uniform(-1, 1, size=(5, n_in)).astype(np.float32)
    net = verifier.load_onnx(path)
    labels = net.forward_flat(x).argmax(1).numpy()
    eps = 0.15
    result = certify(path, x, labels, eps, methods="complete", timeout_per_input=5, clip=None,
                     options=CertifyOptions(reuse=False))
    n_out = layers[-1][0].shape[0]
    for i in range(len(x)):
        lower, upper = x[i].astype(np.float64) - eps, x[i].astype(np.float64) + eps
        robust = True
        for j in range(n_out):
            if j != labels[i]:
                C = np.zeros((1, n_out))
                C[0, labels[i]], C[0, j] = 1.0, -1.0
                robust &= exact_min_violation(layers, lower, upper, C, np.zeros(1)) > 0
        status = result.rows[i][f"complete_status@{eps:g}"]
        assert status in ("certified", "falsified"), status
        assert (status == "certified") == robust, (i, status)


def test_radius_mode_is_ordered_and_its_radii_hold():
    path = MODELS / "digits_mlp.onnx"
    x, labels = DATA["x"][:12], DATA["labels"][:12]
    result = certify(path, x, labels, [0.02, 0.05], radius=True, methods="pgd,ibp,crown,alpha,lipschitz",
                     options=CertifyOptions(reuse=False))
    assert result.settings["radius_tol"] == pytest.approx(0.05 / 128)
    radius = {m: result.column(f"{m}_radius") for m in ("pgd", "ibp", "crown", "alpha", "lipschitz")}
    correct = result.column("correct").astype(bool)
    tol = result.settings["radius_tol"]
    for method in ("ibp", "crown", "alpha", "lipschitz"):
        assert (radius[method][correct] < radius["pgd"][correct]).all(), method
    assert (radius["crown"] >= radius["ibp"] - tol).all()
    assert (radius["alpha"] >= radius["crown"] - tol).all()
    assert (radius["alpha"] <= 0.05).all()
    net = _double(path)
    best = np.max([radius[m] for m in ("ibp", "crown", "alpha", "lipschitz")], axis=0)
    proved = correct & (best > 0)
    assert (own_attack(net, x[proved], labels[proved], best[proved], "linf") > 0).all()
    # the accuracy curve is read off the radii
    assert result.accuracy("crown", 0.02) == pytest.approx(float((correct & (radius["crown"] >= 0.02)).mean()))
    assert result.average_radius("crown") == pytest.approx(float(np.where(correct, radius["crown"], 0).mean()))


def test_normalisation_folded_in_gives_the_same_answers_as_inside_the_model():
    generator = torch.Generator().manual_seed(0)
    body = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
    with torch.no_grad():
        for layer in (body[0], body[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.3)

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body((x - 0.3) / 0.4)

    x, labels = DATA["x"][:8], DATA["labels"][:8]
    labels = body(torch.as_tensor((x - 0.3) / 0.4)).argmax(1).numpy()  # a random net: its own predictions
    methods = "ibp,crown,lipschitz,complete"
    inside = certify(Normalised(), x, labels, [0.002, 0.01], methods=methods, timeout_per_input=2)
    folded = certify(body, x, labels, [0.002, 0.01], methods=methods, mean=[0.3], std=[0.4], timeout_per_input=2)
    assert set(folded.column("complete_status@0.01")) <= {"certified", "falsified", "misclassified"}
    for method in ("ibp", "crown", "complete"):
        for eps in (0.002, 0.01):
            assert (inside.certified(method, eps) == folded.certified(method, eps)).all(), (method, eps)
    assert np.allclose(inside.column("lipschitz_radius"), folded.column("lipschitz_radius"), rtol=1e-4)


def test_resume_after_a_kill_repeats_nothing_and_loses_nothing(tmp_path):
    path = MODELS / "digits_mlp.onnx"
    x, labels = DATA["x"][:10], DATA["labels"][:10]
    kwargs = dict(methods="pgd,ibp,crown,lipschitz", options=CertifyOptions(batch=4))
    full = certify(path, x, labels, [0.01, 0.03], out=tmp_path / "full", **kwargs)
    out = tmp_path / "killed"
    certify(path, x, labels, [0.01, 0.03], out=out, **kwargs)
    text = (out / "certify.csv").read_text()
    lines = text.splitlines(keepends=True)
    # a kill after the first batch, in the middle of writing the second
    (out / "certify.csv").write_text("".join(lines[:5]) + lines[5][:17])
    resumed = certify(path, x, labels, [0.01, 0.03], out=out, resume=True, **kwargs)
    with open(out / "certify.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["index"]) for r in rows] == list(range(10))
    keep = [f for f in full.fields if not f.endswith("_time_s")]
    assert [{k: r[k] for k in keep} for r in resumed.rows] == [{k: r[k] for k in keep} for r in full.rows]
    with pytest.raises(verifier.VerifierError, match="--resume"):
        certify(path, x, labels, [0.01, 0.03], out=out, **kwargs)
    with pytest.raises(verifier.VerifierError, match="settings changed"):
        certify(path, x, labels, [0.01, 0.05], out=out, resume=True, **kwargs)


def test_prepared_network_computes_the_model_on_raw_inputs():
    """Normalisation folded in and convolutions made dense: the same function as onnxruntime on the file."""
    from tests.netutil import run_onnxruntime
    from verifier.certification.model import prepare_model

    path = MODELS / "digits_cnn.onnx"
    x = DATA["x"][:5].reshape(5, 1, 1, 8, 8)
    prepared = prepare_model(path, x[:1], mean=[0.1], std=[0.5])
    assert any(n.name.endswith("certify_dense") for n in prepared.network.graph.nodes)
    ours = prepared.network.forward(x).detach().numpy().reshape(5, -1)
    for i in range(5):
        expected = run_onnxruntime(path, ((x[i] - 0.1) / 0.5).astype(np.float32)).reshape(-1)
        assert np.allclose(ours[i], expected, rtol=1e-4, atol=1e-4)


def test_torch_module_and_device_argument():
    module = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    x = DATA["x"][:8]
    labels = module(torch.as_tensor(x)).argmax(1).numpy()
    result = verifier.certify(module, x, labels, 0.001, methods="ibp,crown", device="cpu")
    assert result.accuracy("clean", 0.001) == 1.0
    assert result.accuracy("crown", 0.001) >= result.accuracy("ibp", 0.001) > 0
    assert "crown" in result.table() and len(result) == 8
