"""IBP-friendly initialisation and the warm-up regulariser of Shi et al. 2021 ("Fast certified robust
training with short warmup", NeurIPS 2021).

* :func:`ibp_init`: every weight of a Linear / Conv layer but the last drawn from ``N(0, 2 pi / n_in^2)``
  (``n_in`` the fan-in), so that the expected IBP bound radius neither explodes nor vanishes through a
  ReLU layer at initialisation (their Sec. 3.1); standard initialisations let it grow with depth.
* :func:`warmup_regularizer`: during the epsilon ramp, ``lambda * (1 - eps / eps_target) * (L_tightness +
  L_relu)`` averaged over the pre-activation layers (their Sec. 3.2):

  - ``L_tightness = relu(tau - r_0 / r_i) / tau``: penalises a layer whose mean bound radius ``r_i`` grows
    beyond ``r_0 / tau`` (``r_0`` the input box's mean radius);
  - ``L_relu = (relu(tau - rho_mean) + relu(tau - rho_var)) / tau``: penalises imbalance between the active
    (``l > 0``) and inactive (``u < 0``) neurons, ``rho`` being the smaller of the ratio of their mean box
    centres' magnitudes (resp. the centres' spreads around the layer mean) and its inverse.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from verifier.ir import Graph
from verifier.ops.activation import Relu
from verifier.ops.base import Interval


def ibp_init(model: nn.Module) -> nn.Module:
    """Re-draw the weights of every Linear and Conv layer except the last from ``N(0, 2 pi / fan_in^2)``
    (Shi et al. 2021); biases and BatchNorm parameters are left as they are. Returns ``model``."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    with torch.no_grad():
        for layer in layers[:-1]:
            fan_in = layer.weight[0].numel()
            layer.weight.normal_(0.0, math.sqrt(2 * math.pi) / fan_in)
    return model


def warmup_regularizer(
    graph: Graph, bounds: dict[str, Interval], fraction: float, strength: float = 0.5, tolerance: float = 0.5
) -> Tensor:
    """``strength * (1 - fraction) * mean over ReLU layers of (L_tightness + L_relu)`` from the IBP ``bounds``
    of the minibatch (``fraction`` = eps / target eps); 0 once the ramp is over (see the module docstring)."""
    input_lower, input_upper = bounds[graph.input_name]
    zero = input_lower.new_zeros(())
    weight = strength * (1.0 - min(max(fraction, 0.0), 1.0))
    inputs = [node.inputs[0] for node in graph.nodes if isinstance(node.op, Relu) and node.inputs[0] in bounds]
    if weight == 0 or not inputs:
        return zero
    radius_0 = ((input_upper - input_lower) / 2).mean()
    total = zero
    for name in inputs:
        lower, upper = bounds[name]
        center, radius = (upper + lower) / 2, (upper - lower) / 2
        tightness = torch.relu(tolerance - radius_0 / radius.mean().clamp(min=1e-12)) / tolerance
        active, inactive = (lower > 0).to(center.dtype), (upper < 0).to(center.dtype)
        spread = (center - center.mean()) ** 2
        balance = zero
        mean_ratio = _balanced_ratio((center * active).mean(), -(center * inactive).mean())
        var_ratio = _balanced_ratio((spread * active).sum(), (spread * inactive).sum())
        if mean_ratio is not None and var_ratio is not None:
            balance = (torch.relu(tolerance - mean_ratio) + torch.relu(tolerance - var_ratio)) / tolerance
        total = total + tightness + balance
    return weight * total / len(inputs)


def _balanced_ratio(a: Tensor, b: Tensor) -> Tensor | None:
    """``min(a / b, b / a)`` for positive ``a`` and ``b`` (1 when balanced, towards 0 when not); None when
    either side is empty."""
    if not (a > 0 and b > 0):
        return None
    return torch.minimum(a / b, b / a)
