"""What a certification run returns: one row per input, and certified accuracy per method and epsilon.

Columns of a row (also the header of ``certify.csv``):

* ``index, label, prediction, correct``: the input's position in the dataset, its label, the model's top
  class and whether that is the label (a strict top class);
* per epsilon ``e`` and method ``m`` (fixed-epsilon runs): ``m@e``, 1 when ``m`` certifies the input at
  ``e`` (for ``pgd``: the attack found nothing), 0 otherwise; ``complete_status@e`` the verifier's answer
  (``certified``, also when a cheaper method proved it; ``falsified``: the verifier's own counterexample;
  ``attacked``: PGD's, so the verifier was not run; ``timeout``; ``unknown``; ``misclassified``);
* per method (``--radius`` runs): ``m_radius``, the largest epsilon ``m`` certifies (bisection to the run's
  tolerance, capped at its largest epsilon) and for ``pgd`` the smallest epsilon at which the attack found
  an adversarial input (``inf`` if none up to the cap; ``null`` in JSON): an upper bound on every certified radius;
* ``lipschitz_radius`` and ``smoothing_prediction, smoothing_radius`` (closed forms, in every run);
* ``m_time_s``: seconds spent on the input by method ``m`` (a batched method's time is shared equally by
  the inputs of its batch).

A method's certificate is reused by the more expensive ones (``ibp -> crown -> alpha -> complete``, and
``lipschitz -> complete``): each column counts the inputs that method *or a cheaper one in its chain*
proves; the stronger methods would prove them too, and so the columns are ordered.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

#: every method, cheapest first (the order of the columns)
ALL_METHODS = ("clean", "pgd", "ibp", "crown", "alpha", "lipschitz", "complete", "smoothing")
#: the deterministic certificates
DETERMINISTIC = ("ibp", "crown", "alpha", "lipschitz", "complete")
#: methods that produce one column per epsilon
PER_EPS = ("pgd", "ibp", "crown", "alpha", "lipschitz", "complete")


def eps_key(eps: float) -> str:
    """How an epsilon is written in column names and JSON keys (``%g``)."""
    return f"{eps:g}"


def row_fields(methods: list[str], eps: list[float], radius_mode: bool) -> list[str]:
    """The columns of a row, in the order of the CSV file (see the module docstring)."""
    fields = ["index", "label", "prediction", "correct"]
    per_eps = [m for m in methods if m in PER_EPS]
    if radius_mode:
        fields += [f"{m}_radius" for m in per_eps]
    else:
        for e in eps:
            fields += [f"{m}@{eps_key(e)}" for m in per_eps]
            if "complete" in methods:
                fields.append(f"complete_status@{eps_key(e)}")
        if "lipschitz" in methods:
            fields.append("lipschitz_radius")
    if "smoothing" in methods:
        fields += ["smoothing_prediction", "smoothing_radius"]
    fields += [f"{m}_time_s" for m in methods]
    return fields


def parse_value(field: str, text: str):
    """A CSV cell back as a number (statuses stay strings)."""
    if field.startswith("complete_status"):
        return text
    if field in ("index", "label", "prediction", "correct", "smoothing_prediction") or "@" in field:
        return int(text)
    return float(text)


def format_value(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer, str)):
        return str(value)
    return repr(float(value))  # the shortest text that reads back to the same float


class CertifyResult:
    """The rows of a run (``rows``: one dict per input, see the module docstring) with its settings, and
    certified accuracy per method and epsilon.

    ``certified(method, eps)`` and ``accuracy(method, eps)`` answer for any method of the run (``clean``
    included); ``average_radius(method)`` in radius runs (and always for ``lipschitz`` and ``smoothing``);
    ``summary()`` is the JSON-ready digest, ``table()`` (also ``str(result)``) the printed table,
    ``column(name)`` one column as an array, ``to_pandas()`` a DataFrame when pandas is installed."""

    def __init__(self, rows: list[dict], settings: dict, extras: dict | None = None):
        self.rows = sorted(rows, key=lambda r: r["index"])
        self.settings = settings
        self.extras = extras or {}
        self.methods: list[str] = list(settings["methods"])
        self.eps: list[float] = list(settings["eps"])
        self.norm: str = settings["norm"]
        self.radius_mode: bool = bool(settings["radius"])

    # -- columns -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def fields(self) -> list[str]:
        return row_fields(self.methods, self.eps, self.radius_mode)

    def column(self, name: str) -> np.ndarray:
        """One column over the rows, in dataset order."""
        return np.array([row[name] for row in self.rows])

    def to_pandas(self):
        """The rows as a ``pandas.DataFrame`` (pandas is optional)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("to_pandas() needs pandas (pip install pandas); result.rows holds the same "
                              "table as a list of dicts") from None
        return pandas.DataFrame(self.rows, columns=self.fields)

    # -- certified accuracy --------------------------------------------------------------------------
    def certified(self, method: str, eps: float) -> np.ndarray:
        """Per input, whether ``method`` certifies it at ``eps`` (for ``pgd``: the attack found nothing;
        for ``smoothing``: a probabilistic certificate about the smoothed classifier)."""
        if method not in self.methods:
            raise ValueError(f"method {method!r} was not run; the run has {', '.join(self.methods)}")
        eps = float(eps)
        if not self.rows:
            return np.zeros(0, dtype=bool)
        correct = self.column("correct").astype(bool)
        if method == "clean":
            return correct
        if method == "smoothing":
            scale = 1.0 if self.norm == "l2" else math.sqrt(self.settings["input_size"])
            right = self.column("smoothing_prediction") == self.column("label")
            return right & (self.column("smoothing_radius") >= eps * scale)
        if not self.radius_mode and any(math.isclose(eps, e, rel_tol=0, abs_tol=1e-15) for e in self.eps):
            key = eps_key(min(self.eps, key=lambda e: abs(e - eps)))
            return self.column(f"{method}@{key}").astype(bool)
        if self.radius_mode or method == "lipschitz":
            radius = self.column(f"{method}_radius")
            if eps == 0:
                return correct
            if method == "pgd":
                return correct & (eps < radius)
            return correct & (radius >= eps)
        raise ValueError(f"epsilon {eps:g} is not one of this run's ({', '.join(map(eps_key, self.eps))}); "
                         "use --radius runs for any epsilon")

    def accuracy(self, method: str, eps: float) -> float:
        """The fraction of all inputs ``method`` certifies at ``eps``."""
        certified = self.certified(method, eps)
        return float(certified.mean()) if certified.size else float("nan")

    def average_radius(self, method: str) -> float | None:
        """The mean certified radius over all inputs (0 for misclassified ones): radius runs, ``lipschitz``
        and ``smoothing``; for ``pgd`` the mean attack radius (capped at the largest epsilon)."""
        if method == "smoothing" and "smoothing" in self.methods:
            right = self.column("smoothing_prediction") == self.column("label")
            return float(np.where(right, self.column("smoothing_radius"), 0.0).mean()) if self.rows else None
        name = f"{method}_radius"
        if method not in self.methods or not self.rows or name not in self.rows[0]:
            return None
        radius = self.column(name).astype(float)
        if method == "pgd":
            radius = np.minimum(radius, self.settings.get("radius_max") or max(self.eps))
        return float(np.where(self.column("correct").astype(bool), radius, 0.0).mean())

    # -- reports -------------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Settings, counts, certified accuracy per epsilon and method, average radii, time per method."""
        count = len(self.rows)
        accuracy = {eps_key(e): {m: self.accuracy(m, e) for m in self.methods} for e in self.eps}
        radii = {m: self.average_radius(m) for m in self.methods if self.average_radius(m) is not None}
        times = {m: float(self.column(f"{m}_time_s").sum()) if count else 0.0 for m in self.methods}
        summary = {**self.settings, "count": count, "certified_accuracy": accuracy, "average_radius": radii,
                   "time_s": times,
                   "time_per_input_s": {m: (t / count if count else float("nan")) for m, t in times.items()}}
        if "complete" in self.methods and not self.radius_mode:
            summary["complete_status"] = {eps_key(e): dict(Counter(self.column(f"complete_status@{eps_key(e)}")))
                                          for e in self.eps}
        summary.update(self.extras)
        return summary

    def table(self) -> str:
        """The summary as a text table: certified accuracy per epsilon (rows) and method (columns)."""
        summary = self.summary()
        deterministic = [m for m in self.methods if m != "smoothing"]
        where = "L-infinity" if self.norm == "linf" else "L2"
        clip = self.settings.get("clip")
        domain = f" intersected with [{clip[0]:g}, {clip[1]:g}]" if clip else ""
        lines = [f"certified accuracy: {summary['count']} inputs, {where} ball{domain}"
                 + (f" (radius mode, tolerance {self.settings['radius_tol']:.3g})" if self.radius_mode else "")]
        header = f"{'eps':>9s} " + " ".join(f"{m:>9s}" for m in deterministic)
        if "smoothing" in self.methods:
            header += f" | {'smoothing*':>10s}"
        lines.append(header)
        for e in self.eps:
            row = summary["certified_accuracy"][eps_key(e)]
            line = f"{eps_key(e):>9s} " + " ".join(f"{row[m]:>9.3f}" for m in deterministic)
            if "smoothing" in self.methods:
                line += f" | {row['smoothing']:>10.3f}"
            lines.append(line)
        if summary["average_radius"]:
            parts = ", ".join(f"{m} {r:.4g}" for m, r in summary["average_radius"].items())
            lines.append(f"average certified radius: {parts}"
                         + (" (pgd: mean attack radius, an upper bound)" if "pgd" in summary["average_radius"]
                            else ""))
        lines.append("time per input (ms): " + ", ".join(
            f"{m} {1000 * t:.3g}" for m, t in summary["time_per_input_s"].items()))
        if "complete_status" in summary:
            for key, counts in summary["complete_status"].items():
                lines.append(f"complete at eps {key}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if "smoothing" in self.methods:
            smoothing = self.settings.get("smoothing", {})
            lines.append(f"* smoothing: probabilistic (holds with probability {1 - smoothing.get('alpha', 0):g}), "
                         f"about the Gaussian-smoothed classifier (sigma {smoothing.get('sigma')}), not the network"
                         + ("; L-infinity eps read as L2 radius eps*sqrt(d)" if self.norm == "linf" else ""))
        for note in summary.get("notes", []):
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return (f"CertifyResult({len(self.rows)} inputs, methods={self.methods}, eps={self.eps}, "
                f"norm={self.norm!r}, radius={self.radius_mode})")
