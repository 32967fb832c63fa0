"""Scoring a benchmark run by the VNN-COMP rules, against the ground truth where there is one.

Per instance (:func:`judge`):

- ``sat`` with a witness that fails the runner's onnxruntime check is **incorrect** (-150), whatever the
  ground truth; with a valid witness it is **correct** (+10): the witness is a proof, even against an
  ``unsat`` consensus (that contradiction is listed as a disagreement).
- ``unsat`` is **incorrect** (-150) only against a *high-confidence* ``sat`` consensus (a validated
  counterexample exists); against ``unsat`` it is **correct** (+10).
- an answer the ground truth cannot settle -- consensus ``unknown``, no ground-truth row, or a contrary
  consensus of lower confidence -- is **unconfirmed** and earns +10, as VNN-COMP credits an ``unsat`` that no
  valid counterexample refutes; a contrary low-confidence consensus is still listed as a disagreement.
- ``unknown``, ``timeout``, ``error``: 0.

Competition tools in ground_truth.csv are judged by the same rules, their ``sat`` answers taken as valid
(their witnesses were checked when the consensus was built). The VNN-COMP time bonus (+2 fastest, +1 second)
is left out: it needs every tool's run on the same hardware.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from verifier.bench.outcome import Outcome
from verifier.bench.truth import GroundTruth

POINTS = {"correct": 10, "unconfirmed": 10, "incorrect": -150, "unsolved": 0}
UNSOLVED = ("unknown", "timeout", "error")


@dataclass(frozen=True)
class Judgement:
    """How one answer scores: ``verdict`` (correct, unconfirmed, incorrect, unsolved), its ``points``, and a
    ``disagreement`` line where the answer contradicts the ground truth or its witness failed."""

    verdict: str
    points: int
    disagreement: str = ""


def judge(result: str, truth: GroundTruth | None, witness_valid: bool | None = None,
          witness: str = "") -> Judgement:
    """Score one answer by the rules of the module docstring. ``witness_valid``: for ``sat``, whether the
    witness check passed (``None``: not our run, taken as valid); ``witness``: the check's description."""
    if result not in ("sat", "unsat"):
        return Judgement("unsolved", 0)
    consensus = truth.consensus if truth else "unknown"
    confidence = truth.confidence if truth else ""
    if result == "sat" and witness_valid is False:
        return Judgement("incorrect", POINTS["incorrect"], f"sat without a valid witness ({witness or 'none'})"
                         + (f"; consensus {consensus}" if truth else ""))
    if consensus == result:
        return Judgement("correct", POINTS["correct"])
    if consensus in ("sat", "unsat"):  # a contrary consensus
        note = f"answered {result}, consensus {consensus} ({confidence or 'no'} confidence: {truth.basis})"
        if result == "sat" and witness_valid:
            return Judgement("correct", POINTS["correct"], note + "; our witness validates in onnxruntime")
        if result == "unsat" and consensus == "sat" and confidence == "high":
            return Judgement("incorrect", POINTS["incorrect"], note)
        if result == "sat" and consensus == "unsat" and confidence == "high":  # a tool's sat, not ours
            return Judgement("incorrect", POINTS["incorrect"], note)
        return Judgement("unconfirmed", POINTS["unconfirmed"], note)
    return Judgement("unconfirmed", POINTS["unconfirmed"])


@dataclass
class Tally:
    """Counts, score and times of one solver on one family.

    ``unsat``/``sat``: answers that are correct or unconfirmed; ``incorrect`` counts separately, so
    unsat + sat + unknown + timeout + error + incorrect + not_run = instances. ``times``: runtimes of the
    solved (correct or unconfirmed) answers; ``total_time_s``: runtime summed over every instance that ran.
    """

    solver: str
    instances: int = 0
    unsat: int = 0
    sat: int = 0
    unknown: int = 0
    timeout: int = 0
    error: int = 0
    incorrect: int = 0
    not_run: int = 0
    unconfirmed: int = 0
    score: int = 0
    total_time_s: float = 0.0
    times: list[float] = field(default_factory=list)

    @property
    def solved(self) -> int:
        return self.unsat + self.sat

    @property
    def median_time_s(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    def add(self, result: str | None, judgement: Judgement, time_s: float | None) -> None:
        """Count one instance: ``result`` None means the solver did not run it."""
        self.instances += 1
        if result is None:
            self.not_run += 1
            return
        self.total_time_s += time_s or 0.0
        self.score += judgement.points
        if judgement.verdict == "incorrect":
            self.incorrect += 1
        elif judgement.verdict in ("correct", "unconfirmed"):
            setattr(self, result, getattr(self, result) + 1)
            self.unconfirmed += judgement.verdict == "unconfirmed"
            if time_s is not None:
                self.times.append(time_s)
        else:
            setattr(self, result, getattr(self, result) + 1)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "times"}
        data.update(solved=self.solved, median_time_s=self.median_time_s)
        return data


