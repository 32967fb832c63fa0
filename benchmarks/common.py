"""Shared helpers for the benchmark scripts: paths, network lists, timing."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "benchmarks"
sys.path.insert(0, str(ROOT))


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, budget_s: float = 20.0) -> float:
    """Median wall time of ``fn()`` over ``repeats`` warm calls (fewer when one call is slow)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return statistics.median(times)


def family_networks(family: str, limit: int | None = None) -> list[Path]:
    files = sorted((SHARED / family / "onnx").glob("*.onnx"))
    return files[:limit] if limit else files
