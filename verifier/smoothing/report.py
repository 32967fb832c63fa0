"""Reporting smoothing runs: certified accuracy against radius, per-input rows as CSV, the curve as a PNG.

Certified accuracy at radius ``r`` (Cohen et al. 2019, Sec. 4): the fraction of test inputs that
CERTIFY classifies correctly with a certified radius of at least ``r``; abstentions count as wrong.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: the columns of a per-input row, in the order of the CSV file
ROW_FIELDS = ("index", "label", "prediction", "radius", "correct", "time_s")


@dataclass(frozen=True)
class CertifiedRow:
    """One input's CERTIFY outcome: ``prediction`` is -1 on abstention, ``radius`` 0 then."""

    index: int
    label: int
    prediction: int
    radius: float
    correct: bool
    time_s: float


def certified_accuracy(rows: Sequence[CertifiedRow], radii: Sequence[float]) -> dict[float, float]:
    """Certified accuracy at each radius: fraction of rows correct with ``radius >= r``."""
    if not rows:
        return {float(r): float("nan") for r in radii}
    radius = np.array([row.radius for row in rows])
    correct = np.array([row.correct for row in rows])
    return {float(r): float((correct & (radius >= r)).mean()) for r in radii}


def write_csv(rows: Sequence[CertifiedRow], path: Path) -> None:
    """The rows as CSV with a header line (:data:`ROW_FIELDS`)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["correct"] = int(row.correct)
            record["radius"] = f"{row.radius:.6g}"
            record["time_s"] = f"{row.time_s:.6g}"
            writer.writerow(record)


def plot_certified_accuracy(curves: dict[str, Sequence[CertifiedRow]], path: Path, title: str = "",
                            max_radius: float | None = None) -> None:
    """Certified accuracy against L2 radius, one step curve per named run, saved as a PNG (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    largest = max([row.radius for rows in curves.values() for row in rows] + [0.0])
    top = max_radius if max_radius is not None else max(1.0, 1.1 * largest)
    grid = np.linspace(0.0, top, 400)
    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, rows in curves.items():
        accuracy = certified_accuracy(rows, grid)
        axes.plot(grid, list(accuracy.values()), label=name, drawstyle="steps-post")
    axes.set_xlabel("L2 radius")
    axes.set_ylabel("certified accuracy")
    axes.set_ylim(0, 1.02)
    axes.set_xlim(0, top)
    axes.grid(alpha=0.3)
    if curves:
        axes.legend(loc="upper right")
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
