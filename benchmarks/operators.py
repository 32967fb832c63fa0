"""IBP and CROWN on networks built from the newer operators: median time per call and mean bound width.

    python benchmarks/operators.py [--networks NAME ...] [--batch B]

The networks are made here with fixed seeds (random weights, no training), exported to ONNX with
``torch.onnx.export(..., dynamo=False)`` and read back with ``verifier.load_onnx``, so the whole path
(export patterns such as GELU's Erf form, Softmax, MaxPool with kernel != stride) is exercised. Each is
bounded over B boxes (default 1) of two radii around uniform random inputs in [0, 1].
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import math
import warnings

import torch
import torch.nn.functional as F
from common import median_time
from torch import nn

import verifier


class MLP(nn.Module):
    def __init__(self, act: nn.Module, width: int = 64, inputs: int = 16, outputs: int = 10, softmax=False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, width), act, nn.Linear(width, width), act,
                                  nn.Linear(width, outputs))
        self.softmax = softmax

    def forward(self, x):
        y = self.body(x)
        return torch.softmax(y, -1) if self.softmax else y


class Sin(nn.Module):
    def forward(self, x):
        return torch.sin(x)


class GatedMLP(nn.Module):
    """A GLU-style block: sigmoid(W1 x) * tanh(W2 x) (a product of two variables), then a dense layer."""

    def __init__(self, inputs: int = 16, width: int = 64, outputs: int = 10):
        super().__init__()
        self.gate, self.value, self.out = nn.Linear(inputs, width), nn.Linear(inputs, width), nn.Linear(width, outputs)

    def forward(self, x):
        return self.out(torch.sigmoid(self.gate(x)) * torch.tanh(self.value(x)))


class MaxPoolCNN(nn.Module):
    """Conv/ReLU/MaxPool(3, stride 2, padding 1) twice: overlapping windows (kernel != stride)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class AvgPoolCNN(nn.Module):
    """Conv, LeakyReLU, AvgPool, Conv, ReLU6, global average pooling."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class UpsamplingCNN(nn.Module):
    """Strided Conv, ReLU, ConvTranspose back up, Tanh, dense head."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 8, 4, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 2, 4, stride=2, padding=1)
        self.fc = nn.Linear(2 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.tanh(self.up(F.relu(self.down(x)))), 1))


class Attention(nn.Module):
    """One self-attention head with a GELU feed-forward block over 6 tokens of width 8."""

    def __init__(self, tokens: int = 6, width: int = 8):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(width, width) for _ in range(3))
        self.ff = nn.Sequential(nn.Linear(width, 16), nn.GELU(), nn.Linear(16, width))
        self.head = nn.Linear(tokens * width, 3)
        self.scale = 1 / math.sqrt(width)

    def forward(self, x):
        attention = torch.softmax(torch.matmul(self.q(x), self.k(x).transpose(1, 2)) * self.scale, -1)
        h = x + torch.matmul(attention, self.v(x))
        h = h + self.ff(h)
        return self.head(torch.flatten(h, 1))


NETWORKS = {
    "mlp_gelu": (lambda: MLP(nn.GELU()), (1, 16)),
    "mlp_softplus": (lambda: MLP(nn.Softplus()), (1, 16)),
    "mlp_sin": (lambda: MLP(Sin()), (1, 16)),
    "mlp_softmax_out": (lambda: MLP(nn.ReLU(), softmax=True), (1, 16)),
    "gated_mlp": (GatedMLP, (1, 16)),
    "cnn_maxpool_k3s2": (MaxPoolCNN, (1, 1, 16, 16)),
    "cnn_avgpool_leaky": (AvgPoolCNN, (1, 1, 16, 16)),
    "cnn_convtranspose": (UpsamplingCNN, (1, 1, 16, 16)),
    "attention_gelu": (Attention, (1, 6, 8)),
}


def build(name: str) -> verifier.Network:
    """The network ``name`` made with seed 0, exported to ONNX and loaded back."""
    factory, shape = NETWORKS[name]
    torch.manual_seed(0)
    module = factory().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.rand(*shape), buffer, dynamo=False, opset_version=17)
    return verifier.load_onnx(buffer.getvalue())


def measure(network: verifier.Network, lower: torch.Tensor, upper: torch.Tensor, method: str) -> tuple[float, float]:
    """Median time of one ``bounds`` call and the mean width of the bounds it returns."""
    result = []
    seconds = median_time(lambda: result.append(network.bounds(lower, upper, method)), repeats=3)
    return seconds, (result[-1].upper - result[-1].lower).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--radii", nargs="*", type=float, default=[0.001, 0.01])
    args = parser.parse_args()
    verifier.set_threads(1)
    print(f"{'network':20s} {'radius':>7s} {'ibp ms':>9s} {'crown ms':>9s} {'ibp width':>11s} {'crown width':>12s}")
    for name in args.networks:
        network = build(name)
        generator = torch.Generator().manual_seed(0)
        center = torch.rand(args.batch, *network.input_shape, generator=generator)
        for radius in args.radii:
            times, width = {}, {}
            for method in ("ibp", "crown"):
                times[method], width[method] = measure(network, center - radius, center + radius, method)
            print(f"{name:20s} {radius:7g} {1e3 * times['ibp']:9.2f} {1e3 * times['crown']:9.1f} "
                  f"{width['ibp']:11.4g} {width['crown']:12.4g}")


if __name__ == "__main__":
    main()
