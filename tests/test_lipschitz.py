"""Lipschitz bounds of logit differences: checked against true constants (linear networks, orthogonal networks
with norm-preserving activations), gradients and dense sampling, exact convolution norms, and the shipped
orthogonal model's certified radii against sampling and an attack."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import verifier
from tests.conftest import MODELS
from verifier.lipschitz import LipschitzError, conv_spectral_bound, lipschitz_bounds
from verifier.lipschitz.operator_norms import chain_jacobian
from verifier.ops.conv import Conv


def _net(module: nn.Module, n_in: int) -> verifier.Network:
    return verifier.from_torch(module.double(), torch.zeros(1, n_in, dtype=torch.float64))


def _pairs(n: int):
    return [(y, j) for y in range(n) for j in range(n) if y != j]


def _orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


@pytest.mark.parametrize("limit", [1 << 22, 0])
def test_linear_network_constant_is_the_true_one(limit):
    generator = torch.Generator().manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 9), nn.Linear(9, 4)).double()
    with torch.no_grad():
        for layer in module:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
    net = _net(module, 6)
    product = (module[1].weight @ module[0].weight).detach().double()      # the map's exact Jacobian
    for norm, dual in (("l2", 2), ("linf", 1)):
        matrix = lipschitz_bounds(net, norm, materialize_limit=limit).matrix
        for y, j in _pairs(4):
            true = torch.linalg.vector_norm(product[y] - product[j], ord=dual).item()
            assert matrix[y, j] >= true * (1 - 1e-12)
            if limit:  # materialised chain: exact (up to the relative margin)
                assert matrix[y, j] == pytest.approx(true, rel=1e-8)
            else:      # product of layer norms: an upper bound, within the norms' product
                assert matrix[y, j] <= torch.linalg.matrix_norm(module[0].weight.double(), 2).item() * \
                    torch.linalg.vector_norm(module[1].weight[y] - module[1].weight[j], 2).item() * 8 * (1 + 1e-8)


def test_orthogonal_network_with_norm_preserving_activations_is_exact():
    """Orthogonal layers with |x| activations: the gradient of f_y - f_j has norm ||w_y - w_j|| everywhere,
    so the true constant is the product bound itself, which the layer-by-layer path must reach."""
    generator = torch.Generator().manual_seed(1)
    n = 12
    module = nn.Sequential(nn.Linear(n, n), AbsModule(), nn.Linear(n, n), AbsModule(), nn.Linear(n, 5)).double()
    with torch.no_grad():
        module[0].weight.copy_(_orthogonal(n, generator))
        module[2].weight.copy_(_orthogonal(n, generator))
        module[4].weight.copy_(torch.randn(5, n, generator=generator))
    net = _net(module, n)
    matrix = lipschitz_bounds(net, "l2", materialize_limit=0).matrix
    w = module[4].weight.detach()
    x = torch.randn(50, n, generator=generator, dtype=torch.float64, requires_grad=True)
    out = module(x)
    for y, j in _pairs(5):
        expected = torch.linalg.vector_norm(w[y] - w[j]).item()
        assert matrix[y, j] == pytest.approx(expected, rel=1e-8)
        grad, = torch.autograd.grad((out[:, y] - out[:, j]).sum(), x, retain_graph=True)
        assert torch.allclose(grad.norm(dim=1), torch.full((50,), expected, dtype=torch.float64), rtol=1e-9)


class AbsModule(nn.Module):
    def forward(self, x):
        return torch.abs(x)


def test_relu_and_residual_network_bounds_hold_on_dense_samples():
    generator = torch.Generator().manual_seed(2)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 16)
            self.b = nn.Linear(16, 16)
            self.c = nn.Linear(16, 4)

        def forward(self, x):
            h = torch.relu(self.a(x))
            h = h + torch.tanh(self.b(h))
            return self.c(torch.sigmoid(h))

    module = Residual().double()
    net = _net(module, 3)
    for norm, p in (("l2", 2), ("linf", math.inf)):
        matrix = lipschitz_bounds(net, norm).matrix
        x = torch.rand(4000, 3, generator=generator, dtype=torch.float64) * 4 - 2
        x2 = x + (torch.rand(4000, 3, generator=generator, dtype=torch.float64) - 0.5) * 0.2
        with torch.no_grad():
            out, out2 = module(x), module(x2)
        distance = torch.linalg.vector_norm(x - x2, ord=p, dim=1)
        x_grad = x.clone().requires_grad_(True)
        outputs = module(x_grad)
        for y, j in _pairs(4):
            change = ((out[:, y] - out[:, j]) - (out2[:, y] - out2[:, j])).abs()
            assert (change <= matrix[y, j] * distance + 1e-12).all()
            grad, = torch.autograd.grad((outputs[:, y] - outputs[:, j]).sum(), x_grad, retain_graph=True)
            dual = 2 if p == 2 else 1
            assert (torch.linalg.vector_norm(grad, ord=dual, dim=1) <= matrix[y, j] * (1 + 1e-9)).all()


@pytest.mark.parametrize("case", [
    dict(cin=3, cout=8, k=3, stride=1, pad=1, n=10, dilation=1, groups=1),
    dict(cin=4, cout=6, k=3, stride=2, pad=1, n=9, dilation=1, groups=2),
    dict(cin=2, cout=5, k=5, stride=1, pad=0, n=12, dilation=2, groups=1),
    dict(cin=3, cout=4, k=3, stride=1, pad=2, n=7, dilation=1, groups=1),
])
def test_convolution_bound_is_above_the_exact_norm(case):
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(case["cout"], case["cin"] // case["groups"], case["k"], case["k"], generator=generator,
                         dtype=torch.float64)
    shape = (1, case["cin"], case["n"], case["n"])
    op = Conv(weight, None, (case["stride"],) * 2, [(case["pad"], case["pad"])] * 2, (case["dilation"],) * 2,
              case["groups"], shape)
    exact = torch.linalg.matrix_norm(chain_jacobian([op], shape, torch.device("cpu")), ord=2).item()
    bound = conv_spectral_bound(op)
    assert exact <= bound <= 3 * exact


def test_convolution_bound_is_exact_for_pointwise_convolutions():
    """A 1x1 convolution is the channel matrix applied at every pixel: its norm is that matrix's."""
    weight = torch.randn(5, 3, 1, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    op = Conv(weight, None, (1, 1), [(0, 0), (0, 0)], (1, 1), 1, (1, 3, 6, 6))
    expected = torch.linalg.matrix_norm(weight[:, :, 0, 0], ord=2).item()
    assert conv_spectral_bound(op) == pytest.approx(expected, rel=1e-8)


def test_large_convolution_uses_its_structural_bound():
    """Above the materialisation limit the conv is bounded by the circular embedding, still above the truth."""
    generator = torch.Generator().manual_seed(5)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    net = verifier.from_torch(module.double(), torch.zeros(1, 1, 8, 8, dtype=torch.float64))
    exact = lipschitz_bounds(net, "l2").matrix
    structural = lipschitz_bounds(net, "l2", materialize_limit=0).matrix
    assert (structural >= exact * (1 - 1e-12)).all()
    x = torch.rand(500, 1, 1, 8, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    out = net.forward(x.reshape(500, 1, 1, 8, 8)).reshape(500, -1)
    for y, j in _pairs(3):
        grad, = torch.autograd.grad((out[:, y] - out[:, j]).sum(), x, retain_graph=True)
        assert (grad.flatten(1).norm(dim=1) <= exact[y, j] * (1 + 1e-9)).all()


def test_operator_without_a_global_bound_is_named():
    class Exp(nn.Module):
        def forward(self, x):
            return torch.exp(x)

    net = _net(nn.Sequential(nn.Linear(3, 4), Exp(), nn.Linear(4, 2)), 3)
    with pytest.raises(LipschitzError, match="'Exp'"):
        lipschitz_bounds(net, "l2")


def test_shipped_orthogonal_model_has_the_constant_sqrt2_and_sound_radii():
    net = verifier.load_onnx(MODELS / "digits_orthogonal.onnx")
    bounds = lipschitz_bounds(net, "l2")
    off = bounds.matrix[~np.eye(10, dtype=bool)]
    # orthonormal rows: ||w_y - w_j|| = sqrt(2) for every pair, and every other layer has norm 1
    assert off == pytest.approx(math.sqrt(2), rel=1e-6)
    data = np.load(MODELS / "digits_test.npz")
    x, labels = data["x"][:20].astype(np.float64), data["labels"][:20]
    wide = verifier.load_onnx(MODELS / "digits_orthogonal.onnx").to(torch.float64)
    logits = wide.forward_flat(x).detach().numpy()
    radius = bounds.radius(logits, labels, slack=1e-9)
    assert (radius > 0.1).mean() > 0.8
    generator = torch.Generator().manual_seed(6)
    for i in np.flatnonzero(radius > 0):
        # dense sampling: inside the ball and on its sphere the class does not change
        direction = torch.randn(2000, 64, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True)
        scale = torch.cat([torch.ones(1000), torch.rand(1000, generator=generator)]).double().unsqueeze(1)
        points = torch.as_tensor(x[i]) + direction * scale * radius[i]
        assert (wide.forward_flat(points).argmax(1) == int(labels[i])).all()
        # an L2 attack of our own on the worst class, at the certified radius
        point = torch.as_tensor(x[i]).clone()
        target = int(np.argsort(-logits[i])[1] if np.argmax(logits[i]) == labels[i] else np.argmax(logits[i]))
        for _ in range(60):
            point.requires_grad_(True)
            out = wide.forward_flat(point.unsqueeze(0))[0]
            grad, = torch.autograd.grad(out[int(labels[i])] - out[target], point)
            with torch.no_grad():
                point = point - 0.05 * radius[i] * grad / grad.norm()
                delta = point - torch.as_tensor(x[i])
                point = torch.as_tensor(x[i]) + delta * min(1.0, radius[i] / float(delta.norm()))
        assert int(wide.forward_flat(point.unsqueeze(0)).argmax()) == int(labels[i])
