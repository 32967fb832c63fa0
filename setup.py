"""Build and install the verifier package.

The native kernels in ``csrc/`` are optional: the package works without them (pure-PyTorch fallback).
Install with ``pip install --no-build-isolation -e .`` so the build sees the installed torch.
"""

from setuptools import find_packages, setup

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
        "onnx>=1.14",
        "onnxruntime>=1.16",
        "matplotlib>=3.6",
    ],
    extras_require={
        "test": ["pytest>=7", "scikit-learn>=1.2", "ruff>=0.4"],
    },
    entry_points={"console_scripts": ["verifier=verifier.cli:main"]},
)
