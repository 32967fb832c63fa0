"""Make the randomized-smoothing demo networks shipped in models/ (deterministic: fixed seeds, one thread).

    python models/make_smoothing_models.py      # rewrites the files below, next to this script

Base classifiers trained with Gaussian noise augmentation (``verifier.smoothing.train.train_with_noise``)
on scikit-learn's 8x8 digits (pixels in [0, 1], the split of make_models.py), one per noise level, since
a smoothed classifier must be certified at the sigma its base model was trained at:

  digits_smooth_mlp_sigma0.25.onnx   MLP 64 -> 128 -> 128 -> 10, noise sigma 0.25
  digits_smooth_mlp_sigma0.5.onnx    the same architecture, noise sigma 0.5
  digits_smooth_cnn_sigma0.25.onnx   CNN (Conv 1->16, Conv 16->32 stride 2, Linear), noise sigma 0.25
  digits_test.npz                    the 360 held-out test digits: ``x`` [360, 64] float32, ``labels`` [360]

Use: ``verifier smooth models/digits_smooth_mlp_sigma0.25.onnx models/digits_test.npz --sigma 0.25``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from make_models import export, load_digits  # noqa: E402

from verifier.smoothing.train import noisy_accuracy, train_with_noise  # noqa: E402


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


def main() -> int:
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_digits()
    np.savez(HERE / "digits_test.npz", x=x_test.numpy().astype(np.float32), labels=y_test.numpy().astype(np.int64))
    runs = [("digits_smooth_mlp", mlp, (64,), 0.25), ("digits_smooth_mlp", mlp, (64,), 0.5),
            ("digits_smooth_cnn", cnn, (1, 8, 8), 0.25)]
    for seed, (name, make, shape, sigma) in enumerate(runs):
        torch.manual_seed(seed)
        model = make()
        train_with_noise(model, x_train.reshape(-1, *shape), y_train, sigma, epochs=200, lr=1e-3, seed=seed)
        clean = (model(x_test.reshape(-1, *shape)).argmax(1) == y_test).float().mean().item()
        noisy = noisy_accuracy(model, x_test.reshape(-1, *shape), y_test, sigma)
        print(f"{name}_sigma{sigma}: test accuracy {clean:.3f} clean, {noisy:.3f} under noise sigma {sigma}")
        export(model, torch.zeros(1, *shape), HERE / f"{name}_sigma{sigma}.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
