"""Scoring by the VNN-COMP rules on a hand-made results table and ground truth, numbers worked out by hand."""

from __future__ import annotations

import pytest

from verifier.bench.report import disagreement_lines, markdown_table, summary_dict
from verifier.bench.score import judge, score_family
from verifier.bench.store import ResultStore
from verifier.bench.truth import GroundTruth, read_ground_truth

TRUTH = """\
onnx,vnnlib,timeout,consensus,confidence,basis,best_tool,best_time_s,t@2022,t@2022_time_s,u@2023,u@2023_time_s
a.onnx,p1.vnnlib,60,unsat,high,unsat claims only,u@2023,1.0,unsat,2.0,unsat,1.0
a.onnx,p2.vnnlib,60,sat,high,validated counterexample,t@2022,3.0,sat,3.0,timeout(late),61.0
a.onnx,p3.vnnlib,60,unknown,,no tool solved it,,,unknown,60.0,,
a.onnx,p4.vnnlib,60,sat,medium,conflict,u@2023,4.0,unsat,5.0,sat,4.0
a.onnx,p5.vnnlib,60,unsat,high,unsat claims only,u@2023,10.0,sat,1.0,unsat,10.0
"""

# ours: p1 right, p2 unsat against a validated counterexample, p3 a new sat, p4 unsat against a medium sat,
# p5 sat whose witness failed, p6 (no ground truth) crashed
RESULTS = """category,onnx,vnnlib,prepare_s,result,runtime_s,verify_s,witness
fam,a.onnx,p1.vnnlib,0,unsat,2.0,0.5,
fam,a.onnx,p2.vnnlib,0,unsat,3.0,1.5,
fam,a.onnx,p3.vnnlib,0,sat,4.0,2.5,valid
fam,a.onnx,p4.vnnlib,0,unsat,6.0,4.5,
fam,a.onnx,p5.vnnlib,0,sat,1.0,0.2,invalid: listed outputs differ from onnxruntime's
fam,a.onnx,p6.vnnlib,0,error,0.5,,
"""


@pytest.fixture
def scored(tmp_path):
    (tmp_path / "ground_truth.csv").write_text(TRUTH)
    (tmp_path / "results.csv").write_text(RESULTS)
    outcomes = list(ResultStore(tmp_path / "results.csv").load().values())
    return score_family("fam", outcomes, read_ground_truth(tmp_path / "ground_truth.csv"))


def test_our_tally(scored):
    ours = scored.ours
    assert (ours.instances, ours.unsat, ours.sat, ours.unknown, ours.timeout, ours.error, ours.incorrect) == \
        (6, 2, 1, 0, 0, 1, 2)
    assert ours.score == 10 + 10 + 10 - 150 - 150
    assert ours.unconfirmed == 2  # p3 (no consensus) and p4 (medium-confidence sat)
    assert ours.total_time_s == pytest.approx(16.5)
    assert ours.median_time_s == pytest.approx(4.0)  # solved: 2.0, 4.0, 6.0
    assert scored.ours_no_startup.median_time_s == pytest.approx(2.5)  # 0.5, 2.5, 4.5


def test_disagreements_listed(scored):
    lines = disagreement_lines([scored])
    assert len(lines) == 3
    assert lines[0].startswith("INCORRECT: fam a.onnx p2.vnnlib: answered unsat, consensus sat (high")
    assert lines[1].startswith("UNCONFIRMED: fam a.onnx p4.vnnlib: answered unsat, consensus sat (medium")
    assert lines[2].startswith("INCORRECT: fam a.onnx p5.vnnlib: sat without a valid witness (invalid: listed")
    assert [o.vnnlib for o in scored.new_answers] == ["p3.vnnlib"]


def test_best_tool_and_virtual_best(scored):
    best = scored.best_tool
    # u@2023: p1 +10, p2 timeout, p3 not run, p4 +10, p5 +10; t@2022: +10 +10 0 +10(unconfirmed) -150
    assert best.solver == "u@2023" and best.score == 30 and best.not_run == 2 and best.timeout == 1
    assert best.median_time_s == pytest.approx(4.0)
    virtual = scored.virtual_best
    assert (virtual.solved, virtual.score, virtual.not_run, virtual.unknown) == (4, 40, 1, 1)


def test_report_renders(scored):
    table = markdown_table([scored])
    assert "| fam | ours | 6 | 2 | 1 | 0 | 0 | 1 | 2 | -270 |" in table
    assert "| fam | best tool: u@2023 | 4 of 6 | 2 | 1 | 0 | 1 | 0 | 0 | 30 |" in table
    summary = summary_dict([scored], {"command": "x"})
    assert summary["score"] == -270 and summary["incorrect"] == 2 and summary["disagreements"] == 3


@pytest.mark.parametrize("result, consensus, confidence, witness_valid, verdict", [
    ("unsat", "unsat", "medium", None, "correct"),
    ("unsat", "sat", "high", None, "incorrect"),
    ("unsat", "sat", "low", None, "unconfirmed"),
    ("unsat", "unknown", "", None, "unconfirmed"),
    ("sat", "unsat", "high", True, "correct"),  # a valid witness outweighs the consensus
    ("sat", "unsat", "high", None, "incorrect"),  # a competition tool's sat against a settled unsat
    ("sat", "sat", "high", False, "incorrect"),  # right answer, bad witness
    ("timeout", "sat", "high", None, "unsolved"),
    ("error", "unsat", "high", None, "unsolved"),
])
def test_judge(result, consensus, confidence, witness_valid, verdict):
    judgement = judge(result, GroundTruth(consensus, confidence), witness_valid)
    assert judgement.verdict == verdict
    assert judgement.points == {"correct": 10, "unconfirmed": 10, "incorrect": -150, "unsolved": 0}[verdict]


def test_without_ground_truth_every_answer_is_unconfirmed(tmp_path):
    (tmp_path / "results.csv").write_text(RESULTS)
    score = score_family("fam", list(ResultStore(tmp_path / "results.csv").load().values()), None)
    assert score.best_tool is None and not score.has_truth
    assert score.ours.unconfirmed == 4 and score.ours.incorrect == 1 and score.ours.score == 40 - 150
