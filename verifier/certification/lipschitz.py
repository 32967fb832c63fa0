"""The ``lipschitz`` column: certified radii from upper bounds on the Lipschitz constants of the logit
differences (:mod:`verifier.lipschitz`): ``r = min_j (f_y(x) - f_j(x) - slack) / L_yj``, in closed form from
one forward pass.

The margins are computed in float64 (on a float64 copy of the network); ``slack`` (``1e-9`` times the
logits' size) covers that rounding, so the input is certified for every epsilon ``<= r``. The domain clip
is not used: the ball alone is certified, and the set is inside it.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from verifier.lipschitz import LipschitzBounds, lipschitz_bounds
from verifier.network import Network


class LipschitzCertifier:
    """Lipschitz bounds of ``network`` (raw input -> logits) for ``norm``, computed once, and radii."""

    def __init__(self, network: Network, norm: str):
        self.bounds: LipschitzBounds = lipschitz_bounds(network, norm)
        self.network = copy.deepcopy(network).to(torch.float64)

    def radius(self, x: Tensor, labels: Tensor) -> np.ndarray:
        """The certified radius of each input (0 where the label is not the strict top class)."""
        with torch.no_grad():
            logits = self.network.graph.forward(x.to(torch.float64)).reshape(x.shape[0], -1).cpu().numpy()
        slack = 1e-9 * (1 + np.abs(logits).max(1, keepdims=True))
        return self.bounds.radius(logits, labels.cpu().numpy(), slack=slack)

    def summary(self) -> dict:
        """The constants for reports: the largest and median ``L_yj`` over the pairs."""
        off = self.bounds.matrix[~np.eye(self.bounds.matrix.shape[0], dtype=bool)]
        return {"norm": self.bounds.norm, "max": float(off.max()) if off.size else 0.0,
                "median": float(np.median(off)) if off.size else 0.0}
