"""The engine's CPU thread count, chosen on purpose.

On small CPU machines PyTorch's default of one intra-op thread per core can be far slower than one
thread: the matrices of bound propagation are small, and thread hand-offs dominate (measured by
``benchmarks/threads.py``: on a 2-vCPU machine up to 100x slower on small ops with 2 threads). The
default is therefore 1 thread; ``VERIFIER_THREADS`` or :func:`set_threads` (CLI: ``--threads``)
override it. The setting is applied once, when the first network is loaded, unless the caller chose a
count already.

The same first step sets glibc's allocator thresholds for the search's many short-lived tensors
(:func:`tune_malloc`; ``VERIFIER_MALLOC=default`` leaves them alone).
"""

from __future__ import annotations

import os
import sys

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
    tune_malloc()
    _chosen = True
    return count


def ensure_threads() -> None:
    """Apply the default thread setting once, unless :func:`set_threads` was called already."""
    if not _chosen:
        set_threads()


_malloc_tuned = False


def tune_malloc() -> None:
    """Fixed glibc allocator thresholds for this process: blocks up to 32 MiB served from the heap, and memory
    given back above 128 MiB free at its top (``mallopt``; Linux/glibc only, elsewhere nothing happens).
    glibc's own dynamic thresholds start at 128 KiB and serve larger blocks by a fresh ``mmap`` each, given
    back at once, so the search's many short-lived tensors page-fault over and over. ``benchmarks/malloc.py``
    on one core: ACAS Xu 3_3 prop 2 took 52.9 s plain and 34.9 s tuned (same 51 221 domains); a Dask worker, which also
    gets ``MALLOC_TRIM_THRESHOLD_=65536`` from Dask, searched a mnist_fc subtree 2x slower untuned. Also one
    arena for the threads that allocate from now on: a search run in a thread of its own (as in a Dask worker)
    otherwise gets an arena of mmap-ed heaps that ignores these thresholds in part. The same 15 000 ACAS Xu
    sub-domains, alternately in a process's main thread and in a fresh thread, three pairs: 0.49-0.96 million
    page faults in the thread against 0.06-0.22 million in the main thread; with ``MALLOC_ARENA_MAX=1`` from
    the process's start about as many (0.04-0.21 against 0.07-0.22 million); with this call alone 0.23-0.43
    against 0.13-0.24 million, since threads that allocated before keep their arenas. Worker processes
    therefore *start* with ``MALLOC_ARENA_MAX=1`` (:data:`verifier.distributed.cluster.WORKER_MALLOC`). Whole
    verifications (``benchmarks/worker_runtime.py --only threads``) did not show the difference on the
    development VM, whose page-fault counts vary widely from run to run: the gain is not established.
    ``VERIFIER_MALLOC=default`` keeps glibc's behaviour."""
    global _malloc_tuned
    if _malloc_tuned or not sys.platform.startswith("linux") or os.environ.get("VERIFIER_MALLOC") == "default":
        return
    _malloc_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        libc.mallopt(m_mmap_threshold, 32 * 2**20)
        libc.mallopt(m_trim_threshold, 128 * 2**20)
        libc.mallopt(m_arena_max, 1)
    except (OSError, AttributeError):
        pass
