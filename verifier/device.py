"""Which device the engine computes on, and how much memory it has free there.

``auto`` means the first CUDA device when torch sees one, else the CPU. Everything the engine creates is made
on the device of the tensors it combines, so choosing the device of the network and of the input box is enough.
"""

from __future__ import annotations

import os

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


def free_memory(device: torch.device) -> int:
    """Bytes free for new tensors on ``device``: ``torch.cuda.mem_get_info`` plus what torch's caching allocator
    holds unused on a GPU, the kernel's ``MemAvailable`` on the CPU (half of the total memory where that is
    unknown)."""
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
