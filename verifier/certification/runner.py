"""``verifier.certify``: certified accuracy of a model over a dataset, by every certification method.

The dataset is processed in batches of inputs. In each batch the methods run cheapest first, and a
method's answer spares the more expensive ones work (``reuse``, on by default):

* ``clean``: the prediction; a misclassified input is certified by nothing;
* ``pgd``: inputs it breaks are not sent to any certifier (no proof can exist), and at larger epsilons
  are broken already;
* ``ibp -> crown -> alpha -> complete``: an input one proves is not re-verified by the next, which counts
  it as certified (``lipschitz -> complete`` alike);
* ``smoothing``: apart (probabilistic, about the smoothed classifier).

IBP, CROWN and alpha-CROWN bound every input of a batch at once (boxes ``[B, ...]``, specification
matrices ``[B, K - 1, K]``); PGD attacks them all at once; the complete verifier takes them one by one
with a time budget each. Rows are written (flushed and synced) batch by batch, so ``resume`` continues a
killed run where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from verifier.certification import alpha as alpha_method
from verifier.certification import clean as clean_method
from verifier.certification import complete as complete_method
from verifier.certification import crown as crown_method
from verifier.certification import ibp as ibp_method
from verifier.certification import pgd as pgd_method
from verifier.certification.balls import PerturbationSet
from verifier.certification.data import DatasetError, check_dataset, parse_clip, parse_epsilons
from verifier.certification.defaults import DEFAULT_METHODS, DEFAULT_RADIUS_TOLERANCE, DEFAULT_TIMEOUT
from verifier.certification.model import PreparedModel, prepare_model
from verifier.certification.radius import bisect, steps_needed
from verifier.certification.result import ALL_METHODS, DETERMINISTIC, CertifyResult, eps_key, row_fields
from verifier.device import DeviceLike
from verifier.progress import Progress


@dataclass
class CertifyOptions:
    """Knobs of :func:`certify` beyond its main arguments.

    ``batch``: inputs bounded (and rows written) together. ``pgd_steps``/``pgd_restarts``: the attack's
    strength. ``alpha_iterations``/``alpha_lr``: alpha-CROWN's Adam steps. ``reuse``: let cheaper methods'
    answers spare the expensive ones (off: every method runs on every correctly classified input, for
    comparisons). ``radius_max``: the largest radius searched (default: the largest epsilon);
    ``radius_tol``: the bisection's tolerance (default ``radius_max / 128``). ``sigma``, ``n0``, ``n``,
    ``smoothing_alpha``, ``smoothing_batch``, ``smoothing_backend``: randomized smoothing's CERTIFY
    (as ``verifier smooth``). ``seed``: attacks and smoothing noise.
    """

    batch: int = 128
    pgd_steps: int = 50
    pgd_restarts: int = 8
    alpha_iterations: int = 30
    alpha_lr: float = 0.25
    reuse: bool = True
    radius_max: float | None = None
    radius_tol: float | None = None
    sigma: float | None = None
    n0: int = 100
    n: int = 100_000
    smoothing_alpha: float = 0.001
    smoothing_batch: int = 1000
    smoothing_backend: str = "auto"
    seed: int = 0


def parse_methods(methods) -> list[str]:
    """Methods in canonical order (``clean`` always included); a list or ``"ibp,crown"``."""
    if methods is None:
        return list(DEFAULT_METHODS)
    names = [m.strip().lower() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    unknown = [m for m in names if m not in ALL_METHODS]
    if unknown:
        raise DatasetError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    chosen = set(names) | {"clean"}
    return [m for m in ALL_METHODS if m in chosen]


def certify(
    model,
    x,
    labels,
    eps,
    *,
    norm: str = "linf",
    methods=None,
    timeout_per_input: float = DEFAULT_TIMEOUT,
    radius: bool = False,
    mean=None,
    std=None,
    clip="auto",
    device: DeviceLike = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
    options: CertifyOptions | None = None,
    progress: bool | None = False,
    names: dict | None = None,
) -> CertifyResult:
    """Certify ``model`` on every input of a dataset at each epsilon, by each method.

    ``model``: an ONNX path, a :class:`~verifier.network.Network` or a ``torch.nn.Module`` (converted with
    ``x[:1]`` as the example input). ``x``: ``[N, ...]`` raw inputs; ``labels``: ``[N]`` class indices.
    ``eps``: one radius, a list, or ``"0.01,0.03"``, in raw input units. ``norm``: ``"linf"`` or ``"l2"``.
    ``methods``: any of ``clean, pgd, ibp, crown, alpha, lipschitz, complete, smoothing`` (default all but
    smoothing, which needs ``options.sigma``). ``timeout_per_input``: seconds of the complete verifier per
    input and epsilon (per input in radius mode). ``radius``: find each input's largest certified epsilon
    per method instead (bisection up to the largest epsilon). ``mean``/``std``: per-channel input
    normalisation the model expects (folded into it; everything else stays in raw units). ``clip``: the
    valid input domain, ``"auto"`` (``[0, 1]`` if the data lies in it), ``None`` or ``(low, high)``.
    ``device``: where to compute (default: the model's). ``out``: a directory for ``certify.csv``,
    ``summary.json`` and ``certified_accuracy.png`` (rows are written as they are done; ``resume``
    continues a killed run, ``overwrite`` starts again). ``limit``: only the first inputs.

    Returns a :class:`~verifier.certification.result.CertifyResult`: one row per input and
    ``accuracy(method, eps)``, ``average_radius(method)``, ``summary()``, ``table()``.
    """
    options = options or CertifyOptions()
    names = names or {}
    chosen = parse_methods(methods)
    norm = _norm(norm)
    epsilons = parse_epsilons(eps)
    if not (isinstance(timeout_per_input, (int, float)) and math.isfinite(timeout_per_input)
            and timeout_per_input > 0):
        raise DatasetError(f"the time per input must be a number > 0, got {timeout_per_input!r}")
    if options.batch < 1:
        raise DatasetError(f"the batch size must be >= 1, got {options.batch}")
    if "smoothing" in chosen and options.sigma is None:
        raise DatasetError("the smoothing method needs a noise level: give sigma (--sigma), the one the model was "
                           "trained with")
    x_np, labels_np = check_dataset(x, labels, where=names.get("data", "the dataset"))
    fingerprint = _fingerprint(x_np, labels_np)
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"--limit must be >= 1, got {limit}")
        x_np, labels_np = x_np[:limit], labels_np[:limit]
    prepared = prepare_model(model, x_np[:1], mean, std, device)
    network = prepared.network
    inputs = network.as_batch(torch.as_tensor(x_np), f"x in {names.get('data', 'the dataset')}").to(network.device)
    check_dataset(x_np, labels_np, prepared.n_classes, where=names.get("data", "the dataset"))
    domain = parse_clip(clip, x_np)
    perturbation = PerturbationSet(norm, domain)
    radius_max = options.radius_max if options.radius_max is not None else max(epsilons)
    if radius and not radius_max > 0:
        raise DatasetError("radius mode searches up to the largest epsilon: give an epsilon > 0 (or radius_max)")
    radius_tol = options.radius_tol if options.radius_tol is not None else radius_max * DEFAULT_RADIUS_TOLERANCE
    notes: list[str] = []
    lipschitz = None
    if "lipschitz" in chosen:
        from verifier.certification.lipschitz import LipschitzCertifier
        from verifier.lipschitz import LipschitzError

        try:
            lipschitz = LipschitzCertifier(network, norm)
        except LipschitzError as error:
            if methods is not None:
                raise
            chosen.remove("lipschitz")
            notes.append(f"lipschitz left out: {error}")
    smoothing = None
    if "smoothing" in chosen:
        from verifier.certification.smoothing import SmoothingSettings, smoothed_classifier

        settings_s = SmoothingSettings(options.sigma, options.n0, options.n, options.smoothing_alpha,
                                       options.smoothing_batch, options.seed, options.smoothing_backend)
        smoothing = (settings_s, smoothed_classifier(prepared, settings_s))

    settings = {
        "model": names.get("model", prepared.source or type(model).__name__),
        "data": names.get("data", "arrays"),
        "data_sha256": fingerprint,
        "count": int(len(labels_np)),
        "limit": limit,
        "input_size": int(network.input_size),
        "classes": int(prepared.n_classes),
        "norm": norm,
        "eps": epsilons,
        "methods": chosen,
        "radius": bool(radius),
        "radius_max": float(radius_max) if radius else None,
        "radius_tol": float(radius_tol) if radius else None,
        "clip": list(domain) if domain else None,
        "mean": None if mean is None else np.atleast_1d(np.asarray(mean, dtype=float)).tolist(),
        "std": None if std is None else np.atleast_1d(np.asarray(std, dtype=float)).tolist(),
        "timeout_per_input": float(timeout_per_input) if "complete" in chosen else None,
        "options": {k: v for k, v in asdict(options).items() if k not in ("radius_max", "radius_tol")},
        "smoothing": ({"sigma": options.sigma, "n0": options.n0, "n": options.n, "alpha": options.smoothing_alpha,
                       "seed": options.seed} if smoothing else None),
        "device": str(prepared.device),
    }
    fields = row_fields(chosen, epsilons, radius)
    store = None
    if out is not None:
        from verifier.certification.store import RowStore

        store = RowStore(out, fields, settings, resume=resume, overwrite=overwrite)
    done = store.done if store is not None else set()
    rows = list(store.rows) if store is not None else []
    todo = np.array([i for i in range(len(labels_np)) if i not in done], dtype=np.int64)
    run = _Run(prepared, perturbation, chosen, epsilons, options, float(timeout_per_input), lipschitz, smoothing,
               bool(radius), float(radius_max), float(radius_tol))
    labels_t = torch.as_tensor(labels_np, device=network.device)
    with Progress(len(labels_np), label="certify", enabled=progress, initial=len(done)) as bar:
        run.progress = bar
        for start in range(0, len(todo), options.batch):
            index = todo[start : start + options.batch]
            batch_rows = run.batch(index, inputs[torch.as_tensor(index, device=inputs.device)],
                                   labels_t[torch.as_tensor(index, device=labels_t.device)], x_np[index])
            if store is not None:
                store.write(batch_rows)
            rows.extend(batch_rows)
            certified = sum(r["correct"] for r in rows)
            bar.update(len(batch_rows), status=f"correct {certified}/{len(rows)}")
    if run.conflicts:
        notes.append(f"{run.conflicts} certificate(s) contradicted by an attack: a soundness bug, please report it")
    extras = {"notes": notes, "conflicts": run.conflicts}
    if lipschitz is not None:
        extras["lipschitz"] = lipschitz.summary()
    if smoothing is not None:
        extras["guarantee_smoothing"] = (f"each smoothing radius holds for the Gaussian-smoothed classifier with "
                                         f"probability >= {1 - options.smoothing_alpha:g} over the sampling; nothing "
                                         "is proved about the network")
    result = CertifyResult(rows, settings, extras)
    if out is not None:
        _write_reports(result, Path(out), names)
    return result


def _norm(norm: str) -> str:
    name = str(norm).lower().replace("-", "").replace("_", "")
    if name in ("linf", "inf"):
        return "linf"
    if name in ("l2", "2"):
        return "l2"
    raise DatasetError(f"norm must be 'linf' or 'l2', got {norm!r}")


def _fingerprint(x: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]


def _write_reports(result: CertifyResult, out: Path, names: dict) -> None:
    from verifier.certification.plot import plot_certified_accuracy

    files = {"csv": str(out / "certify.csv"), "summary": str(out / "summary.json"),
             "plot": str(out / "certified_accuracy.png")}
    result.extras["files"] = files
    title = f"{Path(str(result.settings['model'])).name}: {len(result)} inputs, {result.norm}"
    if result.rows:
        plot_certified_accuracy(result, files["plot"], title=title)
    Path(files["summary"]).write_text(json.dumps(json_ready(result.summary()), indent=2) + "\n")


def json_ready(value):
    """``value`` with every non-finite float as ``None`` (strict JSON: ``inf`` in a pgd radius means no attack
    was found up to the largest epsilon) and other objects as text."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return str(value)


class _Run:
    """One run's fixed parts, and the work on one batch of inputs."""

    def __init__(self, model: PreparedModel, perturbation: PerturbationSet, methods: list[str], eps: list[float],
                 options: CertifyOptions, timeout: float, lipschitz, smoothing, radius: bool, radius_max: float,
                 radius_tol: float):
        self.model = model
        self.perturbation = perturbation
        self.methods = methods
        self.eps = eps
        self.options = options
        self.timeout = timeout
        self.lipschitz = lipschitz
        self.smoothing = smoothing
        self.radius = radius
        self.radius_max = radius_max
        self.radius_tol = radius_tol
        self.conflicts = 0
        self.progress: Progress | None = None

    # -- one batch ----------------------------------------------------------------------------------
    def batch(self, index: np.ndarray, x: torch.Tensor, labels: torch.Tensor, x_raw: np.ndarray) -> list[dict]:
        b = len(index)
        self.index = index
        self.times = {m: np.zeros(b) for m in self.methods}
        start = time.perf_counter()
        _, prediction, correct = clean_method.predict(self.model.network, x, labels)
        self.times["clean"] += (time.perf_counter() - start) / b
        rows = [{"index": int(i), "label": int(y), "prediction": int(p), "correct": int(c)}
                for i, y, p, c in zip(index, labels.tolist(), prediction.tolist(), correct.tolist())]
        correct = correct.cpu().numpy()
        lip_radius = None
        if self.lipschitz is not None:
            start = time.perf_counter()
            lip_radius = np.where(correct, self.lipschitz.radius(x, labels), 0.0)
            self.times["lipschitz"] += (time.perf_counter() - start) / b
        if self.radius:
            self._radii(rows, x, labels, x_raw, correct, lip_radius)
        else:
            self._fixed(rows, x, labels, x_raw, correct, lip_radius)
        if self.smoothing is not None:
            from verifier.certification.smoothing import certify_inputs

            settings, smoothed = self.smoothing
            self._status("smoothing")
            for row, (prediction_s, radius_s, time_s) in zip(rows, certify_inputs(smoothed, settings, index, x_raw)):
                row["smoothing_prediction"], row["smoothing_radius"] = prediction_s, radius_s
                row["smoothing_time_s"] = time_s
        for k, row in enumerate(rows):
            for m in self.methods:
                row.setdefault(f"{m}_time_s", float(self.times[m][k]))
        return rows

    def _status(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(0, status=text)

    def _bounded(self, method: str, x, labels, eps: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Run a batched method on the inputs in ``mask`` at their ``eps``; ``[b]`` booleans, timed."""
        result = np.zeros(len(mask), dtype=bool)
        idx = np.flatnonzero(mask)
        if not idx.size:
            return result
        start = time.perf_counter()
        rows = torch.as_tensor(idx, device=x.device)
        eps_t = torch.as_tensor(eps[idx], dtype=x.dtype, device=x.device)
        network, entry = self.model.network, self.model.entry
        if method == "ibp":
            found = ibp_method.certify(network, self.perturbation, x[rows], labels[rows], eps_t)
        elif method == "crown":
            found = crown_method.certify(network, entry, self.perturbation, x[rows], labels[rows], eps_t)
        elif method == "alpha":
            found = alpha_method.certify(network, entry, self.perturbation, x[rows], labels[rows], eps_t,
                                         self.options.alpha_iterations, self.options.alpha_lr)
        else:
            seeds = [self.options.seed * 1_000_003 + int(self.index[k]) for k in idx]
            broken, _ = pgd_method.attack(network, self.perturbation, x[rows], labels[rows], eps_t,
                                          self.options.pgd_steps, self.options.pgd_restarts, seeds)
            found = ~broken
        result[idx] = found.cpu().numpy()
        self.times[method] += (time.perf_counter() - start) / len(mask)
        return result

    def _complete(self, x_raw: np.ndarray, label: int, eps: float, timeout: float, k: int) -> str:
        start = time.perf_counter()
        status = complete_method.verify_input(self.model, self.perturbation, x_raw.reshape(-1), label, eps, timeout,
                                              self.options.seed)
        self.times["complete"][k] += time.perf_counter() - start
        return status

    # -- fixed epsilons -----------------------------------------------------------------------------
    def _fixed(self, rows, x, labels, x_raw, correct, lip_radius) -> None:
        b = len(rows)
        reuse = self.options.reuse
        broken = np.zeros(b, dtype=bool)
        labels_np = labels.cpu().numpy()
        for e in self.eps:
            key = eps_key(e)
            eps = np.full(b, e)
            columns = {}
            if "pgd" in self.methods:
                self._status(f"pgd at eps {key}")
                robust = self._bounded("pgd", x, labels, eps, correct & ~broken)
                broken |= correct & ~robust
                columns["pgd"] = correct & ~broken
            candidates = correct & ~broken if reuse else correct.copy()
            chain = np.zeros(b, dtype=bool)
            for method in ("ibp", "crown", "alpha"):
                if method in self.methods:
                    self._status(f"{method} at eps {key}")
                    found = self._bounded(method, x, labels, eps, candidates & ~chain if reuse else candidates)
                    columns[method] = found | chain if reuse else found
                    if reuse:
                        chain = columns[method]
            if lip_radius is not None:
                columns["lipschitz"] = correct & (lip_radius >= e)
            if "complete" in self.methods:
                decided = np.zeros(b, dtype=bool)
                if reuse:
                    for method in DETERMINISTIC:
                        if method in columns:
                            decided |= columns[method]
                status = np.where(correct, "unknown", "misclassified").astype(object)
                todo = np.flatnonzero(candidates & ~decided)
                for n, k in enumerate(todo):
                    self._status(f"complete at eps {key}: {n + 1}/{len(todo)}")
                    status[k] = self._complete(x_raw[k], int(labels_np[k]), e, self.timeout, k)
                status[decided & correct] = "certified"
                if reuse:
                    status[correct & broken & ~decided] = "attacked"  # PGD's counterexample decided it
                columns["complete"] = status == "certified"
                for k in range(b):
                    rows[k][f"complete_status@{key}"] = str(status[k])
            for method, column in columns.items():
                if method in DETERMINISTIC:
                    self.conflicts += int((column & broken).sum())
                for k in range(b):
                    rows[k][f"{method}@{key}"] = int(column[k])
        if lip_radius is not None:
            for k in range(b):
                rows[k]["lipschitz_radius"] = float(lip_radius[k])

    # -- radius mode --------------------------------------------------------------------------------
    def _radii(self, rows, x, labels, x_raw, correct, lip_radius) -> None:
        b = len(rows)
        reuse = self.options.reuse
        cap, tol = self.radius_max, self.radius_tol
        labels_np = labels.cpu().numpy()
        zero = np.zeros(b)
        upper = np.where(correct, cap, 0.0)
        test_upper = correct.copy()
        radii = {}
        if "pgd" in self.methods:
            self._status("pgd radius")

            def robust(eps, idx):
                mask = np.zeros(b, dtype=bool)
                mask[idx] = True
                full = np.zeros(b)
                full[idx] = eps
                return self._bounded("pgd", x, labels, full, mask)[idx]

            lo, hi = bisect(robust, zero, upper, tol, test_upper)
            attack_radius = np.where(correct, np.where(lo >= cap, np.inf, hi), 0.0)
            radii["pgd"] = attack_radius
            upper = np.minimum(upper, attack_radius)
            test_upper = correct & np.isinf(attack_radius)
        chain = zero.copy()
        for method in ("ibp", "crown", "alpha"):
            if method not in self.methods:
                continue
            self._status(f"{method} radius")

            def certified(eps, idx, method=method):
                mask = np.zeros(b, dtype=bool)
                mask[idx] = True
                full = np.zeros(b)
                full[idx] = eps
                return self._bounded(method, x, labels, full, mask)[idx]

            start = np.minimum(chain, upper) if reuse else zero
            lo, _ = bisect(certified, start, upper, tol, test_upper & (start < upper))
            radii[method] = np.where(correct, lo, 0.0)
            if reuse:
                chain = radii[method]
        if lip_radius is not None:
            radii["lipschitz"] = lip_radius
        if "complete" in self.methods:
            known = chain.copy()
            if reuse and lip_radius is not None:
                known = np.maximum(known, np.minimum(lip_radius, cap))
            found = np.where(correct, known if reuse else 0.0, 0.0)
            for k in np.flatnonzero(correct):
                self._status(f"complete radius: input {rows[k]['index']}")
                found[k] = self._complete_radius(x_raw[k], int(labels_np[k]), found[k], upper[k],
                                                 bool(test_upper[k]), k)
            radii["complete"] = found
        for method, values in radii.items():
            if method in DETERMINISTIC and "pgd" in radii:
                self.conflicts += int((correct & (values >= radii["pgd"]) & (values > 0)).sum())
            for k in range(b):
                rows[k][f"{method}_radius"] = float(values[k])

    def _complete_radius(self, x_raw, label: int, lo: float, hi: float, test_upper: bool, k: int) -> float:
        """Bisection of one input's radius with the complete verifier, sharing the per-input budget."""
        if hi <= lo:
            return lo
        deadline = time.monotonic() + self.timeout
        steps = steps_needed(lo, hi, self.radius_tol) + int(test_upper)
        if test_upper:
            status = self._complete(x_raw, label, hi, (deadline - time.monotonic()) / max(1, steps), k)
            steps -= 1
            if status == "certified":
                return hi
        while hi - lo > self.radius_tol and time.monotonic() < deadline:
            mid = (lo + hi) / 2
            status = self._complete(x_raw, label, mid, (deadline - time.monotonic()) / max(1, steps), k)
            steps = max(1, steps - 1)
            if status == "certified":
                lo = mid
            else:
                hi = mid
        return lo
