"""The ``clean`` column: the model's prediction on each unperturbed input (accuracy at epsilon 0)."""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.certification.balls import margins
from verifier.network import Network


def predict(network: Network, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Logits ``[B, K]``, predictions ``[B]`` and correctness ``[B]`` of each input. An input counts as correct
    only when its label is the *strict* top class (a tie is not a correct classification: no certificate
    could hold at it)."""
    with torch.no_grad():
        logits = network.graph.forward(x).reshape(x.shape[0], -1)
    return logits, logits.argmax(1), margins(logits, labels) > 0
