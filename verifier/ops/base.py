"""The operator interface every node of the graph IR implements.

Tensor layout used throughout the engine
----------------------------------------
A variable tensor of the network is stored as ``[batch, *shape]`` where ``shape`` is the tensor's
ONNX shape *at ONNX batch size 1* (a declared batch dimension stays in ``shape`` as a leading 1).
The extra leading ``batch`` dimension vectorises many input boxes (or many sub-domains) at once, so
every ONNX operator's semantics apply unchanged to ``x[i]``; an ONNX axis ``a`` becomes ``a + 1``.

Linear bounds travel backwards as coefficient tensors ``A`` of shape ``[b, K, *shape]``: ``K`` rows of
a specification (a spec matrix ``C`` or unit vectors for intermediate neurons), and ``b`` either the
batch size or 1 when the coefficients are still the same for every box (they broadcast).

The backward pass only ever computes *lower* bounds of ``A . x``; an upper bound of ``A . x`` is
``-lower(-A . x)``, so both are computed in one pass by stacking ``[A; -A]`` along ``K``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from verifier.kernels import relaxed_backward
from verifier.primitives import LinearRelaxation

Interval = tuple[Tensor, Tensor]


class Operator:
    """One node's operation with its constants (weights, shapes, attributes) baked in.

    Subclasses implement three rules side by side:

    * :meth:`forward` - the concrete function on ``[batch, *shape]`` tensors;
    * :meth:`interval` - interval bound propagation (IBP): output box from input boxes;
    * :meth:`backward` - the linear relaxation used by CROWN: given coefficients ``A`` of a lower
      bound on ``A . y`` in terms of this node's output ``y``, return coefficients in terms of each
      input and the constant term picked up on the way.
    """

    op_type: ClassVar[str] = ""
    #: True when :meth:`backward` needs the bounds of the inputs (a relaxation of a nonlinearity).
    needs_input_bounds: ClassVar[bool] = False
    #: True for operators that are affine in their inputs; they implement :meth:`linear_part` and
    #: :meth:`abs_linear_part`, which forward-mode linear bounds use.
    is_affine: ClassVar[bool] = False

    def forward(self, *inputs: Tensor) -> Tensor:
        """Concrete output for concrete inputs, each of shape ``[batch, *input_shape]``."""
        raise NotImplementedError

    def interval(self, *inputs: Interval) -> Interval:
        """Elementwise lower and upper output bounds for input boxes ``(lower, upper)``."""
        raise NotImplementedError

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        """Propagate a lower linear bound one node back.

        ``A`` (``[b, K, *output_shape]``) holds the coefficients of ``A . y`` for this node's output ``y``.
        Returns ``(A_in, bias)`` such that ``A . y >= sum_i A_in[i] . x_i + bias`` for every input value
        inside the given input bounds; ``bias`` is ``[b, K]`` or ``None`` for zero.
        """
        raise NotImplementedError

    def linear_part(self, *inputs: Tensor) -> Tensor:
        """Affine operators only: the linear map ``L`` of ``y = L(x) + offset`` (no constant term)."""
        raise NotImplementedError

    def abs_linear_part(self, *inputs: Tensor) -> Tensor:
        """Affine operators only: ``|L|``, the linear map with every coefficient replaced by its magnitude."""
        raise NotImplementedError

    # -- housekeeping ---------------------------------------------------------------------------
    def constants(self) -> dict[str, Tensor]:
        """The tensors baked into this operator (weights, biases, relaxation constants)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, Tensor)}

    def to(self, dtype: torch.dtype | None = None, device: torch.device | None = None) -> Operator:
        """Move every tensor this operator holds to ``device`` and cast the floating-point ones to ``dtype``, in
        place; returns ``self``. That covers the constants and anything else kept in attributes: index tensors
        (their integer type is kept), tensors in lists, tuples and dicts, and operators nested inside this one
        (each moved by its own :meth:`to`)."""
        for key, value in list(vars(self).items()):
            setattr(self, key, moved(value, dtype, device))
        return self

    def describe(self) -> str:
        """A one-line human description used in summaries."""
        return self.op_type


class ElementwiseNonlinear(Operator):
    """A scalar nonlinearity applied to each element (ReLU, Sigmoid, Tanh, ...).

    Subclasses give the concrete function and :meth:`relax`; IBP assumes a monotonically
    non-decreasing function unless :meth:`interval` is overridden, and the backward step is the
    generic one of :func:`verifier.kernels.relaxed_backward` (fused; reference in :mod:`verifier.primitives`).
    """

    needs_input_bounds = True

    def relax(self, lower: Tensor, upper: Tensor) -> LinearRelaxation:
        """Sound linear lower and upper bounds of the function on ``[lower, upper]``, elementwise."""
        raise NotImplementedError

    def exact_relaxation(self, lower: Tensor, upper: Tensor) -> Tensor | None:
        """Mask of the neurons whose relaxation is exact on ``[lower, upper]`` (the function is linear there,
        e.g. a stable ReLU), so tighter input bounds would not change it; ``None`` if never (smooth functions).
        CROWN refines the input bounds only elsewhere."""
        return None

    def interval(self, *inputs: Interval) -> Interval:
        (lower, upper), = inputs
        return self.forward(lower), self.forward(upper)

    def backward(self, A: Tensor, inputs: Sequence[Interval | None]) -> tuple[list[Tensor | None], Tensor | None]:
        bounds = inputs[0]
        assert bounds is not None, f"{self.op_type} needs pre-activation bounds"
        A_in, bias = relaxed_backward(A, self.relax(*bounds))
        return [A_in], bias


def moved(value, dtype: torch.dtype | None, device: torch.device | None):
    """``value`` with every tensor in it on ``device`` and every floating-point tensor in ``dtype`` (``None``:
    unchanged); lists, tuples and dicts are rebuilt, operators moved in place, anything else returned as is."""
    if isinstance(value, Tensor):
        target = dtype if dtype is not None and value.is_floating_point() else value.dtype
        return value.to(device=value.device if device is None else device, dtype=target)
    if isinstance(value, Operator):
        return value.to(dtype=dtype, device=device)
    if isinstance(value, list):
        return [moved(v, dtype, device) for v in value]
    if isinstance(value, tuple):
        return tuple(moved(v, dtype, device) for v in value)
    if isinstance(value, dict):
        return {k: moved(v, dtype, device) for k, v in value.items()}
    return value


def unbroadcast(A: Tensor, shape: Sequence[int]) -> Tensor:
    """Sum the coefficient tensor ``A`` (``[b, K, *out_shape]``) down to ``[b, K, *shape]``.

    This is the backward rule of numpy-style broadcasting: an input that was broadcast to a larger
    output shape receives the sum of the coefficients of every output element it was copied to.
    """
    sample = tuple(A.shape[2:])
    shape = tuple(shape)
    if sample == shape:
        return A
    lead = len(sample) - len(shape)
    if lead > 0:
        A = A.sum(dim=tuple(range(2, 2 + lead)))
    dims = tuple(2 + i for i, (a, s) in enumerate(zip(A.shape[2:], shape)) if s == 1 and a != 1)
    if dims:
        A = A.sum(dim=dims, keepdim=True)
    return A
