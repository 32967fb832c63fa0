"""A guard that makes every tensor the engine creates on the default device fail loudly, on a machine without a GPU.

On a GPU the engine's tensors live on ``cuda`` while a tensor made without a device lands on the CPU; mixing the
two is an error, or a silent host round trip. Without a GPU the same situation is simulated with the network and
the boxes on the CPU and the *default* device switched to ``meta`` (a device that holds shapes and no data), and
:class:`DeviceGuard`, a ``TorchFunctionMode``, checks every torch call made under it:

1. a factory (``torch.zeros``, ``eye``, ``arange``, ``full``, ``tensor``, ``as_tensor`` of non-tensor data, the
   random ones, ...) called from the engine's own code without ``device=`` (or ``out=``) is an error naming the
   file and line;
2. a random draw whose generator lives on another device than the tensor it fills is an error (on a GPU the
   CPU's default generator cannot fill a CUDA tensor);
3. any call mixing ``meta`` tensors with tensors of a real device is an error: torch raises for most of them, but
   indexing a CPU tensor with a ``meta`` index returns garbage silently, so the guard checks them all;
4. ``Tensor.numpy()`` from the engine's code on a tensor that was not brought to the host by ``.cpu()`` or
   ``.to("cpu")`` (or computed from such tensors only, or made on the CPU on purpose) is an error (on a GPU it
   raises); ``.item()``, ``.tolist()`` and ``bool()``/``int()``/``float()``
   of a tensor from the engine's code are host syncs and are counted in :attr:`DeviceGuard.syncs` (file:line ->
   count), not refused: some decisions need one.

(On the CPU ``t.cpu()`` returns ``t`` itself, so from then on the guard takes ``t`` for a host copy: a blind spot
only for code that keeps using a tensor it has also brought to the host.)

The engine's code is everything under ``verifier/`` except the front ends, the property reader, the benchmark
runner and the command line, which run before a network is put on a device.
"""

from __future__ import annotations

import sys
import weakref
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "verifier"
#: parts of the package that run before the network is on its device (or never touch the engine's tensors)
NOT_ENGINE = ("frontend", "spec", "bench", "commands", "cli.py", "__main__.py", "api.py", "threads.py",
              "progress.py", "errors.py")

FACTORIES = {
    torch.zeros, torch.ones, torch.empty, torch.full, torch.eye, torch.arange, torch.linspace, torch.logspace,
    torch.tensor, torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.randperm, torch.scalar_tensor,
    torch.empty_strided,
}
RANDOM = {torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal, torch.Tensor.normal_,
          torch.Tensor.uniform_, torch.Tensor.random_, torch.Tensor.bernoulli_, torch.bernoulli, torch.multinomial}
SYNCS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
         torch.Tensor.__float__, torch.Tensor.__index__}
TO_HOST = {torch.Tensor.cpu, torch.Tensor.to}


class DeviceError(AssertionError):
    """A tensor made on, or moved through, the wrong device."""


