"""Benchmark runs: a VNN-COMP ``instances.csv`` run instance by instance, scored, with reports.

The path from a file on disk to a report::

    instances.csv --(instances)--> Instance rows --(runner: executor, worker)--> Outcome per instance
        --(store)--> results.csv --(score, against truth: ground_truth.csv)--> (report) summary.md, cactus.png

Every instance runs in its own verifier process under a hard deadline (``worker``): a fresh one, or a child
forked by a warm server that imported the verifier once (``forkserver``, ``forkclient``); an executor decides
where (``executor``: a local process pool; a distributed engine can replace it). ``sat`` answers are
re-checked in onnxruntime by the runner itself (``witness``).
"""

from verifier.bench.executor import Executor, InlineExecutor, LocalExecutor
from verifier.bench.instances import Instance, InstancesError, read_instances, select_rows
from verifier.bench.outcome import COLUMNS, Outcome
from verifier.bench.runner import BenchOptions, BenchReport, run_benchmark
from verifier.bench.score import FamilyScore, Judgement, Tally, judge, score_family
from verifier.bench.store import ResultsFileError, ResultStore
from verifier.bench.truth import GroundTruth, ground_truth_beside, read_ground_truth
from verifier.bench.witness import WitnessVerdict, check_result_text, check_witness
from verifier.bench.worker import Task, run_task

__all__ = [
    "COLUMNS",
    "BenchOptions",
    "BenchReport",
    "Executor",
    "FamilyScore",
    "GroundTruth",
    "InlineExecutor",
    "Instance",
    "InstancesError",
    "Judgement",
    "LocalExecutor",
    "Outcome",
    "ResultStore",
    "ResultsFileError",
    "Tally",
    "Task",
    "WitnessVerdict",
    "check_result_text",
    "check_witness",
    "ground_truth_beside",
    "judge",
    "read_ground_truth",
    "read_instances",
    "run_benchmark",
    "run_task",
    "score_family",
    "select_rows",
]
