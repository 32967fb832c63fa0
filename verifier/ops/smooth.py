"""Smooth convex or concave elementwise functions: Exp, Log, Sqrt, Reciprocal, Pow (constant exponent),
Softplus.

Every rule here is the exact-intercept relaxation of :mod:`verifier.ops.envelope`: per neuron the
tightest lines of a few slopes, the extremes of ``f(x) - k x`` found at the ends of ``[l, u]`` and the
point where ``f'(x) = k`` (closed forms below). On an interval where the function is convex this is the
**chord above and the tangent at the midpoint below** (concave: the reverse), the CROWN relaxation of
these functions; across the inflection of an odd power it is the best of those slopes with exact
intercepts. IBP is the exact range (``f`` at the ends and the stationary points).

Domains follow onnxruntime: ``log``/``sqrt``/non-integer powers are bounded on the part of the box where
they are defined (``x > 0`` or ``x >= 0``); where the function is unbounded on the box (``log`` at 0, a
negative power across 0) the bound on that side is infinite.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.ops.elementwise import Affine
from verifier.ops.envelope import ExactInterceptNonlinear
from verifier.ops.registry import SourceNode, onnx_op, torch_op


class Exp(ExactInterceptNonlinear):
    """``e^x``: convex; ``f'(x) = k`` at ``x = log k``."""

    op_type = "Exp"

    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(x)

    def derivative(self, x: Tensor) -> Tensor:
        return torch.exp(x)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return [torch.log(slope)]


