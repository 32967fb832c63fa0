"""Build and install the verifier package.

The native kernels in ``csrc/`` are optional: the package works without them (pure-PyTorch fallback).
Install with ``pip install --no-build-isolation -e .`` so the build sees the installed torch. The CPU
kernels are built whenever torch >= 2.10 and a C++ compiler are present, the CUDA kernels in addition when
a CUDA toolkit and a CUDA-enabled torch are (``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures, e.g.
``9.0`` for H100/H200). If the build fails, the pure-Python package is installed all the same.
``VERIFIER_BUILD_KERNELS=0`` skips the build.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def _build_helpers():
    spec = importlib.util.spec_from_file_location("verifier_csrc_build", ROOT / "csrc" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _say(message: str) -> None:
    print(f"verifier: {message}", file=sys.stderr)


def native_extension() -> tuple[list, dict]:
    """The kernel extension and its build command, or nothing when it cannot be built here."""
    if os.environ.get("VERIFIER_BUILD_KERNELS", "1") == "0":
        _say("VERIFIER_BUILD_KERNELS=0: native kernels not built")
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        _say("torch is not importable at build time: native kernels not built (install torch first, then "
             "pip install --no-build-isolation)")
        return [], {}
    build = _build_helpers()
    if not build.torch_version_ok(torch.__version__):
        _say(f"torch {torch.__version__} predates the stable ABI the kernels use: native kernels not built")
        return [], {}
    with_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if os.environ.get("VERIFIER_BUILD_CUDA", "1") == "0":
        with_cuda = False
    flags = {"cxx": build.CXX_FLAGS}
    cpu_extension = cpp_extension.CppExtension(
        "verifier.kernels._C", build.cpu_sources(), extra_compile_args=flags, py_limited_api=True
    )
    fallback = []
    extension = cpu_extension
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and torch.cuda.device_count() == 0:
            os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"  # no GPU to ask: H100/H200
            _say("no GPU visible and TORCH_CUDA_ARCH_LIST unset: building the CUDA kernels for 9.0")
        try:
            extension = cpp_extension.CUDAExtension(
                "verifier.kernels._C",
                build.cpu_sources() + build.cuda_sources(),
                extra_compile_args={**flags, "nvcc": build.NVCC_FLAGS},
                py_limited_api=True,
            )
            fallback = [build.cpu_sources()]
        except Exception as error:  # noqa: BLE001 - a CUDA toolkit torch cannot use
            _say(f"the CUDA kernels cannot be set up ({type(error).__name__}: {error}); building the CPU ones")
            with_cuda = False

    class OptionalBuildExtension(cpp_extension.BuildExtension):
        """Builds the kernels; if the CUDA build fails, the CPU kernels alone; if that fails too (no compiler, a
        toolchain error), nothing, leaving the pure-Python package installable."""

        def run(self):
            extension, = self.extensions
            attempts = [list(extension.sources), *fallback]  # CPU + CUDA sources, then CPU only
            # options that a failed run() leaves changed: the compiler (replaced by an object), inplace (reset)
            compiler, inplace = self.compiler, self.inplace
            for number, sources in enumerate(attempts):
                extension.sources, self.compiler, self.inplace = sources, compiler, inplace
                try:
                    super().run()
                    return
                except Exception as error:  # noqa: BLE001 - any compiler/toolchain failure
                    retry = "; trying the CPU kernels alone" if number + 1 < len(attempts) else ""
                    _say(f"building the native kernels failed ({type(error).__name__}: {error}){retry}")
            _say("installing without native kernels (the pure-PyTorch kernels will be used)")
            self.extensions = []

    _say(f"building native kernels ({'CPU + CUDA' if with_cuda else 'CPU'})")
    return [extension], {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = native_extension()

setup(
    name="verifier",
    version="0.1.0",
    description="Neural-network verification: sound bounds (IBP, CROWN), branch and bound, randomized smoothing",
    packages=find_packages(include=["verifier", "verifier.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "onnx>=1.16",  # 1.16 fixed path traversal through external-data locations
        "onnxruntime>=1.16",
        "matplotlib>=3.6",
    ],
    extras_require={
        "test": ["pytest>=7", "scikit-learn>=1.2", "ruff>=0.4", "vnnlib==1.0.2", "vnnlib-satisfactory==1.0.1"],
        # VNN-LIB 2.0 queries: the standard's parser and type checker (MIT, pybind11 wheels)
        "vnnlib2": ["vnnlib==1.0.2"],
        # parallel and distributed runs: verify --workers/--scheduler, bench --cluster/--scheduler
        "distributed": ["dask[distributed]>=2024.1"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": ["verifier=verifier.cli:main"]},
)
