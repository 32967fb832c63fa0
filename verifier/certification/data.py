"""The dataset a certification run covers, checked before anything runs: inputs ``x`` ``[N, ...]`` and integer
``labels`` ``[N]``, finite, inside the valid input domain, with every label one of the model's classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from verifier.errors import ShapeError, VerifierError


class DatasetError(VerifierError, ValueError):
    """The dataset or a run parameter is unusable (empty, NaN, labels out of range, a bad epsilon...)."""


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``x`` and ``labels`` arrays of an .npz file (as for ``verifier smooth``)."""
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"dataset file not found: {file}")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as error:
        raise DatasetError(f"cannot read {file} as a NumPy .npz archive: {error}") from None
    missing = [key for key in ("x", "labels") if key not in arrays]
    if missing:
        found = ", ".join(sorted(arrays)) or "none"
        raise DatasetError(f"{file} lacks the array(s) {', '.join(missing)} (found: {found}); it needs 'x' "
                           "([N, ...] inputs) and 'labels' ([N] class indices)")
    return arrays["x"], arrays["labels"]


def check_dataset(x, labels, n_classes: int | None = None, where: str = "the dataset") -> tuple[np.ndarray, np.ndarray]:
    """``x`` as float64 ``[N, ...]`` and ``labels`` as int64 ``[N]``, or a one-line :class:`DatasetError` /
    :class:`~verifier.errors.ShapeError`: mismatched lengths, an empty dataset, non-integer labels, labels
    outside ``[0, n_classes)``, NaN or infinite inputs."""
    try:
        x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
        labels = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{where}: inputs and labels must be numeric arrays ({error})") from None
    if labels.ndim != 1:
        raise ShapeError(f"{where}: labels must be one-dimensional [N], got shape {labels.shape}")
    if x.ndim < 1 or x.shape[0] != labels.shape[0]:
        raise ShapeError(f"{where}: x must be [N, ...] with N = {labels.shape[0]} (one row per label), "
                         f"got shape {x.shape}")
    if labels.shape[0] == 0:
        raise DatasetError(f"{where} is empty: x has shape {x.shape}, nothing to certify")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DatasetError(f"{where}: x must hold real numbers, got dtype {x.dtype}")
    integral = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(np.mod(labels, 1) == 0))
    if not integral:
        raise DatasetError(f"{where}: labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    x = x.astype(np.float64)
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DatasetError(f"{where}: x contains NaN or infinite values in {bad.sum()} input(s), the first at "
                           f"index {rows[0]}")
    if n_classes is not None and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{where}: labels must lie in [0, {n_classes}) for this model ({n_classes} outputs), "
                           f"got values from {labels.min()} to {labels.max()}")
    return x, labels


def parse_epsilons(eps) -> list[float]:
    """Epsilons as a sorted list of distinct finite numbers >= 0 (one number, a list, or ``"0.01,0.03"``)."""
    if isinstance(eps, str):
        try:
            values = [float(part) for part in eps.split(",") if part.strip()]
        except ValueError:
            raise DatasetError(f"epsilons must be comma-separated numbers, got {eps!r}") from None
    else:
        values = [float(e) for e in np.atleast_1d(np.asarray(eps, dtype=np.float64))]
    if not values:
        raise DatasetError("give at least one epsilon")
    if any(not np.isfinite(e) or e < 0 for e in values):
        raise DatasetError(f"epsilons must be finite numbers >= 0, got {values}")
    values = sorted(set(values))
    keys = [f"{e:g}" for e in values]
    if len(set(keys)) != len(keys):
        raise DatasetError(f"epsilons {values} differ only beyond 6 significant digits; give distinct ones")
    return values


def parse_clip(clip, x: np.ndarray) -> tuple[float, float] | None:
    """The valid input domain ``(low, high)``: ``"auto"`` is ``(0, 1)`` when every input lies in it (images)
    and no clipping otherwise; ``None``/``"none"`` is no clipping; ``"0,1"`` or a pair is taken as given.
    Every input must lie inside the domain (the perturbation set is the ball intersected with it)."""
    if clip is None or (isinstance(clip, str) and clip.strip().lower() in ("none", "off", "")):
        return None
    if isinstance(clip, str) and clip.strip().lower() == "auto":
        return (0.0, 1.0) if x.size and x.min() >= 0 and x.max() <= 1 else None
    if isinstance(clip, str):
        parts = clip.split(",")
    else:
        parts = list(clip)
    try:
        low, high = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise DatasetError(f"the input domain (clip) must be 'low,high', 'auto' or 'none', got {clip!r}") from None
    if not (np.isfinite(low) and np.isfinite(high)) or low >= high:
        raise DatasetError(f"the input domain (clip) needs finite low < high, got {low}, {high}")
    if x.size and (x.min() < low or x.max() > high):
        raise DatasetError(f"inputs lie outside the input domain [{low:g}, {high:g}] (values from {x.min():g} to "
                           f"{x.max():g}); give the domain the data lives in with --clip, or --clip none")
    return low, high
