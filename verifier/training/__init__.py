"""Certified training with the engine's own bounds: IBP, CROWN-IBP, CROWN and alpha-CROWN losses.

A network built with ``verifier.from_torch(module, example, share_parameters=True)`` holds the module's live
parameters, so the bounds the engine computes (:mod:`verifier.bounds`) are differentiable in them.

=========================  ===============================================================================
:func:`certified_loss`     ``kappa * CE(clean) + (1 - kappa) * CE(worst-case logits)`` of a minibatch
:func:`train_certified`    a small loop: epsilon ramp, ``kappa`` / ``beta`` schedules, progress, history
:class:`EpsilonSchedule`   linear or smoothed epsilon ramp; :class:`Ramp` for ``kappa`` and ``beta``
:func:`ibp_init`           IBP-friendly initialisation (Shi et al. 2021)
:func:`warmup_regularizer` their warm-up regulariser (bound tightness and ReLU balance)
:func:`evaluate`           clean, PGD and certified accuracy measured with the engine
=========================  ===============================================================================
"""

from verifier.training.bounds import METHODS, MarginBounds, margin_lower_bounds
from verifier.training.evaluate import Accuracy, evaluate
from verifier.training.loop import EpochRecord, TrainingHistory, batches, train_certified
from verifier.training.loss import LossTerms, certified_loss, input_box, loss_terms, shared_network
from verifier.training.schedule import EpsilonSchedule, Ramp
from verifier.training.spec import margin_spec, robust_cross_entropy, worst_case_logits
from verifier.training.warmup import ibp_init, warmup_regularizer

__all__ = [
    "METHODS",
    "Accuracy",
    "EpochRecord",
    "EpsilonSchedule",
    "LossTerms",
    "MarginBounds",
    "Ramp",
    "TrainingHistory",
    "batches",
    "certified_loss",
    "evaluate",
    "ibp_init",
    "input_box",
    "loss_terms",
    "margin_lower_bounds",
    "margin_spec",
    "robust_cross_entropy",
    "shared_network",
    "train_certified",
    "warmup_regularizer",
    "worst_case_logits",
]
