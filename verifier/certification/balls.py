"""Perturbation sets and robustness specifications.

The set around an input ``x`` at radius ``eps`` is the ``norm`` ball (L-infinity or L2) intersected with the
valid input domain (a box, ``[0, 1]`` for images). Bound propagation works on boxes: for L-infinity the set is
the box ``[max(x - eps, low), min(x + eps, high)]`` exactly; for L2 that box encloses it (sound but loose),
and :class:`BallConcretization` tightens CROWN and alpha-CROWN: where a linear bound ``a . x + c`` reaches the
input, its minimum over the set is at least the larger of its minimum over the box and its minimum over the
ball, ``a . x_0 - eps ||a||_2`` (the dual norm). Every intermediate and final bound then holds on the set.

Robustness of input ``x`` with label ``y`` is ``f_y - f_j > 0`` for every other class ``j`` on the whole
set: the specification matrix ``C`` ``[B, K - 1, K]`` has the rows ``e_y - e_j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.kernels import concretize_box


@dataclass(frozen=True)
class PerturbationSet:
    """A ``norm`` ball (``"linf"`` or ``"l2"``) intersected with the domain ``clip = (low, high)`` (or none)."""

    norm: str
    clip: tuple[float, float] | None

    def box(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """The box around each input ``x`` ``[B, ...]`` at its radius ``eps`` ``[B]``: exactly the set for
        L-infinity, its enclosing box for L2."""
        radius = eps.to(x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        lower, upper = x - radius, x + radius
        if self.clip is not None:
            lower, upper = lower.clamp(min=self.clip[0]), upper.clamp(max=self.clip[1])
        return lower, upper

    def project(self, center: Tensor, point: Tensor, eps: Tensor) -> Tensor:
        """A point of the set near ``point`` (for attacks): for L-infinity the nearest point of the box the
        bounds are computed on; for L2 the ball's radial projection shrunk by one part in a million, so
        rounding cannot leave the ball, then the domain's clip, which keeps a point of the ball inside it
        (each coordinate moves towards the centre, itself in the domain)."""
        if self.norm == "linf":  # into the very box the bounds are computed on
            lower, upper = self.box(center, eps)
            return torch.minimum(torch.maximum(point, lower), upper)
        radius = eps.to(point.dtype).reshape(-1, *[1] * (point.dim() - 1))
        delta = point - center
        length = delta.flatten(1).norm(dim=1).reshape(radius.shape)
        factor = torch.where(length > radius * (1 - 1e-6), radius * (1 - 1e-6) / length.clamp(min=1e-30), 1.0)
        projected = center + delta * factor
        if self.clip is not None:
            projected = projected.clamp(self.clip[0], self.clip[1])
        return projected

    def contains(self, center: Tensor, point: Tensor, eps: Tensor) -> Tensor:
        """Whether each ``point`` lies in the set around ``center`` (``[B]`` booleans): for L-infinity inside the
        box the bounds are computed on, for L2 within the radius in float64."""
        if self.norm == "linf":
            lower, upper = self.box(center, eps)
            return ((point >= lower) & (point <= upper)).flatten(1).all(1)
        delta = (point - center).flatten(1)
        inside = delta.to(torch.float64).norm(dim=1) <= eps.to(torch.float64)
        if self.clip is not None:
            flat = point.flatten(1)
            inside &= (flat >= self.clip[0]).all(1) & (flat <= self.clip[1]).all(1)
        return inside


def margin_spec(labels: Tensor, n_classes: int, dtype: torch.dtype) -> Tensor:
    """The robustness specification ``[B, K - 1, K]``: rows ``e_y - e_j`` for every ``j != y``."""
    eye = torch.eye(n_classes, dtype=dtype, device=labels.device)
    rows = eye[labels].unsqueeze(1) - eye.unsqueeze(0)                        # [B, K, K]
    keep = torch.ones(labels.shape[0], n_classes, dtype=torch.bool, device=labels.device)
    keep[torch.arange(labels.shape[0], device=labels.device), labels] = False
    return rows[keep].reshape(labels.shape[0], n_classes - 1, n_classes)


def margins(logits: Tensor, labels: Tensor) -> Tensor:
    """``f_y - max_{j != y} f_j`` per input (positive: correctly classified with a strict top class)."""
    true = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, labels.unsqueeze(1), -torch.inf)
    return true - others.amax(1)


class BallConcretization:
    """A CROWN backward hook for L2 balls: at the entry node (the only reader of the input) the coefficients
    are mapped to the raw input and concretised over the set, the larger of the box minimum and the ball
    minimum ``a . x_0 - eps ||a||_2`` (see the module docstring); nothing is left for the box step.

    ``center`` ``[B, ...]`` and ``eps`` ``[B]`` are those of the boxes being bounded, in the same order."""

    def __init__(self, entry: str, center: Tensor, eps: Tensor):
        self.entry = entry
        self.center = center.flatten(1)
        self.eps = eps.to(center.dtype)

    def __call__(self, node, start, A: Tensor, bounds):
        if node.name != self.entry:
            return None
        (A_in,), bias = node.op.backward(A, [])
        lower, upper = bounds[node.inputs[0]]
        box = concretize_box(A_in, None, lower, upper)                                        # [B, K]
        flat = A_in.flatten(2)                                                                # [b, K, n]
        ball = torch.einsum("bkn,bn->bk", flat, self.center) if flat.shape[0] == self.center.shape[0] else \
            torch.einsum("kn,bn->bk", flat[0], self.center)
        ball = ball - self.eps.unsqueeze(1) * flat.norm(dim=2)
        constant = torch.maximum(box, ball)
        if bias is not None:
            constant = constant + bias
        return [None], constant
