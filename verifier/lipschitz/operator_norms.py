"""Certified upper bounds on the operator norms of linear maps: the building blocks of Lipschitz bounds.

For a linear map ``M`` (the linear part of an affine layer, or of a chain of them) four norms are used:

* ``l2``: ``||M||_{2->2}``, the largest singular value;
* ``linf``: ``||M||_{inf->inf}``, the largest absolute row sum (exact for every affine operator of the IR:
  ``Operator.abs_linear_part`` applies ``|M|``, so ``|M| 1`` is the vector of absolute row sums);
* ``linf_to_l2``: a bound on ``||M||_{inf->2}``: ``||M d||_2 <= || |M| 1 ||_2 ||d||_inf``;
* ``l2_to_linf``: ``||M||_{2->inf}``, the largest Euclidean row norm.

How the spectral norm is bounded, by kind of map (every value is an upper bound, never an estimate):

* **materialised** maps (input size x output size at most :data:`MATERIALIZE_LIMIT` entries): the Jacobian
  is formed in float64 by pushing the identity through the operators' linear parts, and its exact largest
  singular value (SVD) is taken, times ``1 + 1e-9`` for the rounding of the SVD (backward stable: its
  error is a few units of float64 rounding times the norm). This covers dense layers, small convolutions
  and chains of affine layers with nothing between them (input normalisation followed by the first layer).
* **dense layers** (``Linear``): the exact SVD of the weight, with the same margin.
* **convolutions**: the *circular embedding bound*. A zero-padded stride-1 convolution on an input of
  spatial size ``n`` (padded size ``n + p_begin + p_end = N``) equals a circular convolution of size
  ``N`` applied to the zero-padded input, restricted to the valid outputs (no wrap-around happens because
  every window lies inside the padded input). Padding with zeros is an isometry and restricting outputs
  does not increase a norm, so ``||conv|| <= ||circular conv of size N||``, and the latter is exact:
  the DFT block-diagonalises a circular convolution, so its norm is the largest spectral norm of the
  ``C_out x C_in`` matrices ``K^(f) = sum_t W_t exp(-2 pi i f.t / N)`` over the ``N^d`` frequencies
  ``f`` (Sedghi, Gupta and Long, ICLR 2019). A stride keeps a subset of the stride-1 outputs (a further
  restriction) and a dilation is a larger kernel with zero taps, so the bound holds for them too; groups
  make the kernel block-diagonal in the channels. The FFT's rounding is covered by an absolute margin of
  ``1e-9 * sum |W|``. This replaces power iteration, whose estimate is a lower bound unless a margin is
  added that no iteration count can justify.
* **elementwise** scaling (``Affine``): ``max |scale|``; **permutations** (Reshape, Flatten, Transpose) 1.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.ops.base import Operator

#: a chain of affine operators is materialised (and its norm computed exactly) up to this many entries
MATERIALIZE_LIMIT = 1 << 22

#: relative margin on singular values and norms computed in float64
RELATIVE_MARGIN = 1e-9


@dataclass(frozen=True)
class Norms:
    """Upper bounds on ``||M||`` between the L2 and L-infinity norms of a linear map ``M`` (see the module
    docstring); ``exact`` says whether the spectral norm is the map's own (materialised or dense) or a bound."""

    l2: float
    linf: float
    linf_to_l2: float
    l2_to_linf: float
    exact: bool = False

    def then(self, other: Norms) -> Norms:
        """Bounds for ``other @ self`` (this map first), by submultiplicativity, mixing the norms through
        whichever intermediate norm gives the smaller product."""
        return Norms(
            l2=min(other.l2 * self.l2, other.linf_to_l2 * self.l2_to_linf),
            linf=min(other.linf * self.linf, other.l2_to_linf * self.linf_to_l2),
            linf_to_l2=min(other.l2 * self.linf_to_l2, other.linf_to_l2 * self.linf),
            l2_to_linf=min(other.linf * self.l2_to_linf, other.l2_to_linf * self.l2),
        )


def _up(value: float) -> float:
    return float(value) * (1 + RELATIVE_MARGIN)


def float64_copy(op: Operator) -> Operator:
    """A copy of ``op`` whose constants are float64 (for exact-as-possible Jacobians)."""
    return copy.deepcopy(op).to(dtype=torch.float64)


def chain_jacobian(ops: list[Operator], input_shape: tuple[int, ...], device: torch.device) -> Tensor:
    """The Jacobian ``[n_out, n_in]`` (float64) of the linear parts of ``ops`` applied in order to a
    per-sample tensor of ``input_shape``: the identity pushed through, one column per input element."""
    n_in = math.prod(input_shape)
    value = torch.eye(n_in, dtype=torch.float64, device=device).reshape(n_in, *input_shape)
    for op in ops:
        value = float64_copy(op).linear_part(value)
    return value.reshape(n_in, -1).T


def matrix_norms(M: Tensor) -> Norms:
    """Norms of an explicit matrix ``[n_out, n_in]`` (float64): the exact spectral norm (SVD), the exact
    largest absolute row sum and row norm, and ``|| |M| 1 ||_2``; each with the relative margin."""
    M = M.to(torch.float64)
    if M.numel() == 0:
        return Norms(0.0, 0.0, 0.0, 0.0, exact=True)
    row_sums = M.abs().sum(1)
    return Norms(
        l2=_up(torch.linalg.matrix_norm(M, ord=2)),
        linf=_up(row_sums.max()),
        linf_to_l2=_up(row_sums.norm()),
        l2_to_linf=_up(M.norm(dim=1).max()),
        exact=True,
    )