@dataclass
class FamilyScore:
    """One family's scoring: our tally (wall time, and without process start-up), the best competition tool,
    the per-instance virtual best, and every disagreement with the ground truth."""

    family: str
    ours: Tally
    ours_no_startup: Tally
    best_tool: Tally | None
    virtual_best: Tally | None
    disagreements: list[tuple[Outcome, Judgement]]
    new_answers: list[Outcome]
    has_truth: bool
    #: what our ``unsat`` answers rest on: the verifier's ``stats["proof"]`` label (``float-sound``, or the
    #: engine's arithmetic with tolerance margins and why; ``not reported`` for a command that gives none)
    proofs: dict[str, int] = field(default_factory=dict)


def score_family(family: str, outcomes: Sequence[Outcome],
                 truth: dict[tuple[str, str], GroundTruth] | None) -> FamilyScore:
    """Score our outcomes on one family and, from ``truth``, the competition tools on the same instances."""
    truth = truth or {}
    ours, ours_fast = Tally("ours"), Tally("ours without process start-up")
    disagreements, new_answers = [], []
    proofs: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.result == "unsat":
            label = str((outcome.stats or {}).get("proof") or "not reported")
            proofs[label] = proofs.get(label, 0) + 1
        row = truth.get((outcome.onnx, outcome.vnnlib))
        judgement = judge(outcome.result, row, outcome.witness_valid, outcome.witness)
        ours.add(outcome.result, judgement, outcome.runtime_s)
        own = outcome.verify_s if outcome.verify_s is not None else outcome.runtime_s
        ours_fast.add(outcome.result, judgement, own)
        if judgement.disagreement:
            disagreements.append((outcome, judgement))
        elif judgement.verdict == "unconfirmed" and row is not None:
            new_answers.append(outcome)
    rows = [truth.get((o.onnx, o.vnnlib)) for o in outcomes]
    known = [r for r in rows if r is not None]
    return FamilyScore(family, ours, ours_fast, best_tool(rows) if known else None,
                       virtual_best(rows) if known else None, disagreements, new_answers, bool(known), proofs)


def tool_tallies(rows: Iterable[GroundTruth | None]) -> list[Tally]:
    """One tally per competition tool (``tool@year``) over the given instances' ground-truth rows."""
    rows = list(rows)
    names = sorted({name for row in rows if row for name in row.tools})
    tallies = []
    for name in names:
        tally = Tally(name)
        for row in rows:
            answer = row.tools.get(name) if row else None
            if answer is None:
                tally.add(None, Judgement("unsolved", 0), None)
                continue
            tally.add(answer.result, judge(answer.result, row), answer.time_s)
        tallies.append(tally)
    return tallies


def best_tool(rows: Sequence[GroundTruth | None]) -> Tally | None:
    """The competition tool with the highest score on these instances (then more solved, then less time)."""
    tallies = tool_tallies(rows)
    if not tallies:
        return None
    return max(tallies, key=lambda t: (t.score, t.solved, -t.total_time_s))


def virtual_best(rows: Sequence[GroundTruth | None]) -> Tally:
    """The per-instance fastest correct tool (``best_tool``/``best_time_s``): the consensus answer where one
    exists, in the best tool's time."""
    tally = Tally("virtual best (fastest tool per instance)")
    for row in rows:
        if row is None:
            tally.add(None, Judgement("unsolved", 0), None)
        elif row.consensus in ("sat", "unsat") and row.best_time_s is not None:
            tally.add(row.consensus, judge(row.consensus, row), row.best_time_s)
        else:
            tally.add("unknown", Judgement("unsolved", 0), None)
    return tally
