"""Make the orthogonal (norm-preserving) digits classifier shipped in models/ (deterministic: fixed seeds, one thread).

    python models/make_orthogonal_model.py       # rewrites digits_orthogonal.onnx next to this script

An MLP 64 -> 128 -> 128 -> 10 with ReLUs on scikit-learn's 8x8 digits (pixels in [0, 1], the split of
make_models.py, whose test part is digits_test.npz), every weight matrix orthogonal: the first has
orthonormal columns (``W^T W = I``, it preserves norms), the second is orthogonal, the last has orthonormal
rows (``W W^T = I``). The layers' spectral norms are therefore 1 and the Lipschitz constant of each logit
difference ``f_y - f_j`` is at most ``||w_y - w_j||_2 = sqrt(2)``, which ``verifier.lipschitz`` finds.

Orthogonality is made here, without a new dependency: during training each layer's weight is the Björck
orthogonalisation of a free parameter ``V`` (``W <- W (3 I - W^T W) / 2``, iterated from ``V / ||V||_2``,
which converges to the orthogonal polar factor of ``V``; Björck and Bowie 1971, as in Anil et al. 2019); the
exported weight is the exact polar factor ``U V^T`` of the trained parameter's SVD, computed in float64.
The loss is Lipschitz-margin training (Tsuzuku et al. 2018): cross-entropy on logits where every wrong class
gets ``sqrt(2) * MARGIN`` added, so the true class must win by the margin that certifies an L2 radius of
``MARGIN``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_models import export, load_digits  # noqa: E402

#: the L2 radius the margin loss aims at
MARGIN = 0.3
#: logits are scaled by this in the loss (a temperature; the exported network is not scaled)
TEMPERATURE = 8.0


def bjorck(V: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """An (approximately) orthogonal matrix near ``V``: Björck's iteration from ``V / ||V||_2``. Tall or square
    ``V`` get orthonormal columns, wide ones orthonormal rows."""
    wide = V.shape[0] < V.shape[1]
    W = V.T if wide else V
    W = W / torch.linalg.matrix_norm(W.detach(), ord=2)
    eye = torch.eye(W.shape[1], dtype=W.dtype)
    for _ in range(iterations):
        W = W @ (1.5 * eye - 0.5 * W.T @ W)
    return W.T if wide else W


def polar(V: torch.Tensor) -> torch.Tensor:
    """The exact orthogonal polar factor ``U V^T`` of ``V`` (float64 SVD)."""
    U, _, Vh = torch.linalg.svd(V.double(), full_matrices=False)
    return U @ Vh


class OrthogonalLinear(nn.Module):
    """``x W^T + b`` with ``W`` the Björck orthogonalisation of a free parameter."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.V = nn.Parameter(torch.nn.init.orthogonal_(torch.empty(n_out, n_in)))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ bjorck(self.V).T + self.bias

    def exported(self) -> nn.Linear:
        layer = nn.Linear(self.V.shape[1], self.V.shape[0])
        with torch.no_grad():
            layer.weight.copy_(polar(self.V).float())
            layer.bias.copy_(self.bias)
        return layer


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_digits()
    layers = [OrthogonalLinear(64, 128), OrthogonalLinear(128, 128), OrthogonalLinear(128, 10)]
    model = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    epochs = 150
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    margin = 2**0.5 * MARGIN
    for _ in range(epochs):
        for index in torch.randperm(len(x_train)).split(64):
            logits = model(x_train[index])
            shifted = logits + margin * (1 - nn.functional.one_hot(y_train[index], 10).float())
            loss = nn.functional.cross_entropy(TEMPERATURE * shifted, y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    exported = nn.Sequential(layers[0].exported(), nn.ReLU(), layers[1].exported(), nn.ReLU(), layers[2].exported())
    exported.eval()
    with torch.no_grad():
        logits = exported(x_test)
        accuracy = (logits.argmax(1) == y_test).float().mean().item()
        top2 = logits.topk(2, dim=1).values
        margins = torch.where(logits.argmax(1) == y_test, (top2[:, 0] - top2[:, 1]) / 2**0.5, torch.zeros(()))
    print(f"digits_orthogonal: test accuracy {accuracy:.3f}; L2 radius from the margin / sqrt(2) >= 0.3 on "
          f"{(margins >= 0.3).float().mean().item():.3f} of the test inputs")
    for i, layer in enumerate(exported[::2]):
        W = layer.weight.double()
        gram = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
        print(f"  layer {i}: {tuple(W.shape)}, |W^T W - I| max {(gram - torch.eye(gram.shape[0])).abs().max():.1e}")
    export(exported, torch.zeros(1, 64), HERE / "digits_orthogonal.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
