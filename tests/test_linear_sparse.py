"""The backward step of a dense layer that leaves zero columns of A out of the product (dead ReLUs).

Checked against the dense product ``A @ W`` (values and gradients, including at columns that are zero at
this iterate), and end to end: CROWN and alpha-CROWN bounds with the sparse product forced on equal those
with it off, and contain every sampled output.
"""

from __future__ import annotations

import pytest
import torch

import verifier
from verifier.bounds.alpha import optimize_slopes
from verifier.bounds.crown import CrownOptions, compute_intermediate_bounds
from verifier.ops import linear
from verifier.ops.linear import backward_matmul


def _with_zero_columns(shape: tuple[int, ...], n: int, zero_share: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(*shape, n, generator=g, dtype=torch.float64)
    A[..., torch.rand(n, generator=g) < zero_share] = 0
    return A


@pytest.fixture
def sparse_always(monkeypatch):
    """Take the sparse product at every size."""
    monkeypatch.setattr(linear, "SPARSE_MIN_PRODUCT", 0)
    monkeypatch.setattr(linear, "SPARSE_MIN_WIDTH", 0)


@pytest.mark.parametrize("lead", [(7,), (3, 5), (2, 4, 1)])
@pytest.mark.parametrize("zero_share", [0.0, 0.5, 0.9, 1.0])
def test_equals_dense_product(sparse_always, lead, zero_share):
    A = _with_zero_columns(lead, 64, zero_share, seed=len(lead))
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(64, 33, generator=g, dtype=torch.float64)
    bias = torch.randn(64, generator=g, dtype=torch.float64)
    A_in, bias_out = backward_matmul(A, weight, bias)
    torch.testing.assert_close(A_in, A @ weight, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bias_out, A @ bias, rtol=1e-12, atol=1e-12)
    A_in, bias_out = backward_matmul(A, weight, None)
    assert bias_out is None and A_in.shape == (*lead, 33)


def test_nan_column_is_kept(sparse_always):
    A = _with_zero_columns((6,), 32, 0.8, seed=2)
    zero = (A == 0).all(0).nonzero()[0, 0]
    A[3, zero] = float("nan")
    A_in, _ = backward_matmul(A, torch.ones(32, 5, dtype=torch.float64), None)
    assert torch.isnan(A_in[3]).all() and not torch.isnan(A_in[:3]).any()


def test_gradient_is_the_dense_one(sparse_always):
    """Zero columns still get their gradient ``grad @ W^T``: an optimised slope at 0 must be able to move."""
    A = _with_zero_columns((4, 3), 40, 0.7, seed=3).requires_grad_()
    g = torch.Generator().manual_seed(4)
    weight = torch.randn(40, 9, generator=g, dtype=torch.float64)
    bias = torch.randn(40, generator=g, dtype=torch.float64)
    out_w, out_b = torch.randn(4, 3, 9, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g,
                                                                                          dtype=torch.float64)
    A_in, bias_out = backward_matmul(A, weight, bias)
    (sparse,) = torch.autograd.grad((A_in * out_w).sum() + (bias_out * out_b).sum(), A)
    (dense,) = torch.autograd.grad(((A @ weight) * out_w).sum() + ((A @ bias) * out_b).sum(), A)
    assert (A.detach() == 0).all((0, 1)).sum() > 10
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)
    torch.autograd.gradcheck(lambda a: backward_matmul(a, weight, bias), (A,))


def test_small_or_narrow_products_stay_dense(monkeypatch):
    """Below SPARSE_MIN_PRODUCT multiply-adds, or onto fewer than SPARSE_MIN_WIDTH features, the zero columns
    are not searched for (it would cost more than it saves)."""
    calls = []
    monkeypatch.setattr(linear._ColumnSparseMatmul, "apply", lambda *a: calls.append(a))
    A = _with_zero_columns((8,), 32, 0.9, seed=5)
    monkeypatch.setattr(linear, "SPARSE_MIN_WIDTH", 0)
    backward_matmul(A, torch.ones(32, 4, dtype=torch.float64), None)
    monkeypatch.setattr(linear, "SPARSE_MIN_WIDTH", 128)
    monkeypatch.setattr(linear, "SPARSE_MIN_PRODUCT", 0)
    backward_matmul(A, torch.ones(32, 127, dtype=torch.float64), None)
    assert not calls
    backward_matmul(A, torch.ones(32, 128, dtype=torch.float64), None)
    assert len(calls) == 1


