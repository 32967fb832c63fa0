"""``certified_accuracy.png``: certified accuracy against epsilon, one curve per method, on one figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verifier.certification.result import CertifyResult

#: colours, line styles and markers; widths decrease along the method order so equal curves stay visible
STYLE = {
    "clean": dict(color="black", linestyle=":", marker="o", linewidth=3.0),
    "pgd": dict(color="tab:red", linestyle="--", marker="v", linewidth=2.6),
    "ibp": dict(color="tab:gray", marker="s", linewidth=2.2),
    "crown": dict(color="tab:blue", marker="^", linewidth=2.0),
    "alpha": dict(color="tab:cyan", marker="D", linewidth=1.6),
    "lipschitz": dict(color="tab:purple", marker="P", linewidth=2.2),
    "complete": dict(color="tab:green", linestyle=(0, (3, 2)), marker="x", linewidth=1.2),
    "smoothing": dict(color="tab:orange", linestyle="-.", marker="*", linewidth=1.4),
}


def plot_certified_accuracy(result: CertifyResult, path: str | Path, title: str = "") -> None:
    """Save the figure (Agg backend, no display). Fixed-epsilon runs draw each method's accuracy at the
    run's epsilons; radius runs draw the curves from the radii, densely up to the largest epsilon."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = max(result.eps) if result.eps else 1.0
    figure = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for method in result.methods:
        style = dict(STYLE.get(method, {}))
        marker = style.pop("marker", "o")
        label = method + {"smoothing": " (probabilistic)", "pgd": " (attack)"}.get(method, "")
        dense = result.radius_mode or method in ("smoothing", "lipschitz")
        points = list(result.eps)
        if dense and top > 0:
            grid = np.linspace(0.0, top, 300)
            values = [result.accuracy(method, e) for e in grid]
            axes.plot(grid, values, label=label, drawstyle="steps-post", **style)
            axes.plot(points, [result.accuracy(method, e) for e in points], marker, markersize=4,
                      color=style.get("color"))
        else:
            # at epsilon 0 every deterministic certificate is the clean accuracy (the ball is a point)
            values = [result.accuracy(method, e) for e in points]
            if points and points[0] > 0:
                points, values = [0.0] + points, [result.accuracy("clean", 0.0)] + values
            axes.plot(points, values, marker=marker, markersize=4, label=label, **style)
    axes.set_xlabel(("L-infinity" if result.norm == "linf" else "L2") + " radius epsilon")
    axes.set_ylabel("certified accuracy")
    axes.set_ylim(0, 1.02)
    axes.set_xlim(0, top if top > 0 else 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(str(path))