class Log(ExactInterceptNonlinear):
    """Natural logarithm on ``x > 0``: concave; ``f'(x) = k`` at ``x = 1 / k``; unbounded below at 0."""

    op_type = "Log"

    def forward(self, x: Tensor) -> Tensor:
        return torch.log(x)

    def derivative(self, x: Tensor) -> Tensor:
        return 1 / x

    def domain(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        return lower.clamp(min=0), upper.clamp(min=0)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return [1 / slope]

    def unbounded(self, lower: Tensor, upper: Tensor) -> tuple[Tensor | None, Tensor | None]:
        return lower <= 0, None


class Softplus(ExactInterceptNonlinear):
    """``log(1 + e^x)``: convex; ``f'(x) = sigmoid(x) = k`` at ``x = log(k / (1 - k))``."""

    op_type = "Softplus"

    def forward(self, x: Tensor) -> Tensor:
        return torch.logaddexp(x, torch.zeros_like(x))

    def derivative(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        return [torch.log(slope) - torch.log1p(-slope)]


class Power(ExactInterceptNonlinear):
    """``x^p`` for a constant ``p`` (ONNX ``Pow`` with a constant exponent).

    ``f'(x) = p x^(p-1) = k`` at ``x = +-|k/p|^(1/(p-1))`` (both signs are tried; the wrong one is a
    harmless extra candidate). Integer ``p`` is defined everywhere (even: convex; odd: concave for
    ``x < 0`` and convex for ``x > 0``); non-integer ``p`` only for ``x >= 0``. For ``p < 0`` the pole at
    0 makes the box unbounded above (and below for odd ``p``) when it contains 0.
    """

    op_type = "Pow"

    def __init__(self, exponent: float):
        self.exponent = float(exponent)
        self.integer = float(exponent).is_integer()

    def forward(self, x: Tensor) -> Tensor:
        return torch.pow(x, self.exponent)

    def derivative(self, x: Tensor) -> Tensor:
        return self.exponent * torch.pow(x, self.exponent - 1)

    def domain(self, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
        if self.integer:
            return lower, upper
        return lower.clamp(min=0), upper.clamp(min=0)

    def critical_points(self, slope: Tensor, lower: Tensor, upper: Tensor) -> list[Tensor]:
        p = self.exponent
        root = torch.pow((slope / p).abs(), 1 / (p - 1))
        return [root, -root]

    def unbounded(self, lower: Tensor, upper: Tensor) -> tuple[Tensor | None, Tensor | None]:
        if self.exponent >= 0:
            return None, None
        pole = (lower <= 0) & (upper >= 0)
        odd = self.integer and int(self.exponent) % 2 == 1
        return (pole if odd else None), pole

    def describe(self) -> str:
        return f"Pow {self.exponent:g}"


class Sqrt(Power):
    """``sqrt(x)`` on ``x >= 0``: concave (``Power`` with ``p = 1/2``, computed with ``torch.sqrt``)."""

    op_type = "Sqrt"

    def __init__(self) -> None:
        super().__init__(0.5)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sqrt(x)


class Reciprocal(Power):
    """``1 / x``: convex for ``x > 0``, concave for ``x < 0``, unbounded across 0 (``Power`` with ``p = -1``)."""

    op_type = "Reciprocal"

    def __init__(self) -> None:
        super().__init__(-1.0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.reciprocal(x)


def power(exponent: float) -> Power | Exp | str | None:
    """The operator of ``x^p`` (``None`` for ``p = 0``, a constant the front end does not model)."""
    if exponent == 1:
        return "identity"
    if exponent == 0:
        return None
    if exponent == 0.5:
        return Sqrt()
    if exponent == -1:
        return Reciprocal()
    return Power(exponent)


# -- converters -------------------------------------------------------------------------------------------
@onnx_op("Exp")
def _onnx_exp(node: SourceNode) -> Exp:
    return Exp()


@onnx_op("Log")
def _onnx_log(node: SourceNode) -> Log:
    return Log()


@onnx_op("Softplus")
def _onnx_softplus(node: SourceNode) -> Softplus:
    return Softplus()


@onnx_op("Sqrt")
def _onnx_sqrt(node: SourceNode) -> Sqrt:
    return Sqrt()


@onnx_op("Reciprocal")
def _onnx_reciprocal(node: SourceNode) -> Reciprocal:
    return Reciprocal()


@onnx_op("Pow")
def _onnx_pow(node: SourceNode):
    """``Pow(x, p)`` with a constant ``p`` (one number, or a tensor: :class:`verifier.ops.select.PowerPerElement`;
    ``p = 0`` is the constant 1), and ``Pow(c, x) = exp(x log c)`` with a constant ``c > 0``."""
    if node.is_const(0) and not node.is_const(1):
        base = np.asarray(node.const(0), dtype=np.float64)
        if base.size != 1 or base.item() <= 0:
            raise node.unsupported("a constant base must be one positive number")
        return [Affine(node.tensor(np.log(base.reshape(()))), None, node.shape(1)), Exp()]
    exponent = node.const(1)
    if exponent is None:
        raise node.unsupported("the exponent must be a constant")
    exponent = np.asarray(exponent, dtype=np.float64)
    if exponent.size != 1 and np.all(exponent == exponent.reshape(-1)[0]):
        exponent = exponent.reshape(-1)[:1]  # a tensor of one repeated value (its shape is handled below)
    from verifier.ops.select import power_per_element

    per_element = power_per_element(node, exponent)
    if per_element is not None:  # exponent 0, or several exponents, or an exponent that broadcasts x
        return per_element
    op = power(float(exponent.reshape(())))
    return node.inputs[0] if op == "identity" else op


@torch_op(torch.exp, "exp")
def _torch_exp(node: SourceNode) -> Exp:
    return Exp()


@torch_op(torch.log, "log")
def _torch_log(node: SourceNode) -> Log:
    return Log()


@torch_op(torch.sqrt, "sqrt")
def _torch_sqrt(node: SourceNode) -> Sqrt:
    return Sqrt()


@torch_op(torch.reciprocal, "reciprocal")
def _torch_reciprocal(node: SourceNode) -> Reciprocal:
    return Reciprocal()


@torch_op(torch.nn.Softplus, F.softplus)
def _torch_softplus(node: SourceNode):
    """``softplus(beta x) / beta`` (the linear tail above ``threshold`` differs by under 1e-8 relative)."""
    module = node.module
    beta = module.beta if module is not None else node.attr("kwargs", {}).get("beta", 1.0)
    if beta == 1:
        return Softplus()
    shape = node.shape(0)
    return [Affine(torch.tensor(float(beta), dtype=node.dtype), None, shape), Softplus(),
            Affine(torch.tensor(1 / float(beta), dtype=node.dtype), None, shape)]


@torch_op(torch.pow, "pow")
def _torch_pow(node: SourceNode):
    if not node.is_const(1):
        raise node.unsupported("the exponent must be a constant")
    return _onnx_pow(node)
