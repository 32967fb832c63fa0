"""Forward-mode linear bounds (symbolic intervals) for networks with few inputs.

Every tensor ``z`` gets two linear functions of the input, ``L(x) <= z <= U(x)`` on the box, carried
in centre/radius form ``M = (L + U) / 2``, ``R = (U - L) / 2`` with coefficients ``[B, n + 1, *shape]``
(``n`` input coefficients, then the constant). An affine map ``y = W z + c`` gives ``M' = W M + c`` and
``R' = |W| R`` (sound because ``|z - M| <= R``); an elementwise nonlinearity with relaxation
``kl z + bl <= f(z) <= ku z + bu`` gives ``L' = kl+ L + kl- U + bl`` and ``U' = ku+ U + ku- L + bu``.
Concrete bounds at any tensor are the box minimum of ``L`` and maximum of ``U``.

The cost is linear in depth (CROWN's intermediate bounds are quadratic) and proportional to ``n``, so
this is the method of choice for pre-activation bounds when the input has a handful of dimensions
(ACAS Xu, control policies), typically followed by one CROWN backward pass for the final specification.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.ir import Graph
from verifier.ops.base import ElementwiseNonlinear, Interval

#: inputs larger than this make the coefficient tensors too big to be worth it
MAX_FORWARD_INPUTS = 64


def supports_forward(graph: Graph) -> bool:
    """Whether every operator has a forward-mode rule and the input is small enough."""
    if graph.numel(graph.input_name) > MAX_FORWARD_INPUTS:
        return False
    return all(node.op.is_affine or isinstance(node.op, ElementwiseNonlinear) for node in graph.nodes)


def _concretize(coeffs: Tensor, center: Tensor, radius: Tensor, sign: float) -> Tensor:
    """Box minimum (``sign = -1``) or maximum (``sign = +1``) of the linear functions in ``coeffs``."""
    weights, constant = coeffs[:, :-1], coeffs[:, -1]
    flat = weights.flatten(2)  # [B, n, N]
    value = torch.einsum("bnk,bn->bk", flat, center) + sign * torch.einsum("bnk,bn->bk", flat.abs(), radius)
    return value.reshape(constant.shape) + constant


def forward_bounds(graph: Graph, lower: Tensor, upper: Tensor) -> dict[str, Interval]:
    """Concrete bounds of every tensor from forward-mode linear bounds, intersected with IBP.

    ``lower``/``upper`` are ``[B, *input_shape]``; returns ``[B, *shape]`` bounds per tensor name.
    """
    batch = lower.shape[0]
    n = lower[0].numel()
    center, radius = ((lower + upper) / 2).reshape(batch, n), ((upper - lower) / 2).reshape(batch, n)
    eye = torch.eye(n, dtype=lower.dtype, device=lower.device).reshape(1, n, *graph.input_shape)
    M = torch.cat([eye.expand(batch, -1, *graph.input_shape), lower.new_zeros(batch, 1, *graph.input_shape)], 1)
    # the input itself is exact: x = x
    linear = {graph.input_name: (M, torch.zeros_like(M))}
    bounds: dict[str, Interval] = {graph.input_name: (lower, upper)}
    for node in graph.nodes:
        ins = [linear[name] for name in node.inputs]
        if node.op.is_affine:
            shapes = [graph.shape(name) for name in node.inputs]
            flat_M = [m.reshape(batch * (n + 1), *s) for (m, _), s in zip(ins, shapes)]
            flat_R = [r.reshape(batch * (n + 1), *s) for (_, r), s in zip(ins, shapes)]
            M_out = node.op.linear_part(*flat_M)
            R_out = node.op.abs_linear_part(*flat_R)
            M_out = M_out.reshape(batch, n + 1, *M_out.shape[1:]).clone()
            R_out = R_out.reshape(batch, n + 1, *R_out.shape[1:])
            offset = node.op.forward(*[lower.new_zeros(1, *s) for s in shapes])
            M_out[:, n] += offset[0]
            ibp = node.op.interval(*(bounds[name] for name in node.inputs))
        else:
            (M_in, R_in), = ins
            l_in, u_in = bounds[node.inputs[0]]
            relaxation = node.op.relax(l_in, u_in)
            L_in, U_in = M_in - R_in, M_in + R_in
            kl, ku = relaxation.lower_slope.unsqueeze(1), relaxation.upper_slope.unsqueeze(1)
            L_out = kl.clamp(min=0) * L_in + kl.clamp(max=0) * U_in
            U_out = ku.clamp(min=0) * U_in + ku.clamp(max=0) * L_in
            if relaxation.lower_intercept is not None:
                L_out[:, n] += relaxation.lower_intercept
            if relaxation.upper_intercept is not None:
                U_out[:, n] += relaxation.upper_intercept
            M_out, R_out = (L_out + U_out) / 2, (U_out - L_out) / 2
            ibp = node.op.interval(bounds[node.inputs[0]])
        linear[node.name] = (M_out, R_out)
        node_lower = _concretize(M_out - R_out, center, radius, -1.0)
        node_upper = _concretize(M_out + R_out, center, radius, 1.0)
        bounds[node.name] = (torch.maximum(node_lower, ibp[0]), torch.minimum(node_upper, ibp[1]))
    return bounds
