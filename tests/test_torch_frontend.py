"""verifier.from_torch: torch modules built from supported layers convert, run and bound like the module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import verifier


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 2, 3, padding=1)
        self.head = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv1(x)))
        h = x + self.conv2(h)                  # residual connection
        h = torch.sigmoid(h) * 2.0 - 1.0
        return self.head(h.view(h.size(0), -1))


def _randomize_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)


@pytest.mark.parametrize("model,shape", [
    (nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)), (1, 3, 4)),
    (nn.Sequential(nn.Conv1d(2, 3, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4, 2)), (1, 2, 9)),
    (Residual(), (1, 2, 6, 6)),
])
def test_torch_module_converts_and_bounds_soundly(model, shape):
    torch.manual_seed(0)
    _randomize_batchnorm(model)
    model.eval()
    example = torch.zeros(shape)
    network = verifier.from_torch(model, example)
    x = torch.randn(4, *shape[1:]).unsqueeze(1)  # four inputs of shape `shape`
    with torch.no_grad():
        expected = torch.cat([model(x[i]) for i in range(4)])
    torch.testing.assert_close(network.forward(x).reshape(4, -1), expected.reshape(4, -1), rtol=1e-5, atol=1e-5)
    bounds = network.bounds(x - 0.05, x + 0.05)
    noise = x.repeat_interleave(500, 0) + 0.05 * (2 * torch.rand(2000, *shape) - 1)
    with torch.no_grad():
        y = model(noise.reshape(-1, *shape[1:])).reshape(4, 500, -1)
    assert (y >= bounds.lower.unsqueeze(1) - 1e-5).all() and (y <= bounds.upper.unsqueeze(1) + 1e-5).all()


def test_batchnorm_folded_in_torch_front_end():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
    _randomize_batchnorm(model)
    network = verifier.from_torch(model, torch.zeros(1, 1, 5, 5))
    assert [n.op.op_type for n in network.graph.nodes] == ["Conv", "Relu"]


def test_unsupported_torch_layer_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Softsign())
    with pytest.raises(verifier.UnsupportedOperatorError, match="Softsign"):
        verifier.from_torch(model, torch.zeros(1, 4))
