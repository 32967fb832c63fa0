"""The ``complete`` column: the full verifier (:func:`verifier.verify`: falsification, then branch and bound
with beta-CROWN or input splitting) on each input's robustness property, within a per-input time budget.

The property is stated on the network *as given*, in its own input space: the raw box (the L-infinity set,
or the box enclosing an L2 ball, intersected with the domain) is mapped through the input normalisation,
which is increasing per element, so the image box contains the image of the set. ``unsat`` certifies the
input; ``sat`` comes with a counterexample onnxruntime re-checked on the original file (for an L2 ball it
only counts inside the ball: otherwise the answer is ``unknown``); ``timeout`` and ``unknown`` certify
nothing.
"""

from __future__ import annotations

import numpy as np

from verifier.certification.balls import PerturbationSet
from verifier.certification.model import PreparedModel
from verifier.complete.api import VerifyOptions, verify
from verifier.complete.result import SAT, UNKNOWN, UNSAT
from verifier.complete.robustness import box_robustness_specification
from verifier.spec.specification import Specification

#: what each verifier answer means for a dataset row
STATUS = {UNSAT: "certified", SAT: "falsified", UNKNOWN: "unknown", "timeout": "timeout"}


def robustness_property(model: PreparedModel, perturbation: PerturbationSet, x: np.ndarray, label: int,
                        eps: float) -> Specification:
    """The property "the top class stays ``label``" on the set around the raw input ``x`` (flat, float64), as
    one case ``f_label - f_j <= 0`` per other class over the box in the model's input space."""
    lower, upper = x - eps, x + eps
    if perturbation.clip is not None:
        lower, upper = np.maximum(lower, perturbation.clip[0]), np.minimum(upper, perturbation.clip[1])
    lower, upper = model.box_to_model_space(lower, upper)
    return box_robustness_specification(lower, upper, label, model.n_classes)


def verify_input(model: PreparedModel, perturbation: PerturbationSet, x: np.ndarray, label: int, eps: float,
                 timeout: float, seed: int = 0) -> str:
    """``"certified"``, ``"falsified"``, ``"unknown"`` or ``"timeout"`` for one raw input (flat, float64)."""
    spec = robustness_property(model, perturbation, x, label, eps)
    result = verify(model.original, spec, timeout=max(timeout, 1e-3), options=VerifyOptions(seed=seed))
    status = STATUS.get(result.status, "unknown")
    if result.status == SAT and perturbation.norm == "l2":
        witness = result.counterexample.x.astype(np.float64)
        if model.mean is not None:
            witness = witness * model.std.reshape(-1) + model.mean.reshape(-1)
        if np.linalg.norm(witness - x) > eps:
            status = "unknown"  # a counterexample of the enclosing box, outside the ball
    return status
