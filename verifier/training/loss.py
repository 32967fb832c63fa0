"""The certified-training loss: cross-entropy on worst-case logits from the engine's margin bounds.

``loss = kappa * CE(f(x), y) + (1 - kappa) * CE(-l(x, eps), y)`` where ``l`` are lower bounds of the margins
``f_y - f_j`` over the L-infinity ball of radius ``eps`` around each input (clipped to the input domain when
one is given), computed for the whole minibatch in one bound computation (Gowal et al. 2018, IBP; Zhang et
al. 2020, CROWN-IBP, eq. 9 with the ``beta`` mix of CROWN-IBP and IBP bounds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from verifier.bounds.alpha import AlphaOptions
from verifier.errors import ShapeError, VerifierError
from verifier.network import Network
from verifier.ops.base import Interval
from verifier.training.bounds import METHODS, margin_lower_bounds
from verifier.training.spec import margin_spec, robust_cross_entropy

NORMS = ("linf",)

#: attribute of a module holding its shared-parameter networks by input shape (built once: tracing costs
#: milliseconds); kept on the module so it lives and dies with it
_CACHE = "_verifier_shared_networks"


@dataclass
class LossTerms:
    """One evaluation of the certified loss on a minibatch.

    ``loss``: the weighted total; ``natural`` / ``robust``: the two cross-entropies (``robust`` is None at
    ``eps = 0``, where it equals ``natural``); ``logits``: the clean outputs ``[B, K]``, ``labels`` ``[B]``;
    ``margin_lower``:
    the bounds the robust term used ``[B, K - 1]`` (None at ``eps = 0``); ``bounds``: the bounds of every
    tensor of the network (for regularisers); ``certified``: samples whose every margin bound is positive.
    """

    loss: Tensor
    natural: Tensor
    robust: Tensor | None
    logits: Tensor
    labels: Tensor
    margin_lower: Tensor | None = None
    bounds: dict[str, Interval] | None = None

    @property
    def certified(self) -> Tensor:
        if self.margin_lower is None:
            return torch.zeros(self.logits.shape[0], dtype=torch.bool, device=self.logits.device)
        return (self.margin_lower > 0).all(1)

    @property
    def correct(self) -> Tensor:
        return self.logits.argmax(1) == self.labels


def shared_network(model: nn.Module | Network, example: Tensor) -> Network:
    """The network of ``model`` whose operators hold its live parameters (built once per module and input
    shape); a :class:`Network` is returned as it is."""
    if isinstance(model, Network):
        return model
    from verifier.api import from_torch

    shape = tuple(example.shape[1:])
    per_module = model.__dict__.setdefault(_CACHE, {})
    network = per_module.get(shape)
    if network is None:
        network = from_torch(model, example[:1].detach(), share_parameters=True)
        per_module[shape] = network
    return network


def network_batch(network: Network, x: Tensor) -> Tensor:
    """A minibatch ``[B, ...]`` (the module's layout, or flat) as ``[B, *network.input_shape]``."""
    if x.dim() == 0 or x[0].numel() != network.input_size:
        raise ShapeError(f"inputs of shape {tuple(x.shape)} do not fit the network input {network.input_shape}")
    return x.reshape(x.shape[0], *network.input_shape)


def input_box(x: Tensor, eps: float | Tensor, domain: tuple[float, float] | None = None) -> tuple[Tensor, Tensor]:
    """The L-infinity box ``[x - eps, x + eps]``, intersected with ``domain = (low, high)`` when given (pixels in
    ``[0, 1]``, say). ``eps`` may be a number or a tensor broadcasting against ``x``."""
    lower, upper = x - eps, x + eps
    if domain is not None:
        low, high = domain
        lower, upper = lower.clamp(min=low, max=high), upper.clamp(min=low, max=high)
    return lower, upper


def loss_terms(
    model: nn.Module | Network,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "linf",
    method: str = "ibp",
    kappa: float = 0.0,
    beta: float = 1.0,
    domain: tuple[float, float] | None = None,
    num_classes: int | None = None,
    alpha: AlphaOptions | None = None,
    crown_rows: int | None = None,
) -> LossTerms:
    """The certified loss on the minibatch ``(x, y)`` with its parts; see :func:`certified_loss`."""
    if norm not in NORMS:
        raise VerifierError(f"norm {norm!r} is not supported for certified training; use one of {', '.join(NORMS)}")
    if method not in METHODS:
        raise VerifierError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= kappa <= 1.0:
        raise VerifierError(f"kappa must be in [0, 1], got {kappa}")
    if eps < 0 or eps != eps:
        raise VerifierError(f"eps must be a non-negative number, got {eps}")
    if x.shape[0] != y.reshape(-1).shape[0]:
        raise ShapeError(f"{x.shape[0]} inputs but {y.reshape(-1).shape[0]} labels")
    network = shared_network(model, x)
    batch = network_batch(network, x)
    # the clean logits need no gradient when the natural term has no weight (kappa = 0 and eps > 0)
    with torch.no_grad() if kappa == 0 and eps > 0 else contextlib.nullcontext():
        logits = model(x) if not isinstance(model, Network) else network.forward(batch)
    logits = logits.reshape(logits.shape[0], -1)
    classes = num_classes or logits.shape[1]
    labels = y.reshape(-1).long().to(logits.device)
    natural = F.cross_entropy(logits, labels)
    terms = LossTerms(natural, natural, None, logits, labels)
    if eps == 0:
        return terms  # the robust loss of a point is the natural one: no bounds needed
    lower, upper = input_box(batch, eps, domain)
    spec = margin_spec(labels, classes, dtype=lower.dtype)
    bounds = margin_lower_bounds(network.graph, lower, upper, spec, method, beta=beta, alpha=alpha,
                                 crown_rows=crown_rows)
    robust = robust_cross_entropy(bounds.lower)
    terms.robust, terms.margin_lower, terms.bounds = robust, bounds.lower, bounds.bounds
    terms.loss = robust if kappa == 0 else kappa * natural + (1 - kappa) * robust
    return terms


def certified_loss(
    model: nn.Module | Network,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str = "linf",
    method: str = "ibp",
    kappa: float = 0.0,
    beta: float = 1.0,
    domain: tuple[float, float] | None = None,
    num_classes: int | None = None,
    alpha: AlphaOptions | None = None,
    crown_rows: int | None = None,
) -> Tensor:
    """``kappa * CE(f(x), y) + (1 - kappa) * CE(-l, y)`` on a minibatch, ``l`` the lower bounds of the margins
    ``f_y(x') - f_j(x')`` over ``|x' - x|_inf <= eps`` (clipped to ``domain``), a scalar to backpropagate.

    ``model``: a ``torch.nn.Module`` (its shared-parameter network is built on first use and kept; its own
    forward gives the clean logits, so BatchNorm uses batch statistics in ``train()`` mode) or a network built
    with ``from_torch(..., share_parameters=True)``. The bounds always follow the module's ``eval()``
    function (BatchNorm with running statistics): the function that is exported and certified.
    ``method``: ``"ibp"``, ``"crown-ibp"``, ``"crown"`` or ``"alpha-crown"`` (see
    :mod:`verifier.training.bounds`); ``beta`` mixes CROWN-IBP and IBP bounds for ``"crown-ibp"``, and
    ``crown_rows=k`` runs its CROWN pass on the ``k`` hardest margins of each sample only (faster; still sound).
    ``x`` ``[B, *input_shape]`` (or ``[B, input_size]``), ``y`` ``[B]`` class indices.
    """
    return loss_terms(model, x, y, eps, norm, method, kappa, beta, domain, num_classes, alpha, crown_rows).loss


def parameters_of(model: nn.Module | Network) -> Sequence[Tensor]:
    """The trainable tensors of a module, or the shared parameters a network holds."""
    if isinstance(model, nn.Module):
        return [p for p in model.parameters() if p.requires_grad]
    found = {id(t): t for node in model.graph.nodes for t in node.op.constants().values() if t.requires_grad}
    return list(found.values())