def abs_row_sums(op: Operator, input_shape: tuple[int, ...], device: torch.device) -> Tensor:
    """``|M| 1`` for the linear part ``M`` of an affine operator: its absolute row sums (flat, float64)."""
    ones = torch.ones(1, *input_shape, dtype=torch.float64, device=device)
    return float64_copy(op).abs_linear_part(ones).reshape(-1)


def conv_spectral_bound(op: Operator) -> float:
    """The circular embedding bound on the spectral norm of a ``verifier.ops.conv.Conv`` (module docstring)."""
    weight = op.weight.detach().to(torch.float64)
    c_out, c_in_group = weight.shape[:2]
    groups = op.groups
    dims = weight.dim() - 2
    kernel = weight.shape[2:]
    # groups -> block-diagonal full kernel; dilation -> zero taps between the kernel's
    c_in = c_in_group * groups
    per_group = c_out // groups
    extent = [d * (k - 1) + 1 for d, k in zip(op.dilations, kernel)]
    full = weight.new_zeros(c_out, c_in, *extent)
    taps = tuple(slice(None, None, d) for d in op.dilations)
    for g in range(groups):
        rows, cols = slice(g * per_group, (g + 1) * per_group), slice(g * c_in_group, (g + 1) * c_in_group)
        full[(rows, cols, *taps)] = weight[rows]
    spatial = op.input_shape[2:]
    size = [max(s + b + e, x) for s, (b, e), x in zip(spatial, op.pads, extent)]
    spectrum = torch.fft.fftn(full, s=size, dim=tuple(range(2, 2 + dims)))
    blocks = spectrum.permute(*range(2, 2 + dims), 0, 1).reshape(-1, c_out, c_in)
    largest = torch.linalg.matrix_norm(blocks, ord=2).max()
    return _up(largest) + RELATIVE_MARGIN * float(weight.abs().sum())


def operator_spectral_bound(op: Operator, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                            device: torch.device) -> float | None:
    """An upper bound on ``||M||_2`` for one affine operator from its structure, or ``None`` when the
    operator has no structural rule (it must then be materialised)."""
    from verifier.ops.conv import Conv
    from verifier.ops.elementwise import Affine
    from verifier.ops.linear import Linear
    from verifier.ops.shape import Reshape, Transpose

    if isinstance(op, Linear):
        return _up(torch.linalg.matrix_norm(op.weight.detach().to(torch.float64), ord=2))
    if isinstance(op, Conv):
        return conv_spectral_bound(op)
    if isinstance(op, (Reshape, Transpose)):
        return 1.0
    if isinstance(op, Affine):
        if op.scale is None:
            scale = 1.0
        else:
            scale = float(op.scale.detach().abs().max())
        # a shift broadcasting the input to a larger shape copies each element that many times
        copies = math.prod(output_shape) / max(1, math.prod(input_shape))
        return _up(scale * math.sqrt(copies))
    return None


def chain_norms(ops: list[Operator], shapes: list[tuple[int, ...]], device: torch.device,
                limit: int = MATERIALIZE_LIMIT) -> Norms | None:
    """Norms of the linear part of a chain of affine operators (``shapes[i]`` is the input shape of
    ``ops[i]``, ``shapes[-1]`` the chain's output shape): exact when the Jacobian fits ``limit`` entries,
    else the composition of per-operator bounds; ``None`` when some operator has neither."""
    n_in, n_out = math.prod(shapes[0]), math.prod(shapes[-1])
    if n_in * n_out <= limit:
        return matrix_norms(chain_jacobian(ops, shapes[0], device))
    norms = None
    for op, shape_in, shape_out in zip(ops, shapes[:-1], shapes[1:]):
        single = single_operator_norms(op, shape_in, shape_out, device, limit)
        if single is None:
            return None
        norms = single if norms is None else norms.then(single)
    # the composed absolute row sums |M_k| ... |M_1| 1 bound the chain's own (|AB| <= |A||B|)
    rows = torch.ones(1, *shapes[0], dtype=torch.float64, device=device)
    for op in ops:
        rows = float64_copy(op).abs_linear_part(rows)
    rows = rows.reshape(-1)
    return Norms(norms.l2, min(norms.linf, _up(rows.max())), min(norms.linf_to_l2, _up(rows.norm())),
                 min(norms.l2_to_linf, norms.l2))


def single_operator_norms(op: Operator, input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                          device: torch.device, limit: int = MATERIALIZE_LIMIT) -> Norms | None:
    """Norms of one affine operator: materialised when small, else from its structure (``None`` if it
    has no structural rule)."""
    if math.prod(input_shape) * math.prod(output_shape) <= limit:
        return matrix_norms(chain_jacobian([op], input_shape, device))
    spectral = operator_spectral_bound(op, input_shape, output_shape, device)
    if spectral is None:
        return None
    rows = abs_row_sums(op, input_shape, device)
    from verifier.ops.linear import Linear

    row_norm = spectral
    if isinstance(op, Linear):
        row_norm = _up(op.weight.detach().to(torch.float64).norm(dim=1).max())
    return Norms(spectral, _up(rows.max()), _up(rows.norm()), min(row_norm, spectral))
