"""How much an input may cost: memory limits for loading models and properties, and the process clock.

Every file the verifier reads could be hostile or just broken: a 400-byte ONNX file can declare a
``[1, 10^9]`` input or a ``ConstantOfShape`` of terabytes, a ``.gz`` property can unpack to gigabytes.
Loading checks sizes *before* memory is spent, against a limit that defaults to a fraction of the memory
available (:func:`default_memory_limit`); ``--load-limit-gib`` (``memory_limit=`` in the API) raises it.

:func:`process_age` is the time since this process started, read from the operating system, so that a
``--timeout`` counts the interpreter's start-up and imports as the VNN-COMP harness does.

This module imports only the standard library: the command line reads the clock before importing torch.
"""

from __future__ import annotations

import os
import time

from verifier.errors import ResourceLimitError

#: share of the available memory a model's tensors (or a property's arrays) may take by default
MEMORY_FRACTION = 0.25
#: floor of the default limit, so a loaded machine still opens ordinary models
MIN_DEFAULT_LIMIT = 256 << 20

_started_at: float | None = None   # monotonic time of the process start, once known


def available_memory() -> int:
    """Bytes of memory available to new allocations on this machine (``MemAvailable``; half of the physical
    memory where that is unknown): :func:`verifier.device.free_memory` for the CPU, without importing torch."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_memory_limit() -> int:
    """The default limit on the bytes a model's tensors or a property's arrays may take:
    :data:`MEMORY_FRACTION` of the available memory (at least :data:`MIN_DEFAULT_LIMIT`)."""
    return max(int(available_memory() * MEMORY_FRACTION), MIN_DEFAULT_LIMIT)


def resolve_limit(limit: int | float | None) -> int:
    """``limit`` bytes, or the default for ``None``; a limit must be a positive number."""
    if limit is None:
        return default_memory_limit()
    if not (isinstance(limit, (int, float)) and limit == limit and limit > 0):
        raise ResourceLimitError(f"a memory limit must be a positive number of bytes, got {limit!r}")
    return int(min(limit, 2**62))


def format_bytes(count: float) -> str:
    """``count`` bytes in a readable unit: ``512 B``, ``3.2 MiB``, ``7.5e+03 GiB``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            value = count / size
            return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.2g} {unit}"
    return f"{int(count)} B"


def check_size(what: str, count: int | float, itemsize: int, limit: int) -> None:
    """Raise :class:`ResourceLimitError` when ``count`` values of ``itemsize`` bytes exceed ``limit`` bytes."""
    needed = float(count) * itemsize
    if needed > limit:
        amount = format_bytes(needed) if needed < float("inf") else "an unbounded amount"
        raise ResourceLimitError(
            f"{what} needs {amount}, more than the limit of {format_bytes(limit)} "
            "(--load-limit-gib / memory_limit= raises it)")


# -- the process clock -------------------------------------------------------------------------------

def _boot_seconds_of_start() -> float | None:
    """Seconds after boot at which this process started (Linux: field 22 of /proc/self/stat), or None."""
    try:
        with open("/proc/self/stat") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(")") + 2:].split()
        ticks = int(fields[19])   # field 22 of the whole line: starttime, in clock ticks since boot
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def process_started_at() -> float:
    """``time.monotonic()`` at the moment this process started, read from the operating system (Linux), else
    the first call of this function (a fallback that misses the interpreter's start-up)."""
    global _started_at
    if _started_at is None:
        now = time.monotonic()
        started = _boot_seconds_of_start()
        age = None
        if started is not None and hasattr(time, "CLOCK_BOOTTIME"):
            age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
        # a clock tick is 10 ms; an age below zero or of days means the reading is not to be trusted
        _started_at = now - age if age is not None and 0 <= age < 86400 else now
    return _started_at


def process_age() -> float:
    """Seconds since this process started (see :func:`process_started_at`)."""
    return time.monotonic() - process_started_at()


def reset_process_clock(at: float | None = None) -> None:
    """Forget the process start (a forked child starts its own clock: pass ``time.monotonic()``)."""
    global _started_at
    _started_at = at
