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

    ``status`` is ``"sat"`` (a counterexample exists: ``counterexample`` holds it), ``"unsat"`` (the property
    is proved), ``"unknown"`` (the search ended without an answer) or ``"timeout"``. ``stats`` holds the
    time per phase and the number of domains visited; ``message`` says why an answer is unknown.
    ``certificate`` is set only by the randomized-smoothing fallback: a probabilistic statement about
    the smoothed classifier, which is never reported as ``unsat``.
    """

    status: str
    counterexample: Counterexample | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    certificate: Any = None

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"status": self.status, "message": self.message, "stats": _plain(self.stats)}
        if self.counterexample is not None:
            payload["counterexample"] = {
                "x": self.counterexample.x.astype(float).tolist(),
                "y": self.counterexample.y.astype(float).tolist(),
                "case": self.counterexample.case,
            }
        if self.certificate is not None:
            describe = getattr(self.certificate, "to_dict", None)
            payload["certificate"] = _plain(describe() if describe else repr(self.certificate))
        return payload

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
