"""Robustness specifications of a classifier and the worst-case logits built from their bounds.

For a sample of class ``y`` the margins ``m_j = z_y - z_j`` (``j != y``) are ``C z`` with the spec matrix
``C`` whose rows are ``e_y - e_j``. A lower bound ``m_j >= l_j`` over the input box gives the worst-case
logits ``-l`` (0 for the true class): cross-entropy on them upper-bounds the cross-entropy of every point of
the box (Gowal et al. 2018; Zhang et al. 2020, eq. 8), and the sample is certified when every ``l_j > 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def margin_spec(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Spec matrices ``C`` ``[B, num_classes - 1, num_classes]`` with rows ``e_y - e_j`` for every ``j != y``
    (in increasing ``j``), on the labels' device."""
    labels = labels.reshape(-1).long()
    batch = labels.shape[0]
    eye = torch.eye(num_classes, dtype=dtype, device=labels.device)
    others = torch.arange(num_classes - 1, device=labels.device).unsqueeze(0).expand(batch, -1)
    others = others + (others >= labels.unsqueeze(1)).long()  # skip the true class
    return eye[labels].unsqueeze(1) - eye[others]


def worst_case_logits(margin_lower: Tensor) -> Tensor:
    """Worst-case logits ``[B, K]`` from margin lower bounds ``[B, K - 1]``: the true class first at 0, then
    ``-l_j``; the true class is column 0 (use label 0 with them)."""
    return torch.cat([margin_lower.new_zeros(margin_lower.shape[0], 1), -margin_lower], dim=1)


def robust_cross_entropy(margin_lower: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy on the worst-case logits: an upper bound of the cross-entropy over the input box."""
    logits = worst_case_logits(margin_lower)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target, reduction=reduction)
