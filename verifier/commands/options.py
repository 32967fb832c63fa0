"""Checked option values and arrays for the subcommands: every number is finite and in range, every array
file is read within a size limit, and each refusal is one line naming the option.

The ``*_number`` functions are ``argparse`` types (``type=positive_number``); :func:`load_array` reads a
``.npy`` (memory-mapped first, so a header claiming 10^12 values costs nothing) or text array.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from verifier.errors import OptionError, ResourceLimitError, ShapeError, VerifierError, quote, shorten
from verifier.limits import check_size, format_bytes


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a number") from None


def positive_number(text: str) -> float:
    """A finite number > 0 (timeouts, scales, sigmas)."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {shorten(text)}")
    return value


def nonnegative_number(text: str) -> float:
    """A finite number >= 0 (radii, grace periods)."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {shorten(text)}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (jobs, threads, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(text)} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {shorten(text)}")
    return value


def gib_to_bytes(value: float | None) -> int | None:
    """A ``--...-gib`` option in bytes (None stays None: the default limit)."""
    return None if value is None else int(min(value, 2**32) * 2**30)


def load_array(path: str, what: str, limit: int | None = None):
    """The array in ``path`` (``.npy``, or whitespace-separated text) as float64, checked finite; ``what``
    names it in errors (``"--center"``). A ``.npy`` is memory-mapped first so its size is checked (against
    ``limit`` bytes, default :func:`verifier.limits.default_memory_limit`) before it is read; pickled object
    arrays are refused."""
    import numpy as np

    from verifier.limits import resolve_limit

    limit = resolve_limit(limit)
    file = Path(path)
    if not file.is_file():
        raise VerifierError(f"{what} file not found: {file}")
    try:
        if file.suffix == ".npy":
            mapped = np.load(file, mmap_mode="r", allow_pickle=False)
            check_size(f"{what} {file}", mapped.size, max(mapped.itemsize, 8), limit)
            array = np.array(mapped)
        else:
            check_size(f"{what} {file}", file.stat().st_size, 8, limit)
            array = np.loadtxt(file, ndmin=1)
    except ResourceLimitError:
        raise
    except MemoryError:
        raise ResourceLimitError(f"{what} {file}: not enough memory to read it (limit {format_bytes(limit)})") \
            from None
    except Exception as error:  # a truncated header, a pickle, text that is not numbers...
        raise VerifierError(f"cannot read {what} from {file}: {type(error).__name__}: {shorten(error, 120)}") \
            from None
    if array.dtype.kind not in "biuf":
        raise ShapeError(f"{what} {file} must hold numbers, got dtype {shorten(array.dtype)}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise OptionError(f"{what} {file} contains NaN or infinite values")
    return array


def add_device_argument(parser, default: str | None = "auto", help_text: str | None = None) -> None:
    """Add ``--device auto|cpu|cuda|cuda:N`` to an ``argparse`` parser (one line in each command)."""
    parser.add_argument(
        "--device", default=default, metavar="DEVICE",
        help=help_text or "where to compute: auto (the first CUDA GPU torch sees, else the CPU; the default), cpu, "
        "cuda or cuda:N")
