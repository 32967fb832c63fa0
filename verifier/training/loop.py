"""A small certified-training loop for those who do not write their own.

Per minibatch: epsilon, ``kappa`` and ``beta`` from their schedules, the certified loss of
:mod:`verifier.training.loss` (one bound computation for the batch), the optional warm-up regulariser, a
gradient step (clipped). Progress goes to stderr; the history of every epoch is returned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from verifier.progress import Progress
from verifier.training.bounds import METHODS
from verifier.training.loss import loss_terms, shared_network
from verifier.training.schedule import EpsilonSchedule, Ramp, as_ramp
from verifier.training.warmup import warmup_regularizer

#: CROWN-IBP's default for kappa and beta: 1 at the start of the epsilon ramp, 0 at its end
FROM_ONE_TO_ZERO = Ramp(1.0, 0.0)


@dataclass
class EpochRecord:
    """Averages over one epoch's minibatches (``eps``, ``kappa``, ``beta`` at its last step)."""

    epoch: int
    eps: float
    kappa: float
    beta: float
    loss: float
    natural_loss: float
    robust_loss: float | None
    regularizer: float
    clean_error: float
    verified_error: float | None
    time_s: float
    lr: float


@dataclass
class TrainingHistory:
    """What :func:`train_certified` did: one :class:`EpochRecord` per epoch."""

    method: str
    epochs: list[EpochRecord] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(e.time_s for e in self.epochs)

    def table(self) -> str:
        """One line per epoch."""
        lines = ["epoch  eps      kappa  beta   loss    robust  clean err  verified err  time"]
        for e in self.epochs:
            robust = "   -  " if e.robust_loss is None else f"{e.robust_loss:6.3f}"
            verified = "     -" if e.verified_error is None else f"{100 * e.verified_error:5.1f} %"
            lines.append(f"{e.epoch:5d}  {e.eps:.4f}  {e.kappa:.2f}   {e.beta:.2f}   {e.loss:6.3f}  {robust}  "
                         f"{100 * e.clean_error:5.1f} %    {verified}       {e.time_s:5.2f} s")
        return "\n".join(lines)


