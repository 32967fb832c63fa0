"""The engine's CPU thread count, chosen on purpose.

On small CPU machines PyTorch's default of one intra-op thread per core can be far slower than one
thread: the matrices of bound propagation are small, and thread hand-offs dominate (measured by
``benchmarks/threads.py``: on a 2-vCPU machine up to 100x slower on small ops with 2 threads). The
default is therefore 1 thread; ``VERIFIER_THREADS`` or :func:`set_threads` (CLI: ``--threads``)
override it. The setting is applied once, when the first network is loaded, unless the caller chose a
count already.
"""

from __future__ import annotations

import os

import torch

from verifier.errors import OptionError

DEFAULT_THREADS = 1
_chosen = False


def set_threads(count: int | None = None) -> int:
    """Set PyTorch's intra-op thread count (``None``: ``VERIFIER_THREADS`` or the default of 1)."""
    global _chosen
    if count is None:
        value = os.environ.get("VERIFIER_THREADS", "").strip()
        if value and not value.isdigit():
            raise OptionError(f"VERIFIER_THREADS must be a whole number >= 1, got {value[:20]!r}")
        count = int(value) if value else DEFAULT_THREADS
    if count < 1:
        raise OptionError(f"thread count must be at least 1, got {count}")
    torch.set_num_threads(count)
    _chosen = True
    return count


def ensure_threads() -> None:
    """Apply the default thread setting once, unless :func:`set_threads` was called already."""
    if not _chosen:
        set_threads()
