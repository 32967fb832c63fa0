"""Certify L2 robustness of a Gaussian-smoothed classifier by randomized smoothing (Cohen et al. 2019).

For each input of INPUTS.npz (arrays ``x``: [N, *input shape] or [N, input size], ``labels``: [N]),
CERTIFY draws n0 noisy copies to pick a class and n fresh ones to bound its probability pA from below;
it abstains when that bound is below 1/2 and otherwise certifies the radius sigma * Phi^-1(pA_lower).
Each certificate holds with probability 1 - alpha over the sampling and concerns the *smoothed*
classifier, not the network itself. The model must have been trained with Gaussian noise at sigma.

Prints one row per input (index, label, prediction, radius, correct, time; prediction -1 = abstain)
and the certified accuracy at a few radii; --out DIR also writes smooth.csv, certified_accuracy.png
and summary.json (an --out folder holding an earlier run's files is refused unless --overwrite); --json prints
one JSON object instead of the table (strict JSON: a rate that cannot be measured is null).

Examples:
  verifier smooth models/digits_smooth_mlp_sigma0.25.onnx models/digits_test.npz --sigma 0.25 --limit 50
  verifier smooth net.onnx inputs.npz --sigma 0.5 --n 100000 --alpha 0.001 --out results/smooth --json
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from verifier.commands.options import add_device_argument
from verifier.errors import ResourceLimitError, ShapeError, VerifierError, shorten
from verifier.limits import check_size, default_memory_limit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model file (the base classifier)")
    parser.add_argument("inputs", metavar="INPUTS.npz", help="NumPy .npz file with arrays 'x' and 'labels'")
    parser.add_argument("--sigma", type=float, required=True,
                        help="noise standard deviation (the sigma the model was trained at)")
    parser.add_argument("--n0", type=int, default=100, help="samples to select the class (default 100)")
    parser.add_argument("--n", type=int, default=100_000,
                        help="fresh samples to estimate its probability (default 100000)")
    parser.add_argument("--alpha", type=float, default=0.001,
                        help="failure probability of each certificate (default 0.001)")
    parser.add_argument("--batch", type=int, default=1000, help="noisy samples per forward pass (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise generator (default 0)")
    add_device_argument(parser, help_text="where the noise is drawn and the model runs: auto (the first CUDA GPU "
                        "torch sees, else the CPU; the default), cpu, cuda or cuda:N; on a GPU --backend auto "
                        "runs the IR there")
    parser.add_argument("--backend", choices=["auto", "ir", "onnxruntime"], default="auto",
                        help="how the model runs: our IR, onnxruntime, or auto (onnxruntime when it runs the "
                        "model in batches, else the IR, else onnxruntime one input at a time)")
    parser.add_argument("--skip", type=int, default=1, help="certify every SKIP-th input (default 1: all)")
    parser.add_argument("--limit", type=int, default=None, help="certify at most this many inputs")
    parser.add_argument("--radii", default="0,0.25,0.5,0.75,1.0",
                        help="comma-separated radii to report certified accuracy at (default 0,0.25,0.5,0.75,1.0)")
    parser.add_argument("--out", metavar="DIR", help="write smooth.csv, certified_accuracy.png and summary.json here "
                        "(a folder that already holds them is refused unless --overwrite is given)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar on stderr (default: when stderr is a terminal)")


def load_inputs(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``x`` and ``labels`` arrays of an .npz file, checked: same length, integer labels."""
    file = Path(path)
    if not file.is_file():
        raise VerifierError(f"inputs file not found: {file}")
    limit = default_memory_limit()
    with open(file, "rb") as handle:
        if handle.read(6) == b"\x93NUMPY":
            raise VerifierError(f"{file} holds one NumPy array (.npy); give an .npz with 'x' and 'labels'")
    try:
        with np.load(file, allow_pickle=False) as data:
            for member in data.zip.infolist():  # the sizes, before anything is unpacked or allocated
                check_size(f"{file}: member {shorten(member.filename)}", member.file_size, 1, limit)
                _check_npy_header(data.zip, member.filename, f"{file}: array {shorten(member.filename)}", limit)
            arrays = {key: data[key] for key in data.files}
    except (VerifierError, ResourceLimitError):
        raise
    except Exception as error:
        raise VerifierError(f"cannot read {file} as a NumPy .npz archive: {type(error).__name__}: "
                            f"{shorten(error, 120)}") from None
    missing = [key for key in ("x", "labels") if key not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "none"
        raise VerifierError(f"{file} lacks the array(s) {', '.join(missing)} (found: {found}); "
                            "it needs 'x' ([N, ...] inputs) and 'labels' ([N] class indices)")
    x, labels = arrays["x"], arrays["labels"]
    if labels.ndim != 1:
        raise ShapeError(f"'labels' in {file} must be one-dimensional [N], got shape {labels.shape}")
    if x.ndim < 2 or x.shape[0] != labels.shape[0]:
        raise ShapeError(f"'x' in {file} must be [N, ...] with N = {labels.shape[0]} labels, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ShapeError(f"'x' in {file} must be numeric, got dtype {x.dtype}")
    if not (np.issubdtype(labels.dtype, np.integer) or
            (np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0))):
        raise ShapeError(f"'labels' in {file} must be integer class indices, got dtype {labels.dtype}")
    if not np.all(np.isfinite(x)):
        raise ShapeError(f"'x' in {file} contains NaN or infinite values")
    return x, labels.astype(np.int64)


def _check_npy_header(archive, name: str, what: str, limit: int) -> None:
    """The shape an .npy member of an archive declares must fit ``limit`` bytes (NumPy allocates it before
    reading the data)."""
    if not name.endswith(".npy"):
        return
    from numpy.lib import format as npy

    with archive.open(name) as member:
        version = npy.read_magic(member)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _, dtype = read(member)
    check_size(what + f" of shape {shape}", math.prod(shape), max(dtype.itemsize, 1), limit)


def _radii(text: str) -> list[float]:
    try:
        radii = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise VerifierError(f"--radii must be comma-separated numbers, got {shorten(repr(text))}") from None
    if not radii or any(not (math.isfinite(r) and r >= 0) for r in radii):
        raise VerifierError(f"--radii must be finite numbers >= 0, got {shorten(repr(text))}")
    return radii


#: the files a run writes in --out
OUT_FILES = ("smooth.csv", "certified_accuracy.png", "summary.json")


def _check_out(out: Path, overwrite: bool) -> None:
    """--out must be a folder (or not exist yet) without an earlier run's files, unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise VerifierError(f"--out {out} is a file, not a folder; choose another --out")
    found = [name for name in OUT_FILES if (out / name).exists()]
    if found and not overwrite:
        raise VerifierError(f"--out {out} already holds {', '.join(found)}; pass --overwrite to replace them, "
                            "or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise VerifierError(f"--out {out}: cannot create the folder: {error.strerror or error}") from None


def run(args: argparse.Namespace) -> int:
    from verifier.jsonout import dumps
    from verifier.progress import Progress
    from verifier.smoothing import ABSTAIN, SmoothedClassifier
    from verifier.smoothing.checks import check_alpha, check_positive_int, check_sigma
    from verifier.smoothing.report import CertifiedRow, certified_accuracy, plot_certified_accuracy, write_csv

    sigma = check_sigma(args.sigma)
    alpha = check_alpha(args.alpha)
    n0, n = check_positive_int(args.n0, "--n0"), check_positive_int(args.n, "--n")
    batch = check_positive_int(args.batch, "--batch")
    skip = check_positive_int(args.skip, "--skip")
    if args.limit is not None:
        check_positive_int(args.limit, "--limit")
    radii = _radii(args.radii)
    if args.out:
        _check_out(Path(args.out), args.overwrite)
    x, labels = load_inputs(args.inputs)

    smoothed = SmoothedClassifier(args.model, sigma, seed=args.seed, backend=args.backend, device=args.device)
    inputs = smoothed.as_batch(x, f"'x' in {args.inputs}")
    if labels.min() < 0 or labels.max() >= smoothed.num_classes:
        raise ShapeError(f"'labels' in {args.inputs} must lie in [0, {smoothed.num_classes}) for this model, "
                         f"got values from {labels.min()} to {labels.max()}")
    chosen = list(range(0, len(inputs), skip))[: args.limit]

    rows: list[CertifiedRow] = []
    start = time.perf_counter()
    with Progress(len(chosen), label="smooth", enabled=args.progress) as progress:
        for index in chosen:
            result = smoothed.certify(inputs[index], n0=n0, n=n, alpha=alpha, batch_size=batch)
            label = int(labels[index])
            rows.append(CertifiedRow(index, label, result.label, result.radius,
                                     result.label != ABSTAIN and result.label == label, result.time_s))
            certified = sum(row.correct for row in rows)
            progress.update(status=f"correct {certified}/{len(rows)}")
    elapsed = time.perf_counter() - start
    accuracy = certified_accuracy(rows, radii)
    samples_per_s = len(rows) * (n0 + n) / elapsed if elapsed > 0 else float("nan")

    files = {}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        files = {"csv": str(out / "smooth.csv"), "plot": str(out / "certified_accuracy.png"),
                 "summary": str(out / "summary.json")}
        write_csv(rows, Path(files["csv"]))
        plot_certified_accuracy({f"sigma {sigma:g}": rows}, Path(files["plot"]),
                                title=f"{Path(args.model).name}: n0={n0}, n={n}, alpha={alpha:g}")
    summary = {
        "model": args.model,
        "base_classifier": smoothed.base.description,
        "inputs": args.inputs,
        "sigma": sigma, "n0": n0, "n": n, "alpha": alpha, "seed": args.seed, "batch": batch,
        "device": str(smoothed.device),
        "count": len(rows),
        "certified_accuracy": {f"{r:g}": a for r, a in accuracy.items()},
        "abstained": sum(row.prediction == ABSTAIN for row in rows),
        "samples_per_s": samples_per_s,
        "time_s": elapsed,
        "guarantee": ("each radius holds for the Gaussian-smoothed classifier with probability >= "
                      f"{1 - alpha:g} over the sampling; nothing is proved about the base network"),
        "files": files,
    }
    if args.out:
        Path(files["summary"]).write_text(dumps(summary, indent=2) + "\n")
    if args.json:
        summary["rows"] = [{"index": r.index, "label": r.label, "prediction": r.prediction, "radius": r.radius,
                            "correct": r.correct, "time_s": r.time_s} for r in rows]
        print(dumps(summary))
        return 0
    _print_table(rows, summary, sys.stdout)
    return 0


def _print_table(rows, summary: dict, out) -> None:
    out.write(f"{'index':>6s} {'label':>6s} {'predict':>8s} {'radius':>9s} {'correct':>8s} {'time_s':>8s}\n")
    for row in rows:
        out.write(f"{row.index:>6d} {row.label:>6d} {row.prediction:>8d} {row.radius:>9.4f} "
                  f"{int(row.correct):>8d} {row.time_s:>8.3f}\n")
    accuracy = ", ".join(f"{r}: {a:.3f}" for r, a in summary["certified_accuracy"].items())
    out.write(f"certified accuracy by L2 radius ({summary['count']} inputs, sigma {summary['sigma']:g}): {accuracy}\n")
    out.write(f"{summary['abstained']} abstained; {summary['samples_per_s']:.3g} samples/s; "
              f"{summary['time_s']:.2f} s in all; {summary['guarantee']}\n")
    for kind, path in summary["files"].items():
        out.write(f"wrote {kind}: {path}\n")
