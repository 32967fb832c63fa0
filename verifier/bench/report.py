"""Reports of a benchmark run: the summary table (Markdown and console), the JSON summary and the cactus plot.

The cactus plot is the standard VNN-COMP figure: for each solver, its solved instances sorted by time, the
k-th point at (k, time of the k-th fastest), on a log time axis; a curve further right solves more, a lower
one solves faster.
Only correct or unconfirmed answers count as solved; the competition's times come from ground_truth.csv and
were measured on the competition's hardware.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verifier.bench.score import FamilyScore, Tally

TABLE_COLUMNS = ("family", "solver", "instances", "unsat", "sat", "unknown", "timeout", "error", "incorrect",
                 "score", "total time (s)", "median time (s)", "median w/o start-up (s)")


def _seconds(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def table_rows(scores: Sequence[FamilyScore]) -> list[list[str]]:
    """Rows of the summary table: per family ours, the best competition tool and the virtual best."""
    rows = []

    def row(family: str, solver: str, tally: Tally, no_startup: Tally | None = None) -> list[str]:
        ran = tally.instances - tally.not_run
        instances = str(tally.instances) if not tally.not_run else f"{ran} of {tally.instances}"
        return [family, solver, instances, str(tally.unsat), str(tally.sat), str(tally.unknown),
                str(tally.timeout), str(tally.error), str(tally.incorrect), str(tally.score),
                _seconds(tally.total_time_s, 1), _seconds(tally.median_time_s),
                _seconds(no_startup.median_time_s) if no_startup else "-"]

    for score in scores:
        rows.append(row(score.family, "ours", score.ours, score.ours_no_startup))
        if score.best_tool is not None:
            rows.append(row(score.family, f"best tool: {score.best_tool.solver}", score.best_tool))
        if score.virtual_best is not None:
            rows.append(row(score.family, "virtual best", score.virtual_best))
    if len(scores) > 1:
        total, fast = Tally("ours"), Tally("ours")
        for score in scores:
            for name in ("instances", "unsat", "sat", "unknown", "timeout", "error", "incorrect", "not_run",
                         "score", "total_time_s"):
                setattr(total, name, getattr(total, name) + getattr(score.ours, name))
            total.times += score.ours.times
            fast.times += score.ours_no_startup.times
        rows.append(row("all", "ours", total, fast))
    return rows


def markdown_table(scores: Sequence[FamilyScore]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(scores)]
    return "\n".join(lines)


def text_table(scores: Sequence[FamilyScore]) -> str:
    """The summary table aligned for a terminal."""
    header = ["family", "solver", "inst", "unsat", "sat", "unkn", "t/o", "err", "wrong", "score", "total s",
              "median s", "w/o start"]
    rows = [header] + table_rows(scores)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def disagreement_lines(scores: Sequence[FamilyScore]) -> list[str]:
    """One line per answer that contradicts the ground truth or whose witness failed."""
    lines = []
    for score in scores:
        for outcome, judgement in score.disagreements:
            lines.append(f"{judgement.verdict.upper()}: {outcome.category} {outcome.onnx} {outcome.vnnlib}: "
                         f"{judgement.disagreement}")
    return lines


def summary_dict(scores: Sequence[FamilyScore], run: dict[str, Any]) -> dict[str, Any]:
    """Everything of the summary as plain data (``summary.json`` and ``--json``)."""
    return {
        "run": run,
        "families": {
            s.family: {
                "ours": s.ours.to_dict(),
                "ours_without_startup": s.ours_no_startup.to_dict(),
                "best_tool": s.best_tool.to_dict() if s.best_tool else None,
                "virtual_best": s.virtual_best.to_dict() if s.virtual_best else None,
                "ground_truth": s.has_truth,
                "disagreements": [{"onnx": o.onnx, "vnnlib": o.vnnlib, "result": o.result, "verdict": j.verdict,
                                   "reason": j.disagreement} for o, j in s.disagreements],
                "new_answers": [{"onnx": o.onnx, "vnnlib": o.vnnlib, "result": o.result} for o in s.new_answers],
                "unsat_proofs": dict(s.proofs),
            }
            for s in scores
        },
        "score": sum(s.ours.score for s in scores),
        "incorrect": sum(s.ours.incorrect for s in scores),
        "disagreements": len(disagreement_lines(scores)),
    }


def proof_lines(scores: Sequence[FamilyScore]) -> list[str]:
    """Per family, how many ``unsat`` answers are float-sound and what the others rest on (markdown bullets)."""
    lines = []
    for score in scores:
        total = sum(score.proofs.values())
        if not total:
            continue
        sound = score.proofs.get("float-sound", 0)
        others = "; ".join(f"{count}: {label}" for label, count in sorted(score.proofs.items(), key=lambda x: -x[1])
                           if label != "float-sound")
        lines.append(f"- {score.family}: {sound} of {total} float-sound" + (f" ({others})" if others else ""))
    return lines


def startup_line(run: dict[str, Any]) -> str:
    """What each instance paid before the verifier's clock started, per the run's isolation."""
    startup = _seconds(run.get("startup_s"), 3)
    if run.get("isolation") == "fork":
        return (f"isolation fork: instance start-up (fork of a warm server that imported the verifier once per "
                f"worker; median over the instances run now): {startup} s")
    return f"isolation process: process start-up (`python -c 'import verifier'`, measured once): {startup} s"


def write_summary(scores: Sequence[FamilyScore], run: dict[str, Any], path: str | Path) -> None:
    """``summary.md``: the table, every disagreement, new answers, and the rules the numbers follow."""
    lines = [
        "# Benchmark run",
        "",
        f"- command: `{run.get('command', '')}`",
        f"- instances: {run.get('instances', '?')} ({run.get('ran', '?')} run now, {run.get('resumed', 0)} "
        f"from an earlier run); jobs {run.get('jobs', '?')}; timeout scale {run.get('timeout_scale', 1)}",
        f"- {startup_line(run)}; every runtime includes it, as in VNN-COMP; the last column subtracts each "
        "instance's own start-up (its wall time less the time the verifier reports)",
        f"- wall time of this session: {_seconds(run.get('wall_s'), 1)} s",
        "",
        "## Results per family",
        "",
        markdown_table(scores),
        "",
        "Score: +10 correct, -150 incorrect (VNN-COMP, without the time bonus). `incorrect` answers are not "
        "counted in `unsat`/`sat`. Median times are over solved instances. The competition tools' rows come "
        "from ground_truth.csv (their hardware, often a GPU or many cores) over the same instances; `best "
        "tool` is the one with the highest score there, `virtual best` the fastest correct tool per instance.",
        "",
    ]
    lines += ["## What the `unsat` answers rest on", ""]
    lines += proof_lines(scores) or ["No `unsat` answers."]
    lines += ["", "`float-sound`: the proof holds in exact arithmetic for the network as stored (every refutation "
              "past a rigorous bound on its rounding error); otherwise the verifier's label says what it rests on.",
              ""]
    disagreements = disagreement_lines(scores)
    lines += ["## Disagreements with the ground truth", ""]
    lines += [f"- **{line}**" for line in disagreements] or ["None."]
    news = [(s.family, o) for s in scores for o in s.new_answers]
    if news:
        lines += ["", "## Answers where the ground truth has no settled consensus (unconfirmed, scored +10)", ""]
        lines += [f"- {family} {o.onnx} {o.vnnlib}: {o.result}" for family, o in news]
    no_truth = [s.family for s in scores if not s.has_truth]
    lines += ["", "## How answers are judged", "",
              "- `sat` counts only with a witness that the runner re-checks in onnxruntime on the original "
              "file (outputs within relative 1e-3 of onnxruntime's, input in the box and constraints met "
              "within 1e-4); otherwise it is incorrect. A valid witness is correct even against the consensus.",
              "- `unsat` is incorrect only against a high-confidence `sat` consensus.",
              "- Where the consensus is `unknown`, of lower confidence against us, or missing, an answer is "
              "*unconfirmed*: it scores +10 (VNN-COMP credits what no valid counterexample refutes) and is "
              "listed above."]
    if no_truth:
        lines += [f"- No ground_truth.csv for: {', '.join(no_truth)} (every answer unconfirmed)."]
    Path(path).write_text("\n".join(lines) + "\n")


def plot_cactus(scores: Sequence[FamilyScore], path: str | Path) -> None:
    """``cactus.png``: solved instances against time per family, ours against the competition (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    count = max(len(scores), 1)
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(5.2 * columns, 4.0 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for index, score in enumerate(scores):
        axes = figure.add_subplot(rows, columns, index + 1)
        series = [(score.ours, "ours", "C0", "-"), (score.ours_no_startup, "ours w/o process start-up", "C0", ":")]
        if score.best_tool is not None:
            series.append((score.best_tool, f"{score.best_tool.solver} (VNN-COMP)", "C3", "-"))
        if score.virtual_best is not None:
            series.append((score.virtual_best, "virtual best (VNN-COMP)", "0.5", "--"))
        for tally, label, color, style in series:
            times = sorted(max(t, 1e-2) for t in tally.times)
            axes.plot(range(1, len(times) + 1), times, color=color, linestyle=style,
                      marker="." if len(times) < 40 else None, label=f"{label}: {len(times)}")
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 2, 30 rather than 5x10^-1
        axes.yaxis.set_minor_formatter(FuncFormatter(  # label 2..9 too when the axis spans few decades
            lambda v, _, a=axes: f"{v:g}" if a.get_ylim()[1] < 30 * a.get_ylim()[0] else ""))
        axes.set_xlim(0, max(score.ours.instances, 1))
        axes.set_xlabel("instances solved")
        axes.set_ylabel("time (s)")
        axes.set_title(f"{score.family} ({score.ours.instances} instances)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small", loc="lower right")
    if not scores:
        figure.add_subplot(1, 1, 1).set_title("no instances")
    figure.savefig(str(path), dpi=110)