def train_certified(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    eps: float | EpsilonSchedule,
    epochs: int,
    method: str = "crown-ibp",
    *,
    kappa: float | Ramp = FROM_ONE_TO_ZERO,
    beta: float | Ramp = FROM_ONE_TO_ZERO,
    warmup_epochs: float = 1.0,
    ramp_epochs: float | None = None,
    domain: tuple[float, float] | None = (0.0, 1.0),
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 5e-4,
    lr_decay_epochs: Sequence[int] = (),
    lr_decay: float = 0.2,
    grad_clip: float | None = 10.0,
    regularizer: float = 0.0,
    crown_rows: int | None = None,
    progress: bool | None = None,
    label: str | None = None,
) -> TrainingHistory:
    """Train ``model`` in place with the certified loss and return the history.

    ``loader``: re-iterable minibatches ``(x, y)`` (a ``DataLoader``; ``x`` in the module's input layout).
    ``eps``: the target epsilon (L-infinity) or a full :class:`EpsilonSchedule`; a number gives a smoothed
    ramp from 0 after ``warmup_epochs`` of natural training over ``ramp_epochs`` (default: half of the
    remaining epochs). ``method``: ``"ibp"``, ``"crown-ibp"``, ``"crown"``, ``"alpha-crown"``, or
    ``"natural"`` (plain cross-entropy: the baseline, same loop).
    ``kappa`` (natural-loss weight) and ``beta`` (CROWN-IBP share of the bound, ``"crown-ibp"`` only) follow
    the ramp from their start to their end value (numbers: constant). ``domain``: inputs are clipped to it.
    ``optimizer``: default Adam at ``lr``, multiplied by ``lr_decay`` at each of ``lr_decay_epochs``.
    ``grad_clip``: gradient-norm clipping (None: off). ``regularizer``: strength of the warm-up regulariser of
    Shi et al. 2021 (0: off). ``crown_rows``: CROWN-IBP's pass on that many hardest margins per sample only
    (see :mod:`verifier.training.bounds`; default all). ``progress``: progress bar on stderr (default: when
    stderr is a terminal).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if method != "natural" and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose natural or one of {', '.join(METHODS)}")
    schedule = eps if isinstance(eps, EpsilonSchedule) else EpsilonSchedule(
        float(eps), start=warmup_epochs,
        length=ramp_epochs if ramp_epochs is not None else max((epochs - warmup_epochs) / 2, 0.0))
    kappa_ramp, beta_ramp = as_ramp(kappa), as_ramp(beta)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    steps = len(loader) if hasattr(loader, "__len__") else 0
    history = TrainingHistory(method)
    network = None
    with Progress(epochs * steps, label or f"{method} training", enabled=progress) as bar:
        for epoch in range(epochs):
            if epoch in lr_decay_epochs:
                for group in optimizer.param_groups:
                    group["lr"] *= lr_decay
            model.train()
            start = time.perf_counter()
            sums = _Sums()
            for i, (x, y) in enumerate(loader):
                progress_epochs = epoch + i / max(steps, 1)
                fraction = 0.0 if method == "natural" else schedule.fraction(progress_epochs)
                eps_now = schedule.target * fraction
                kappa_now, beta_now = kappa_ramp(fraction), beta_ramp(fraction)
                if network is None:
                    network = shared_network(model, x)
                terms = loss_terms(model, x, y, eps_now, method="ibp" if method == "natural" else method,
                                   kappa=kappa_now, beta=beta_now, domain=domain, crown_rows=crown_rows)
                loss = terms.loss
                reg = None
                if regularizer > 0 and terms.bounds is not None:
                    reg = warmup_regularizer(network.graph, terms.bounds, fraction, strength=regularizer)
                    loss = loss + reg
                optimizer.zero_grad()
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                sums.add(terms, loss, reg)
                bar.update(status=f"epoch {epoch + 1} eps {eps_now:.4f} loss {loss.item():.3f}")
            record = sums.record(epoch + 1, eps_now, kappa_now, beta_now, time.perf_counter() - start,
                                 optimizer.param_groups[0]["lr"])
            history.epochs.append(record)
    model.eval()
    return history


class _Sums:
    """Running sums of an epoch's per-sample quantities."""

    def __init__(self):
        self.n = 0
        self.loss = self.natural = self.regularizer = 0.0
        self.robust: float | None = None
        self.wrong = 0
        self.unverified: int | None = None

    def add(self, terms, loss: Tensor, reg: Tensor | None) -> None:
        size = terms.logits.shape[0]
        self.n += size
        self.loss += loss.item() * size
        self.natural += terms.natural.item() * size
        self.regularizer += 0.0 if reg is None else reg.item() * size
        self.wrong += int((~terms.correct).sum())
        if terms.robust is not None:
            self.robust = (self.robust or 0.0) + terms.robust.item() * size
            self.unverified = (self.unverified or 0) + int((~terms.certified).sum())

    def record(self, epoch, eps, kappa, beta, seconds, lr) -> EpochRecord:
        n = max(self.n, 1)
        robust = None if self.robust is None else self.robust / n
        verified = None if self.unverified is None else self.unverified / n
        return EpochRecord(epoch, eps, kappa, beta, self.loss / n, self.natural / n, robust, self.regularizer / n,
                           self.wrong / n, verified, seconds, lr)


def batches(x: Tensor, y: Tensor, batch_size: int, seed: int = 0, shuffle: bool = True) -> _Batches:
    """A re-iterable loader of ``(x, y)`` minibatches (reshuffled at each pass with a seeded generator)."""
    return _Batches(x, y, batch_size, seed, shuffle)


class _Batches:
    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int, shuffle: bool):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.generator) if self.shuffle else torch.arange(len(self.x))
        for index in order.split(self.batch_size):
            yield self.x[index], self.y[index]
