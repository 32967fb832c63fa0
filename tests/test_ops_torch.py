"""End to end: torch models mixing the new operators, through ``verifier.from_torch`` and through an ONNX
export (``torch.onnx.export(..., dynamo=False)``), bounded by IBP and CROWN and checked by sampling and PGD,
and verified by ``verifier.verify`` (which branches on the input for these networks without ReLUs).
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from operator_checks import assert_sound, check_parity
from torch import nn

import verifier


class MixedCNN(nn.Module):
    """Conv, LeakyReLU, MaxPool (kernel 3 != stride 2, padding 1), ConvTranspose, Tanh, AvgPool, GELU,
    Sin, Clip, a product of two variables, Abs, Softplus, Pad, Concat, slicing and a Softmax output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.avg = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(2 * 3 * 3 + 4, 8)
        self.gelu = nn.GELU()
        self.fc2 = nn.Linear(16, 5)
        self.soft = nn.Softmax(dim=-1)

    def forward(self, x):
        h = self.act(self.conv(x))  # [1, 4, 6, 6]
        p = self.pool(h)  # [1, 4, 3, 3]
        a = torch.tanh(self.up(p))  # [1, 2, 6, 6]
        a = self.avg(F.pad(a, (0, 0, 0, 0), value=0.0))  # [1, 2, 3, 3]
        corner = p[:, :, 0, 0]  # [1, 4]
        f = torch.cat([torch.flatten(a, 1), torch.abs(corner)], dim=1)
        g = self.gelu(self.fc1(f))  # [1, 8]
        z = torch.cat([torch.sin(g), torch.clamp(g, -1.0, 1.0) * F.softplus(g)], dim=1)  # [1, 16]
        return self.soft(self.fc2(z))


class MixedMLP(nn.Module):
    """Exp, Log, Sqrt, square, division of two variables, maximum of two variables, Hardtanh, ReLU6."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 6)
        self.fc3 = nn.Linear(12, 3)
        self.hard = nn.Hardtanh(-0.5, 0.5)
        self.relu6 = nn.ReLU6()

    def forward(self, x):
        h = self.fc1(x)
        k = self.fc2(torch.sigmoid(h))
        positive = torch.exp(0.5 * k) + 0.1
        q = torch.log(positive) + torch.sqrt(positive) - h * h / (positive + 1.0)
        m = torch.maximum(self.hard(h), self.relu6(k))
        return self.fc3(torch.cat([q, m], dim=1))


class AttentionBlock(nn.Module):
    """Self-attention over 4 tokens of width 6 (transpose, two products of variables, softmax), a GELU MLP,
    residual additions, unsqueeze/squeeze and a mean over tokens."""

    def __init__(self, tokens: int = 4, width: int = 6):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.mlp = nn.Sequential(nn.Linear(width, 8), nn.GELU(), nn.Linear(8, width))
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        scores = torch.matmul(self.q(x), self.k(x).transpose(1, 2)) / 2.0
        h = x + torch.matmul(torch.softmax(scores, dim=-1), self.v(x))
        h = (h + self.mlp(h)).unsqueeze(1).squeeze(1)
        return self.head(h.mean(dim=1))


def _boxes(shape, count, radius, seed):
    g = torch.Generator().manual_seed(seed)
    center = torch.rand(count, *shape, generator=g)
    return center - radius, center + radius


@pytest.mark.parametrize("cls,shape", [(MixedCNN, (1, 1, 6, 6)), (MixedMLP, (1, 4)), (AttentionBlock, (1, 4, 6))])
def test_from_torch_bounds_are_sound(cls, shape):
    torch.manual_seed(0)
    model = cls().eval()
    net = verifier.from_torch(model, torch.rand(*shape))
    x = torch.rand(3, *shape[1:])
    with torch.no_grad():
        assert torch.allclose(net.forward_flat(x.reshape(3, *shape)), model(x).reshape(3, -1), atol=1e-5)
    for seed, radius in enumerate((0.01, 0.1)):
        lower, upper = _boxes(shape, 3, radius, seed)
        results = assert_sound(net, lower, upper)
    crown, ibp = results["crown"], results["ibp"]
    assert (crown.upper - crown.lower).mean() <= (ibp.upper - ibp.lower).mean() + 1e-6


@pytest.mark.parametrize("cls,shape", [(MixedCNN, (1, 1, 6, 6)), (MixedMLP, (1, 4)), (AttentionBlock, (1, 4, 6))])
def test_onnx_export_loads_and_is_sound(cls, shape):
    torch.manual_seed(0)
    model = cls().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.rand(*shape), buffer, dynamo=False, opset_version=17,
                          input_names=["X"], output_names=["Y"])
    net = check_parity(buffer.getvalue(), 0, 1, rtol=1e-4)
    if cls is not MixedMLP:  # the exported Erf pattern of GELU is fused into one operator
        assert "Gelu" in [type(n.op).__name__ for n in net.graph.nodes]
    lower, upper = _boxes(shape, 3, 0.05, 0)
    assert_sound(net, lower, upper)


@pytest.mark.parametrize("cls,shape", [(MixedCNN, (1, 1, 6, 6)), (MixedMLP, (1, 4)), (AttentionBlock, (1, 4, 6))])
def test_verify_end_to_end(cls, shape):
    """Properties "output 0 >= t" on a box: t above the CROWN bound is unsat, t below a sampled value is sat
    (with a witness the torch model confirms), and t in between must never be contradicted by sampling."""
    import numpy as np

    from verifier.spec.specification import Case, Specification

    torch.manual_seed(0)
    model = cls().eval()
    net = verifier.from_torch(model, torch.rand(*shape))
    lower, upper = _boxes(shape, 1, 0.05, 3)
    samples = lower[0] + (upper[0] - lower[0]) * torch.rand(4000, *shape[1:])
    with torch.no_grad():
        outputs = model(samples).reshape(4000, -1)[:, 0]
    bound = net.bounds(lower, upper).upper[0, 0].item()
    C = -np.eye(net.output_size)[:1]                       # -y_0 <= -t  <=>  y_0 >= t
    lo, hi = lower.reshape(-1).double().numpy(), upper.reshape(-1).double().numpy()

    def decide(threshold: float, timeout: float = 20):
        spec = Specification(net.input_size, net.output_size, (Case(lo, hi, C, np.array([-threshold])),))
        return verifier.verify(net, spec, timeout=timeout)

    def confirmed(result, threshold: float) -> bool:
        with torch.no_grad():
            x = torch.as_tensor(result.counterexample.x, dtype=torch.float32).reshape(shape)
            return model(x).reshape(-1)[0].item() >= threshold - 1e-5

    assert decide(bound + 0.01).status == "unsat"
    below = outputs.max().item() - 1e-3
    sat = decide(below)
    assert sat.status == "sat" and confirmed(sat, below)
    middle_threshold = (outputs.max().item() + bound) / 2
    # undecided by sampling: any answer (a timeout too), but a sat must be confirmed
    middle = decide(middle_threshold, timeout=5)
    assert middle.status != "sat" or confirmed(middle, middle_threshold)
