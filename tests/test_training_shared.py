"""Networks that share a torch module's parameters (``from_torch(..., share_parameters=True)``): same bounds
as the copied network, gradients that reach the module (checked by finite differences with ``gradcheck`` in
float64), optimiser steps seen by the next bound, clear errors where sharing cannot work."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import verifier
from verifier.errors import ModelLoadError, VerifierError
from verifier.training import certified_loss, margin_spec
from verifier.training.bounds import margin_lower_bounds


class Residual(nn.Module):
    """Conv + BatchNorm + ReLU, a residual block, a dense head: every shared operator kind."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.fc1 = nn.Linear(3 * 4 * 4, 6)
        self.bn2 = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 4)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = h + torch.relu(self.conv2(h))
        return self.fc2(torch.relu(self.bn2(self.fc1(h.flatten(1)))))


def residual_model(dtype=torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = Residual().to(dtype)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            model(torch.rand(16, 1, 4, 4, dtype=dtype))
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_shared_network_holds_the_parameters_and_folds_batchnorm():
    model = residual_model()
    network = verifier.from_torch(model, torch.zeros(1, 1, 4, 4, dtype=torch.float64), share_parameters=True)
    held = {id(t) for node in network.graph.nodes for t in node.op.constants().values()}
    for name, parameter in model.named_parameters():
        if not name.startswith("bn"):
            assert id(parameter) in held, name  # the very tensor, no copy
    assert not any("BatchNorm" in node.op.describe() for node in network.graph.nodes)  # both folded
    assert all(parameter.requires_grad for parameter in model.parameters())


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_shared_bounds_equal_copied_bounds(method):
    model = residual_model(torch.float32)
    example = torch.zeros(1, 1, 4, 4)
    copied = verifier.from_torch(model, example)
    shared = verifier.from_torch(model, example, share_parameters=True)
    x = torch.rand(5, 1, 1, 4, 4)
    C = torch.randn(5, 3, 4)
    a = copied.bounds(x - 0.05, x + 0.05, method=method, C=C)
    b = shared.bounds(x - 0.05, x + 0.05, method=method, C=C)
    torch.testing.assert_close(b.lower, a.lower, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.upper, a.upper, rtol=1e-5, atol=1e-5)


def test_optimizer_step_is_seen_by_the_shared_network_only():
    model = residual_model(torch.float32)
    example = torch.zeros(1, 1, 4, 4)
    copied = verifier.from_torch(model, example)
    shared = verifier.from_torch(model, example, share_parameters=True)
    x = torch.rand(4, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 3])
    box = (x.reshape(4, 16) - 0.05, x.reshape(4, 16) + 0.05)
    before = copied.bounds(*box, method="ibp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    certified_loss(shared, x, y, 0.05).backward()
    optimizer.step()
    after_shared = shared.bounds(*box, method="ibp")
    after_copy = verifier.from_torch(model, example).bounds(*box, method="ibp")
    torch.testing.assert_close(copied.bounds(*box, method="ibp").lower, before.lower)
    torch.testing.assert_close(after_shared.lower, after_copy.lower, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after_shared.lower, before.lower)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_bounds_gradcheck_in_float64(method):
    """d(margin lower bounds)/d(parameters) by autograd equals finite differences (every parameter, BatchNorm's
    included, through folding, the residual add, the fused kernels' autograd rules and the ReLU step)."""
    model = residual_model()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, 3])
    network = verifier.from_torch(model, x[:1], share_parameters=True)
    lower, upper = (x - 0.05).reshape(2, 1, 1, 4, 4), (x + 0.05).reshape(2, 1, 1, 4, 4)
    spec = margin_spec(y, 4, dtype=torch.float64)
    parameters = tuple(model.parameters())

    def bounds(*_):  # gradcheck perturbs the parameters in place; the network reads them live
        return margin_lower_bounds(network.graph, lower, upper, spec, method, beta=0.6).lower

    assert torch.autograd.gradcheck(bounds, parameters, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_copied_and_onnx_networks_stay_constant():
    model = residual_model(torch.float32)
    copied = verifier.from_torch(model, torch.zeros(1, 1, 4, 4))
    assert not any(t.requires_grad for node in copied.graph.nodes for t in node.op.constants().values())
    onnx_net = verifier.load_onnx("models/digits_cnn.onnx")
    assert not any(t.requires_grad for node in onnx_net.graph.nodes for t in node.op.constants().values())


def test_shared_network_refuses_to_copy_its_parameters():
    model = residual_model(torch.float32)
    network = verifier.from_torch(model, torch.zeros(1, 1, 4, 4), share_parameters=True)
    with pytest.raises(VerifierError, match="shares the parameters"):
        network.to(torch.float64)
    network.to(torch.float32)  # nothing to change: fine
    with pytest.raises(ModelLoadError, match="cast the module"):
        verifier.from_torch(model, torch.zeros(1, 1, 4, 4), dtype=torch.float64, share_parameters=True)


def test_module_cast_after_sharing_is_followed():
    """``module.double()`` keeps the parameter objects, so the shared network computes in float64 after it."""
    model = residual_model(torch.float32)
    network = verifier.from_torch(model, torch.zeros(1, 1, 4, 4), share_parameters=True)
    model.double()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    out = network.graph.forward(x.reshape(2, 1, 1, 4, 4))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.reshape(2, 4), model(x), rtol=1e-10, atol=1e-10)


def test_unshareable_parameters_are_named():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.scale = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return self.fc(x) * self.scale

    with pytest.raises(ModelLoadError, match="'scale'"):
        verifier.from_torch(Scaled(), torch.zeros(1, 4), share_parameters=True)
    verifier.from_torch(Scaled(), torch.zeros(1, 4))  # copying still works


def test_frozen_layers_get_no_gradient():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    loss = certified_loss(model, torch.rand(3, 4), torch.tensor([0, 1, 1]), 0.1, method="crown-ibp")
    loss.backward()
    assert model[0].weight.grad is None and model[2].weight.grad is not None