def _dead_heavy_network() -> verifier.Network:
    """A float64 ReLU MLP whose negative biases leave many hidden neurons dead on the test boxes (8-44 %)."""
    torch.manual_seed(0)
    layers = []
    sizes = [20, 48, 48, 48, 5]
    for i in range(len(sizes) - 1):
        layer = torch.nn.Linear(sizes[i], sizes[i + 1]).double()
        with torch.no_grad():
            layer.weight.mul_(2.0)
            if i < len(sizes) - 2:
                layer.bias.sub_(0.5)
        layers += [layer, torch.nn.ReLU()]
    module = torch.nn.Sequential(*layers[:-1])
    return verifier.from_torch(module, torch.zeros(1, 20, dtype=torch.float64))


def _boxes(count: int = 3, radius: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    center = torch.rand(count, 20, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    return center - radius, center + radius


def test_crown_bounds_unchanged_and_sound(monkeypatch):
    network = _dead_heavy_network()
    lower, upper = _boxes()
    monkeypatch.setattr(linear, "SPARSE_COLUMN_SHARE", 2.0)  # never sparse
    dense = network.bounds(lower, upper)
    monkeypatch.setattr(linear, "SPARSE_COLUMN_SHARE", 0.125)
    monkeypatch.setattr(linear, "SPARSE_MIN_PRODUCT", 0)
    monkeypatch.setattr(linear, "SPARSE_MIN_WIDTH", 0)
    taken = []
    apply = linear._ColumnSparseMatmul.apply
    monkeypatch.setattr(linear._ColumnSparseMatmul, "apply", lambda *a: taken.append(1) or apply(*a))
    sparse = network.bounds(lower, upper)
    assert taken, "the sparse product was not used"
    torch.testing.assert_close(sparse.lower, dense.lower, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sparse.upper, dense.upper, rtol=1e-10, atol=1e-10)
    g = torch.Generator().manual_seed(7)
    points = lower[:, None] + (upper - lower)[:, None] * torch.rand(3, 4000, 20, generator=g, dtype=torch.float64)
    outputs = network.forward_flat(points.reshape(-1, 20)).reshape(3, 4000, -1)
    assert (outputs >= sparse.lower[:, None] - 1e-9).all() and (outputs <= sparse.upper[:, None] + 1e-9).all()


def test_alpha_crown_unchanged(monkeypatch):
    """alpha-CROWN differentiates through the sparse product: same slopes, same bounds as with the dense one."""
    network = _dead_heavy_network()
    lower, upper = _boxes(count=2)
    graph = network.graph
    spec = torch.eye(5, dtype=torch.float64).reshape(1, 5, *network.output_shape)

    def alpha_bounds() -> torch.Tensor:
        boxes = network.as_batch(lower), network.as_batch(upper)
        bounds = compute_intermediate_bounds(graph, *boxes, CrownOptions())
        value, _ = optimize_slopes(graph, spec, torch.zeros(5, dtype=torch.float64), bounds)
        return value

    monkeypatch.setattr(linear, "SPARSE_COLUMN_SHARE", 2.0)
    dense = alpha_bounds()
    monkeypatch.setattr(linear, "SPARSE_COLUMN_SHARE", 0.125)
    monkeypatch.setattr(linear, "SPARSE_MIN_PRODUCT", 0)
    monkeypatch.setattr(linear, "SPARSE_MIN_WIDTH", 0)
    sparse = alpha_bounds()
    torch.testing.assert_close(sparse, dense, rtol=1e-8, atol=1e-8)
    assert (sparse >= network.bounds(lower, upper).lower - 1e-9).all()
