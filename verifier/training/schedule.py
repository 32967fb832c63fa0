"""Schedules of certified training: the epsilon ramp and the weights that follow it.

Certified training starts from natural training and grows the perturbation radius slowly (Gowal et al. 2018);
CROWN-IBP (Zhang et al. 2020) ties the natural/robust weight ``kappa`` and the CROWN-IBP/IBP mix ``beta`` to
the same ramp. Progress is counted in epochs as a real number (``epoch + batch / batches_per_epoch``), so a
schedule moves at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("linear", "smoothed")


@dataclass(frozen=True)
class EpsilonSchedule:
    """``eps(t)``: 0 for ``t < start``, rising to ``target`` over ``length`` epochs, then ``target``.

    ``shape="linear"``: a straight ramp. ``shape="smoothed"``: ``t^power`` growth over the first ``mid`` of the
    ramp joined to a straight line with the same slope (continuous with its derivative) up to the target:
    the first, most fragile epochs grow epsilon very gently, as auto_LiRPA's smoothed scheduler does.
    """

    target: float
    start: float = 0.0
    length: float = 1.0
    shape: str = "smoothed"
    mid: float = 0.25
    power: float = 4.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown schedule shape {self.shape!r}; choose one of {', '.join(SHAPES)}")
        if self.target < 0 or self.start < 0 or self.length < 0:
            raise ValueError("target, start and length of an epsilon schedule must be non-negative")
        if not 0 < self.mid < 1 or self.power < 1:
            raise ValueError("smoothed schedule: mid must be in (0, 1) and power at least 1")

    def fraction(self, epoch: float) -> float:
        """How far along the ramp ``epoch`` is, in ``[0, 1]`` (shaped: ``eps = target * fraction``)."""
        if self.length == 0:
            return 1.0 if epoch >= self.start else 0.0
        s = min(max((epoch - self.start) / self.length, 0.0), 1.0)
        if self.shape == "linear":
            return s
        m, p = self.mid, self.power
        scale = 1.0 / (m**p + p * m ** (p - 1) * (1 - m))  # so that the value at s = 1 is 1
        if s <= m:
            return scale * s**p
        return scale * (m**p + p * m ** (p - 1) * (s - m))

    def __call__(self, epoch: float) -> float:
        """Epsilon at ``epoch``."""
        return self.target * self.fraction(epoch)

    @property
    def end(self) -> float:
        """The epoch at which the target is reached."""
        return self.start + self.length


@dataclass(frozen=True)
class Ramp:
    """A weight moving linearly from ``start`` to ``end`` as the epsilon ramp goes from 0 to the target:
    ``kappa`` (natural-loss weight, e.g. 1 -> 0) and ``beta`` (CROWN-IBP weight, 1 -> 0) of CROWN-IBP."""

    start: float
    end: float

    def __call__(self, fraction: float) -> float:
        return self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)


def as_ramp(value: float | Ramp) -> Ramp:
    """A constant as a flat ramp."""
    return value if isinstance(value, Ramp) else Ramp(float(value), float(value))
