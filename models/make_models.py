"""Make the example networks and properties shipped in models/ (deterministic: fixed seeds, one thread).

    python models/make_models.py            # rewrites every file next to this script

Networks:
  acasxu_like.onnx  ACAS-Xu-shaped MLP (5 -> 6x50 ReLU -> 5) with input normalisation (Sub, Div),
                    fitted to a smooth synthetic advisory-score function.
  digits_mlp.onnx   MLP 64 -> 32 -> 32 -> 10 trained on scikit-learn's bundled 8x8 digits (pixels in [0, 1]).
  digits_cnn.onnx   small CNN (Conv-BatchNorm-ReLU x2, Linear) on the same digits, input 1x8x8.
Properties (VNN-LIB; a counterexample is an input in the box that satisfies the output constraint):
  acasxu_like_prop_{1,2}.vnnlib, digits_{mlp,cnn}_img{i}_eps{e}.vnnlib (robustness of the true class).
Also the centre of each property's box as .npy, for `verifier bounds --center`.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def write_vnnlib(path: Path, lower: np.ndarray, upper: np.ndarray, unsafe: str, n_out: int, comment: str) -> None:
    """Write a VNN-LIB file: the input box and the unsafe output region ``unsafe`` (an SMT-LIB term)."""
    lines = [f"; {comment}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(lower.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i, (lo, hi) in enumerate(zip(lower.ravel(), upper.ravel())):
        lines.append(f"(assert (>= X_{i} {lo:.9g}))")
        lines.append(f"(assert (<= X_{i} {hi:.9g}))")
    lines.append(f"(assert {unsafe})")
    path.write_text("\n".join(lines) + "\n")


def robustness_unsafe(label: int, n_out: int) -> str:
    """Unsafe region of a classification-robustness property: some other class scores at least as high."""
    terms = [f"(and (>= Y_{j} Y_{label}))" for j in range(n_out) if j != label]
    return "(or " + " ".join(terms) + ")"


def export(model: nn.Module, example: torch.Tensor, path: Path, fold_constants: bool = True) -> None:
    """Export with the TorchScript exporter; ``fold_constants=False`` keeps BatchNormalization nodes."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, example, str(path), input_names=["input"], output_names=["output"],
                          opset_version=13, dynamo=False, do_constant_folding=fold_constants)


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.std


def acas_target(x: torch.Tensor) -> torch.Tensor:
    """A smooth synthetic 'advisory cost' for 5 inputs in the ACAS Xu ranges (5 scores, lower is better)."""
    rho, theta, psi, v_own, v_int = x.unbind(-1)
    r = rho / 60760.0
    closeness = torch.exp(-3 * r) * torch.cos(theta) * (v_own + v_int) / 2400
    turn = torch.sin(theta - psi)
    return torch.stack([closeness, closeness - 0.4 * turn, closeness + 0.4 * turn,
                        closeness - 0.8 * turn + 0.1, closeness + 0.8 * turn + 0.1], -1)


def make_acasxu_like() -> None:
    lower = torch.tensor([0.0, -3.141593, -3.141593, 100.0, 0.0])
    upper = torch.tensor([60760.0, 3.141593, 3.141593, 1200.0, 1200.0])
    mean, std = (lower + upper) / 2, (upper - lower)
    layers: list[nn.Module] = [Normalize(mean.tolist(), std.tolist())]
    width = 5
    for _ in range(6):
        layers += [nn.Linear(width, 50), nn.ReLU()]
        width = 50
    layers.append(nn.Linear(50, 5))
    model = nn.Sequential(*layers)
    x = lower + (upper - lower) * torch.rand(20000, 5)
    y = acas_target(x)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(1500):
        index = torch.randint(0, len(x), (512,))
        loss = ((model(x[index]) - y[index]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"acasxu_like: fit loss {loss.item():.4f}")
    export(model, torch.zeros(1, 5), HERE / "acasxu_like.onnx")
    # prop 1: far-away intruder, a small box: score 0 ('clear of conflict') is not the maximum
    box_lo = np.array([55000.0, -0.3, -0.3, 1000.0, 600.0])
    box_hi = np.array([60760.0, 0.3, 0.3, 1200.0, 800.0])
    write_vnnlib(HERE / "acasxu_like_prop_1.vnnlib", box_lo, box_hi, "(<= Y_0 -10.0)", 5,
                 "acasxu_like: far intruder, a very low clear-of-conflict score is impossible")
    np.save(HERE / "acasxu_like_prop_1_center.npy", ((box_lo + box_hi) / 2).astype(np.float32))
    # prop 2: a wide box where strong left (Y_3) beats strong right (Y_4)
    box_lo = np.array([1000.0, 0.5, -3.0, 300.0, 300.0])
    box_hi = np.array([20000.0, 2.5, 3.0, 900.0, 900.0])
    write_vnnlib(HERE / "acasxu_like_prop_2.vnnlib", box_lo, box_hi, "(and (<= Y_3 Y_4))", 5,
                 "acasxu_like: strong left scores below strong right somewhere in a wide box")


def load_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1]; a fixed 80/20 split."""
    from sklearn.datasets import load_digits as sk_load_digits

    data = sk_load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    return x[:split], y[:split], x[split:], y[split:]


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, shape) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(model(x[index].reshape(-1, *shape)), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def make_digits() -> None:
    x_train, y_train, x_test, y_test = load_digits()
    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )
    for name, model, shape in (("digits_mlp", mlp, (64,)), ("digits_cnn", cnn, (1, 8, 8))):
        train_classifier(model, x_train, y_train, 30, shape)
        with torch.no_grad():
            accuracy = (model(x_test.reshape(-1, *shape)).argmax(1) == y_test).float().mean().item()
        print(f"{name}: test accuracy {accuracy:.3f}")
        # the CNN keeps its BatchNormalization nodes, so loading it exercises BatchNorm folding
        export(model, torch.zeros(1, *shape), HERE / f"{name}.onnx", fold_constants=(name != "digits_cnn"))
        for i in range(3):
            image, label = x_test[i].numpy(), int(y_test[i])
            np.save(HERE / f"{name}_img{i}.npy", image.reshape(shape).astype(np.float32))
            for eps in (0.02, 0.1):
                lo, hi = np.clip(image - eps, 0, 1), np.clip(image + eps, 0, 1)
                write_vnnlib(HERE / f"{name}_img{i}_eps{eps}.vnnlib", lo, hi, robustness_unsafe(label, 10), 10,
                             f"{name}: test image {i} (label {label}), L-infinity eps {eps}")
    np.save(HERE / "digits_test_images.npy", x_test[:100].numpy())
    np.save(HERE / "digits_test_labels.npy", y_test[:100].numpy())


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    make_acasxu_like()
    torch.manual_seed(1)
    make_digits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
