"""What a verification run answers: a status, a witness for ``sat``, and statistics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAT, UNSAT, UNKNOWN, TIMEOUT = "sat", "unsat", "unknown", "timeout"
#: a search stopped at the end of a time slice, its open domains kept (never an answer)
PAUSED = "paused"


@dataclass
class Counterexample:
    """An input ``x`` (flattened, in the model's input type) inside the property's box whose output ``y``
    (computed by onnxruntime on the original file, or by the torch module) violates the property."""

    x: np.ndarray
    y: np.ndarray
    case: int


@dataclass
class Result:
    """The answer of :func:`verifier.verify`.

    ``status``: ``"unsat"`` means the property holds: no input in the boxes reaches the unsafe outputs, and
    a sound bound proves it. ``"sat"``: a counterexample exists (``counterexample`` holds one, re-checked by
    an independent executor). ``"unknown"``: the search ended without an answer (``message`` says why).
    ``"timeout"``: the time limit came first.

    ``stats`` holds ``phases`` (seconds per phase: ``load_model``, ``load_property``, ``root_bound``,
    ``attack``, ``search``...), ``method`` (``crown`` when the root bound decided, else the search),
    ``domains`` (sub-problems bounded), ``open_domains`` (those still undecided at the end),
    ``lower_bound`` (the best proven lower bound on the property's margin over the open domains: above 0
    would be a proof; the smaller, the further from one), ``cases``, ``dtype`` and ``time_s``. ``message``
    says why an answer is unknown. ``certificate`` is set only by the randomized-smoothing fallback: a
    probabilistic statement about the smoothed classifier, which is never reported as ``unsat``.
    """

    status: str
    counterexample: Counterexample | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    certificate: Any = None

    @property
    def lower_bound(self) -> float | None:
        """The best global lower bound on the margin for ``unknown``/``timeout`` answers (None: none known)."""
        value = self.stats.get("lower_bound")
        return float(value) if isinstance(value, (int, float)) and self.status in (UNKNOWN, TIMEOUT) else None

    @property
    def open_domains(self) -> int | None:
        """Sub-problems left undecided, for ``unknown``/``timeout`` answers (None: not known)."""
        value = self.stats.get("open_domains")
        return int(value) if isinstance(value, (int, float)) and self.status in (UNKNOWN, TIMEOUT) else None

    def to_dict(self) -> dict[str, Any]:
        """The answer as plain data that is strict JSON: ``status``, ``message``, ``lower_bound`` and
        ``open_domains`` (null unless the answer is unknown or timeout and they are known; an infinite
        bound is null too), ``stats``, and ``counterexample`` (``x``, ``y``, ``case``) for ``sat``."""
        payload: dict[str, Any] = {"status": self.status, "message": self.message,
                                   "lower_bound": self.lower_bound, "open_domains": self.open_domains,
                                   "stats": _plain(self.stats)}
        if self.counterexample is not None:
            payload["counterexample"] = {
                "x": _plain(self.counterexample.x.astype(float)),
                "y": _plain(self.counterexample.y.astype(float)),
                "case": self.counterexample.case,
            }
        if self.certificate is not None:
            describe = getattr(self.certificate, "to_dict", None)
            payload["certificate"] = _plain(describe() if describe else repr(self.certificate))
        return _plain(payload)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)


def _plain(value: Any) -> Any:
    """``value`` as JSON data: NumPy scalars and arrays as numbers and lists, NaN and infinities as None."""
    from verifier.jsonout import plain

    return plain(value)
