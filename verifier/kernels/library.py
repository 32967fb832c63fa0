"""Which implementation of the kernels runs: the compiled library or the pure-PyTorch references.

The setting ``VERIFIER_KERNELS`` (or :func:`set_backend`) chooses:

* ``native``: the compiled kernels (``csrc/``); an error if they cannot be loaded;
* ``torch``: the pure-PyTorch references of :mod:`verifier.primitives`;
* unset: ``native`` when the library loads, else ``torch`` (said once, with a warning).

The library is found next to this file (``verifier/kernels/_C*.so``, put there by ``pip install`` or by
``python setup.py build_ext --inplace``) and loaded on the first kernel call, not at import. Even with the
native backend, a call whose operands the kernels do not cover (another dtype, a device without kernels)
runs the reference.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

ENV = "VERIFIER_KERNELS"
CHOICES = ("native", "torch")
_DTYPES = (torch.float32, torch.float64)

_requested: str | None = None  # set_backend(); None: the environment decides
_native_on: bool | None = None  # the resolved choice, cached
_loaded: bool | None = None
_cuda_kernels = False
_why_unavailable = ""
_said_unavailable = False
_on_load: list[Callable[[], None]] = []


def library_path() -> Path | None:
    """The compiled kernel library next to this package, or None when it was not built."""
    here = Path(__file__).resolve().parent
    for pattern in ("_C*.so", "_C*.pyd"):
        found = sorted(here.glob(pattern))
        if found:
            return found[0]
    return None


def on_load(register: Callable[[], None]) -> None:
    """Run ``register`` (fake and autograd registrations of an op) once the library is loaded."""
    _on_load.append(register)
    if _loaded:
        register()


def _load() -> bool:
    global _loaded, _cuda_kernels, _why_unavailable
    if _loaded is not None:
        return _loaded
    path = library_path()
    if path is None:
        _why_unavailable = "the compiled library verifier/kernels/_C*.so is not built"
        _loaded = False
        return False
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as error:
        _why_unavailable = f"{path.name} does not load with torch {torch.__version__} ({error})"
        _loaded = False
        return False
    for register in _on_load:
        register()
    _cuda_kernels = torch._C._dispatch_has_kernel_for_dispatch_key("verifier::relaxed_backward", "CUDA")
    _loaded = True
    return True


def native_available() -> bool:
    """Whether the compiled kernels are loaded (loading them if needed)."""
    return _load()


def cuda_kernels_available() -> bool:
    """Whether the loaded library has CUDA kernels (built with a CUDA toolkit and a CUDA-enabled torch)."""
    return _load() and _cuda_kernels


def _resolve() -> bool:
    global _native_on, _said_unavailable
    requested = _requested or os.environ.get(ENV, "").strip().lower() or None
    if requested is not None and requested not in CHOICES:
        raise ValueError(f"{ENV}={requested!r}: choose one of {', '.join(CHOICES)}")
    if requested == "torch":
        _native_on = False
    elif _load():
        _native_on = True
    elif requested == "native":
        raise RuntimeError(f"{ENV}=native, but the native kernels are unavailable: {_why_unavailable}")
    else:
        if not _said_unavailable:
            warnings.warn(
                f"verifier: native kernels unavailable ({_why_unavailable}); using the pure-PyTorch kernels. "
                "Build them with `pip install --no-build-isolation -e .` or `python setup.py build_ext --inplace`.",
                RuntimeWarning,
                stacklevel=3,
            )
            _said_unavailable = True
        _native_on = False
    return _native_on


def set_backend(name: str | None) -> str:
    """Choose ``"native"`` or ``"torch"`` for this process (``None``: back to ``VERIFIER_KERNELS``/automatic).

    Returns the backend now in use; raises ``RuntimeError`` for ``"native"`` when the library is unavailable.
    """
    global _requested, _native_on
    if name is not None and name not in CHOICES:
        raise ValueError(f"unknown kernel backend {name!r}: choose one of {', '.join(CHOICES)}")
    _requested, _native_on = name, None
    return backend()


def backend() -> str:
    """The kernel backend in use: ``"native"`` or ``"torch"``."""
    native = _native_on if _native_on is not None else _resolve()
    return "native" if native else "torch"


def use_native(*operands: Tensor | None) -> bool:
    """Whether a call on these operands runs natively: the native backend is on and every operand is a
    float32/float64 tensor of one dtype, on the CPU or on a CUDA device when CUDA kernels are built."""
    native = _native_on if _native_on is not None else _resolve()
    if not native:
        return False
    first = operands[0]
    dtype, device = first.dtype, first.device
    if dtype not in _DTYPES:
        return False
    for t in operands[1:]:
        if t is not None and (t.dtype != dtype or t.device != device):
            return False
    return device.type == "cpu" or (device.type == "cuda" and _cuda_kernels)
