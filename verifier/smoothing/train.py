"""Training base classifiers for smoothing: Gaussian noise augmentation (Cohen et al. 2019, Sec. 4).

A smoothed classifier is only as good as its base classifier's accuracy *under noise*, so the base
model is trained on ``x + eps``, ``eps ~ N(0, sigma^2 I)``, at the sigma that will be used to certify.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from verifier.errors import ShapeError
from verifier.smoothing.checks import check_positive_int, check_sigma


def train_with_noise(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    sigma: float,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Train ``model`` by cross-entropy on Gaussian-augmented inputs; returns it in eval mode.

    ``x``: ``[N, *input_shape]`` training inputs, ``y``: ``[N]`` class indices. Each minibatch gets fresh
    noise of standard deviation ``sigma`` (Adam, learning rate ``lr``). ``seed`` fixes the shuffling
    and the noise, so the same call gives the same weights (on one thread).
    """
    sigma = check_sigma(sigma)
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if x.shape[0] != y.shape[0]:
        raise ShapeError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch_size):
            noisy = x[index] + sigma * torch.randn(x[index].shape, generator=generator, dtype=x.dtype)
            loss = nn.functional.cross_entropy(model(noisy), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def noisy_accuracy(model: nn.Module, x: Tensor, y: Tensor, sigma: float, samples: int = 10, seed: int = 0) -> float:
    """Accuracy of the base classifier on ``samples`` noisy copies of each input (a quick sanity figure)."""
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    with torch.no_grad():
        for _ in range(samples):
            noisy = x + check_sigma(sigma) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
            correct += int((model(noisy).argmax(1) == y).sum())
    return correct / (samples * len(x))
