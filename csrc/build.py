"""How the native kernels are compiled: sources, flags, and the compile-only check of the CUDA files.

Used by ``setup.py`` (the build) and by ``tests/test_cuda_compile.py`` (an ``nvcc -c`` check of every
``csrc/cuda/*.cu`` file on machines with a CUDA toolkit but no CUDA-enabled torch or no GPU).

Soundness of the bounds depends on IEEE arithmetic as the reference does it: no ``-ffast-math`` /
``--use_fast_math``, and no contraction of ``a * b + c`` into fused multiply-adds (``-ffp-contract=off``,
``--fmad=false``), so the elementwise results equal the PyTorch reference's bit for bit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CSRC = Path(__file__).resolve().parent

#: the oldest torch whose stable ABI has everything the kernels use (parallel_for, empty, dispatcher calls)
MIN_TORCH = (2, 10)
TARGET_VERSION = "-DTORCH_TARGET_VERSION=0x020a000000000000"

CXX_FLAGS = ["-O3", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-Wno-psabi", TARGET_VERSION]
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false", "-DUSE_CUDA", TARGET_VERSION]


def cpu_sources() -> list[str]:
    """The schema file and the CPU backend, relative to the repository root."""
    files = [CSRC / "ops.cpp", *sorted((CSRC / "cpu").glob("*.cpp"))]
    return [str(f.relative_to(CSRC.parent)) for f in files]


def cuda_sources() -> list[str]:
    """The CUDA backend, relative to the repository root."""
    return [str(f.relative_to(CSRC.parent)) for f in sorted((CSRC / "cuda").glob("*.cu"))]


def torch_version_ok(version: str) -> bool:
    """Whether a torch version string is at least :data:`MIN_TORCH`."""
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= MIN_TORCH


def find_nvcc() -> str | None:
    """The nvcc of ``CUDA_HOME``/``CUDA_PATH``, else the one on ``PATH``, else None."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return shutil.which("nvcc")


def nvcc_check_command(nvcc: str, source: str, output: str, arch: str = "90") -> list[str]:
    """The ``nvcc -c`` command that compiles one ``.cu`` file as ``setup.py`` would, for one GPU arch."""
    from torch.utils.cpp_extension import include_paths

    includes = [f"-I{p}" for p in include_paths()]
    host = ["-Xcompiler", "-fPIC", "-Xcompiler", "-ffp-contract=off"]
    strict = ["--Werror", "all-warnings"]
    return [nvcc, "-c", source, "-o", output, f"-gencode=arch=compute_{arch},code=sm_{arch}", *NVCC_FLAGS,
            *host, *strict, *includes]


def check_cuda_compiles(output_dir: str, arch: str = "90") -> list[str]:
    """Compile every ``csrc/cuda/*.cu`` to an object file with nvcc (warnings are errors); returns the objects.

    What this covers: host and device code parse and type-check against the stable-ABI headers of the
    installed torch, every kernel template is instantiated for float32 and float64, and ptxas generates
    machine code for ``sm_<arch>`` (9.0: H100/H200). What it does not: linking against libtorch_cuda /
    cudart, loading the library, or running anything. Raises ``subprocess.CalledProcessError`` (with
    nvcc's messages) for a file that fails.
    """
    from concurrent.futures import ThreadPoolExecutor

    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    jobs = []
    for source in cuda_sources():
        path = CSRC.parent / source
        jobs.append((str(path), str(Path(output_dir) / (path.stem + ".o"))))

    def compile_one(job: tuple[str, str]) -> str:
        source, obj = job
        subprocess.run(nvcc_check_command(nvcc, source, obj, arch), check=True, capture_output=True, text=True)
        return obj

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        return list(pool.map(compile_one, jobs))


if __name__ == "__main__":  # python csrc/build.py [OUTPUT_DIR]: the compile-only CUDA check
    import tempfile

    target = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="verifier-nvcc-")
    try:
        for obj in check_cuda_compiles(target):
            print("compiled", obj)
    except subprocess.CalledProcessError as error:
        print(error.stderr or error.stdout)
        sys.exit(1)
