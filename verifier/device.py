"""Which device the engine computes on, and how much memory it has free there.

``auto`` means the first CUDA device when torch sees one, else the CPU. Everything the engine creates is made
on the device of the tensors it combines, so choosing the device of the network and of the input box is enough.
"""

from __future__ import annotations

import os
import time

import torch

DeviceLike = str | torch.device | None


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """The ``torch.device`` meant by ``device``: ``"auto"`` (or ``None``) is ``cuda:0`` when CUDA is available,
    else ``cpu``; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` are taken as given (``cuda`` without CUDA is an error a
    user can act on)."""
    from verifier.errors import VerifierError

    if isinstance(device, torch.device):
        chosen = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        try:
            chosen = torch.device(name)
        except (RuntimeError, ValueError):
            raise VerifierError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise VerifierError(f"device {device!s} asked for, but torch sees no CUDA device (use --device cpu)")
        index = 0 if chosen.index is None else chosen.index
        if index >= torch.cuda.device_count():
            raise VerifierError(f"device {device!s} asked for, but torch sees {torch.cuda.device_count()} CUDA "
                                "device(s)")
        return torch.device("cuda", index)
    if chosen.type != "cpu":
        raise VerifierError(f"device {device!s} is not supported; use auto, cpu, cuda or cuda:N")
    return chosen


def free_memory(device: torch.device | str) -> int:
    """Bytes free for new tensors on ``device``: ``torch.cuda.mem_get_info`` plus what torch's caching allocator
    holds unused on a GPU, the kernel's ``MemAvailable`` on the CPU (half of the total memory where that is
    unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, reserved))
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def use_ieee_float32(device: torch.device) -> None:
    """Turn TF32 off for float32 matrix products and convolutions on CUDA (process-wide). A bound assumes IEEE
    float32 rounding; TF32 keeps 10 bits of mantissa, and cuDNN convolutions use it by default. Called whenever
    the engine is put on a CUDA device."""
    if torch.device(device).type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for backend in (torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)):
        if backend is not None and hasattr(backend, "fp32_precision"):
            try:
                backend.fp32_precision = "ieee"
            except (RuntimeError, AttributeError, ValueError):  # an older torch without this setting
                pass


#: the CROWN coefficient chunk on the CPU: measured fastest on the shared networks (larger chunks only cost
#: memory there, smaller ones more Python per row); a GPU gets a share of its free memory instead
CPU_CHUNK_BYTES = 256 * 2**20
#: the share of the free memory one CROWN chunk may take (the peak of a backward pass is about 3 chunks)
CHUNK_SHARE = 0.08
#: how long a reading of the free memory is reused (reading it costs a system call or a driver query)
_FREE_MEMORY_TTL_S = 1.0
_free_cache: dict[str, tuple[float, int]] = {}


def cached_free_memory(device: torch.device | str) -> int:
    """:func:`free_memory`, re-read at most once a second per device (batch sizing asks often)."""
    key = str(torch.device(device))
    now = time.monotonic()
    hit = _free_cache.get(key)
    if hit is not None and now - hit[0] < _FREE_MEMORY_TTL_S:
        return hit[1]
    value = free_memory(device)
    _free_cache[key] = (now, value)
    return value


def chunk_budget(device: torch.device | str) -> int:
    """Bytes one chunk of CROWN's backward coefficients may take on ``device`` (see
    :mod:`verifier.bounds.crown`): on a GPU :data:`CHUNK_SHARE` of its free memory; on the CPU
    :data:`CPU_CHUNK_BYTES` (the size measured fastest there), less only when under 4x that is free; at least
    16 MiB."""
    free = cached_free_memory(device)
    if torch.device(device).type == "cpu":
        return max(16 * 2**20, min(CPU_CHUNK_BYTES, free // 4))
    return max(16 * 2**20, int(CHUNK_SHARE * free))


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: ``torch.OutOfMemoryError`` on a GPU, ``MemoryError``, or the
    ``RuntimeError`` the CPU allocator raises (``DefaultCPUAllocator: can't allocate memory``)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        return "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text
    return False


def release_memory(device: torch.device | str) -> None:
    """After an allocation failure: hand the blocks torch's caching allocator keeps back to the GPU, and forget
    the cached free-memory reading so the next batch is sized from the memory really free."""
    _free_cache.pop(str(torch.device(device)), None)
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


class OutOfMemory(RuntimeError):
    """Not even a batch of one (domain, row chunk) fits in the memory of the device."""


def halving_on_oom(run, count: int, options, device: torch.device, stats: dict | None = None):
    """``run(start, stop)`` over consecutive ranges covering ``range(count)``, ``options.batch`` at a time, yielding
    each range with its result. When an allocation fails, the same range is run again at half the size, and
    ``options.batch`` keeps the new size for the rest of the search: every index is run exactly once and none is
    lost. The number of halvings goes to ``stats["oom_halvings"]``. A failure at size 1 raises
    :class:`OutOfMemory`."""
    start = 0
    while start < count:
        stop = min(count, start + max(1, options.batch))
        try:
            result = run(start, stop)
        except Exception as error:  # noqa: BLE001 - only allocation failures are handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            if stop - start <= 1:
                raise OutOfMemory(f"out of memory on {device} even for a batch of one ({error})") from None
            failed = stop - start
        else:
            yield start, stop, result
            start = stop
            continue
        # outside the except block, so the failed attempt's tensors (held by the traceback) are freed first
        release_memory(device)
        options.batch = max(1, failed // 2)
        if stats is not None:
            stats["oom_halvings"] = stats.get("oom_halvings", 0) + 1
            stats["batch"] = options.batch


def attempt(run, device: torch.device):
    """``(True, run())``, or ``(False, None)`` when an allocation failed in it (the memory is released first). For
    steps that can be retried on less: the caller halves its batch and tries again."""
    try:
        return True, run()
    except Exception as error:  # noqa: BLE001 - only allocation failures are handled, the rest re-raised
        if not is_out_of_memory(error):
            raise
    release_memory(device)
    return False, None
