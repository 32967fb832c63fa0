"""Ground truth of a benchmark family: ``ground_truth.csv`` beside its ``instances.csv``.

One row per instance (``onnx``, ``vnnlib`` as in instances.csv) with

- ``consensus``: ``unsat``, ``sat`` or ``unknown`` (no tool settled it), and its ``confidence`` (``high``,
  ``medium``, ...) and ``basis``;
- ``best_tool`` and ``best_time_s``: the fastest correct tool of the competition (the per-instance *virtual
  best*), on the competition's hardware;
- ``<tool>@<year>`` and ``<tool>@<year>_time_s``: each leading tool's answer and time that year (empty where
  it did not run the instance; ``timeout(late)`` and the like for answers after the timeout).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from verifier.errors import VerifierError


@dataclass(frozen=True)
class ToolAnswer:
    """A competition tool's answer on one instance: ``result`` (sat, unsat, unknown, timeout, error) and time."""

    result: str
    time_s: float | None


@dataclass(frozen=True)
class GroundTruth:
    """What is known about one instance (see the module docstring)."""

    consensus: str
    confidence: str = ""
    basis: str = ""
    best_tool: str = ""
    best_time_s: float | None = None
    tools: dict[str, ToolAnswer] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """Whether the consensus is ``sat`` or ``unsat`` with high confidence (the only kind that can make an
        answer *incorrect*)."""
        return self.consensus in ("sat", "unsat") and self.confidence == "high"


def ground_truth_beside(instances_csv: str | Path) -> Path | None:
    """``ground_truth.csv`` in the folder of ``instances_csv``, or None if there is none."""
    path = Path(instances_csv).resolve().parent / "ground_truth.csv"
    return path if path.is_file() else None


def read_ground_truth(path: str | Path) -> dict[tuple[str, str], GroundTruth]:
    """The ground truth of every instance in ``path``, keyed by ``(onnx, vnnlib)`` as in instances.csv."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if not {"onnx", "vnnlib", "consensus"} <= set(columns):
            raise VerifierError(f"{path}: a ground-truth file needs the columns onnx, vnnlib and consensus")
        tools = [c for c in columns if "@" in c and not c.endswith("_time_s")]
        truth = {}
        for row in reader:
            answers = {}
            for tool in tools:
                result = normalize_answer(row.get(tool, ""))
                if result is not None:
                    answers[tool] = ToolAnswer(result, _number(row.get(f"{tool}_time_s", "")))
            truth[row["onnx"].strip(), row["vnnlib"].strip()] = GroundTruth(
                consensus=(row.get("consensus") or "unknown").strip().lower() or "unknown",
                confidence=(row.get("confidence") or "").strip().lower(),
                basis=(row.get("basis") or "").strip(),
                best_tool=(row.get("best_tool") or "").strip(),
                best_time_s=_number(row.get("best_time_s", "")),
                tools=answers,
            )
    return truth


def normalize_answer(text: str | None) -> str | None:
    """A competition answer as one of sat, unsat, unknown, timeout, error; None where the tool did not run.

    Answers given after the timeout (``timeout(late)``, ``unknown(late)``, ``sat(late)``...) count as timeout.
    """
    answer = (text or "").strip().lower()
    if not answer or answer in ("-", "none", "n/a"):
        return None
    if "late" in answer or answer.startswith("timeout"):
        return "timeout"
    aliases = {"holds": "unsat", "violated": "sat", "unsat": "unsat", "sat": "sat", "unknown": "unknown"}
    return aliases.get(answer, "error")


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None