def _engine_caller() -> str | None:
    """``file:line`` of the innermost frame outside torch and this module, if it is the engine's code."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if "/torch/" not in path and not path.endswith("device_guard.py") and "<" not in path:
            break
        frame = frame.f_back
    if frame is None:
        return None
    path = Path(frame.f_code.co_filename).resolve()
    try:
        relative = path.relative_to(ENGINE)
    except ValueError:
        return None
    if relative.parts and relative.parts[0] in NOT_ENGINE:
        return None
    return f"verifier/{relative}:{frame.f_lineno}"


def _tensors(value, out: list) -> list:
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _tensors(item, out)
    elif isinstance(value, dict):
        for item in value.values():
            _tensors(item, out)
    return out


class DeviceGuard(TorchFunctionMode):
    """See the module docstring. Use as ``with DeviceGuard() as guard: ...``; it sets the default device to
    ``meta`` for its duration and restores it after."""

    def __init__(self):
        super().__init__()
        self.syncs: Counter[str] = Counter()
        self._host_copies: dict[int, weakref.ref] = {}  # by id: tensors compare elementwise, not by identity
        self._device_context = torch.device("meta")

    def __enter__(self):
        self._device_context.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._device_context.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES:
            self._check_factory(func, args, kwargs)
        if func in RANDOM:
            self._check_generator(func, args, kwargs)
        if func is torch.Tensor.numpy:
            where = _engine_caller()
            if where is not None and not self._is_host_copy(args[0]):
                raise DeviceError(f"{where}: .numpy() of a tensor that was not brought to the host with .cpu()")
        elif func in SYNCS and args and not self._is_host_copy(args[0]):
            where = _engine_caller()
            if where is not None:
                self.syncs[where] += 1
        tensors = _tensors(args, []) + _tensors(kwargs, [])
        kinds = {t.device.type == "meta" for t in tensors}
        if len(kinds) == 2:
            devices = sorted({str(t.device) for t in tensors})
            raise DeviceError(f"{_engine_caller() or 'a caller'}: {getattr(func, '__name__', func)} mixes tensors of "
                              f"{', '.join(devices)}: a tensor was made on the default device")
        result = func(*args, **kwargs)
        # made on the host on purpose: device="cpu" written out (a device taken from a tensor is a torch.device)
        explicit_cpu = isinstance(kwargs.get("device"), str) and kwargs["device"] == "cpu" or func is torch.from_numpy
        moved = func in TO_HOST and isinstance(result, torch.Tensor) and result.device.type == "cpu"
        if moved or explicit_cpu or (tensors and all(self._is_host_copy(t) for t in tensors)):
            for t in _tensors(result, []):   # what is computed from host copies stays on the host
                self._host_copies[id(t)] = weakref.ref(t)
        return result

    def _is_host_copy(self, t: torch.Tensor) -> bool:
        copy = self._host_copies.get(id(t))
        return copy is not None and copy() is t

    def _check_factory(self, func, args, kwargs) -> None:
        if kwargs.get("device") is not None or kwargs.get("out") is not None:
            return
        if func in (torch.tensor, torch.as_tensor) and args and isinstance(args[0], torch.Tensor):
            if func is torch.as_tensor:  # as_tensor keeps a tensor's device: say so, or the default would win
                kwargs["device"] = args[0].device
            return
        where = _engine_caller()
        if where is not None:
            raise DeviceError(f"{where}: torch.{func.__name__} without a device: the tensor lands on the default "
                              "device, not on the network's")

    def _check_generator(self, func, args, kwargs) -> None:
        generator = kwargs.get("generator")
        if generator is None:
            return
        if isinstance(args[0] if args else None, torch.Tensor) and func not in (torch.normal, torch.bernoulli,
                                                                                 torch.multinomial):
            target = args[0].device  # an in-place fill: the tensor's own device
        elif kwargs.get("out") is not None:
            target = kwargs["out"].device
        else:
            target = torch.device(kwargs.get("device") or "meta")
        if generator.device.type != target.type:
            raise DeviceError(f"{_engine_caller() or 'a caller'}: {func.__name__} fills a {target} tensor from a "
                              f"{generator.device} generator")


class MemoryCap(TorchFunctionMode):
    """A device with little memory, simulated: any torch call (from anywhere) that allocates a tensor of more than
    ``limit`` bytes fails as that device's allocator fails -- ``torch.OutOfMemoryError`` as on a GPU
    (``kind="cuda"``) or the ``RuntimeError`` of PyTorch's CPU allocator (``kind="cpu"``). Views and in-place
    results share an input's storage and allocate nothing; they pass. ``failures`` counts the refusals."""

    def __init__(self, limit: int, kind: str = "cuda"):
        super().__init__()
        self.limit = limit
        self.kind = kind
        self.failures = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in _tensors(args, []) + _tensors(kwargs, [])
                  if t.device.type != "meta"}
        for t in _tensors(result, []):
            if t.device.type == "meta" or t.untyped_storage().data_ptr() in inputs:
                continue
            size = t.untyped_storage().nbytes()
            if size > self.limit:
                self.failures += 1
                if self.kind == "cuda":
                    raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} bytes (simulated "
                                                 f"device of {self.limit} bytes)")
                raise RuntimeError(f"[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                                   f"memory: you tried to allocate {size} bytes. Error code 12 (Cannot allocate "
                                   "memory)")
        return result
