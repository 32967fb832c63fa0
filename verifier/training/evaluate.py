"""Clean, PGD and certified accuracy of a classifier on a labelled set, measured with the engine.

* clean: the top class of the network's output is the label;
* PGD: no point found by projected gradient descent (the centre and random restarts, signed steps) in the
  L-infinity ball (clipped to the domain) makes another class score at least as high: an upper bound of the
  robust accuracy;
* certified: some sound bound (elided IBP, CROWN-IBP, CROWN, alpha-CROWN) proves every margin positive over
  the ball: a lower bound of the robust accuracy. Certified <= robust <= PGD <= clean (up to the attack
  finding less than exists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.attack.pgd import pgd_minimize
from verifier.network import Network
from verifier.training.bounds import margin_lower_bounds
from verifier.training.loss import input_box, network_batch
from verifier.training.spec import margin_spec

CERTIFY_METHODS = ("ibp", "crown-ibp", "crown", "alpha-crown")


@dataclass
class Accuracy:
    """Accuracies of one network on one labelled set: ``clean`` and, per epsilon, ``pgd`` and ``certified``
    (fractions in [0, 1]); ``certified_by`` counts, per epsilon, the samples each method alone proves."""

    clean: float
    pgd: dict[float, float] = field(default_factory=dict)
    certified: dict[float, float] = field(default_factory=dict)
    certified_by: dict[float, dict[str, int]] = field(default_factory=dict)

    def row(self, eps: float) -> str:
        return (f"clean {100 * self.clean:5.1f} %  PGD {100 * self.pgd[eps]:5.1f} %  "
                f"certified {100 * self.certified[eps]:5.1f} %")


def _as_tensor(network: Network, values) -> Tensor:
    return torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)


def clean_correct(network: Network, x: Tensor, y: Tensor) -> Tensor:
    """Whether the top class of each input is its label ``[N]``."""
    with torch.no_grad():
        return network.forward_flat(network_batch(network, x.to(network.dtype))).argmax(1) == y


def pgd_robust(network: Network, x: Tensor, y: Tensor, eps: float, domain: tuple[float, float] | None = (0.0, 1.0),
               steps: int = 50, restarts: int = 4, seed: int = 0) -> Tensor:
    """Whether PGD fails to find a misclassified point in each ball ``[N]`` (the centre is one of the starts)."""
    batch = network_batch(network, x.to(network.dtype))
    lower, upper = input_box(batch, eps, domain)
    labels = y.reshape(-1).long()
    spec = margin_spec(labels, network.output_size, dtype=batch.dtype)

    def worst_margin(points: Tensor) -> Tensor:
        outputs = network.forward_flat(points)
        rows = spec.repeat(points.shape[0] // spec.shape[0], 1, 1)
        return torch.einsum("bkn,bn->bk", rows, outputs).amin(1)

    generator = torch.Generator().manual_seed(seed)
    _, value = pgd_minimize(worst_margin, lower, upper, steps=steps, restarts=restarts, generator=generator,
                            start=batch)
    return value > 0


def certified_robust(network: Network, x: Tensor, y: Tensor, eps: float,
                     domain: tuple[float, float] | None = (0.0, 1.0),
                     methods: Sequence[str] = ("ibp", "crown-ibp", "crown")) -> dict[str, Tensor]:
    """For each method, whether its bounds prove every margin of each ball positive ``[N]``; also ``"any"``."""
    batch = network_batch(network, x.to(network.dtype))
    lower, upper = input_box(batch, eps, domain)
    spec = margin_spec(y.reshape(-1).long(), network.output_size, dtype=batch.dtype)
    proved = {}
    for method in methods:
        if method not in CERTIFY_METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(CERTIFY_METHODS)}")
        with torch.no_grad() if method != "alpha-crown" else torch.enable_grad():
            bound = margin_lower_bounds(network.graph, lower, upper, spec, method).lower.detach()
        proved[method] = (bound > 0).all(1)
    proved["any"] = torch.stack(list(proved.values())).any(0)
    return proved


def evaluate(network: Network, x, y, epsilons: Sequence[float], domain: tuple[float, float] | None = (0.0, 1.0),
             methods: Sequence[str] = ("ibp", "crown-ibp", "crown"), chunk: int = 120,
             pgd_steps: int = 50, pgd_restarts: int = 4) -> Accuracy:
    """Clean accuracy, and PGD and certified accuracy at each epsilon, on the labelled set ``(x, y)``
    (processed ``chunk`` samples at a time). A sample counts as certified only if it is also correctly
    classified (a proof that every margin of its ball is positive implies it)."""
    x, y = _as_tensor(network, x), _as_tensor(network, y).reshape(-1).long()
    correct = torch.cat([clean_correct(network, x[i:i + chunk], y[i:i + chunk]) for i in range(0, len(x), chunk)])
    result = Accuracy(clean=float(correct.float().mean()))
    for eps in epsilons:
        robust = torch.cat([pgd_robust(network, x[i:i + chunk], y[i:i + chunk], eps, domain, pgd_steps, pgd_restarts)
                            for i in range(0, len(x), chunk)])
        parts = [certified_robust(network, x[i:i + chunk], y[i:i + chunk], eps, domain, methods)
                 for i in range(0, len(x), chunk)]
        proved = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        result.pgd[eps] = float((robust & correct).float().mean())
        result.certified[eps] = float((proved["any"] & correct).float().mean())
        result.certified_by[eps] = {key: int(value.sum()) for key, value in proved.items() if key != "any"}
    return result
