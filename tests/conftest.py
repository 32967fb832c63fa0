"""Shared test fixtures: paths to the project's models and to the public benchmark families, and the device the
engine tests run on.

``VERIFIER_TEST_DEVICE=cuda`` (or ``cuda:N``; default ``cpu``) runs the engine, verdict, MILP-comparison and
ground-truth tests on that device (they read :data:`TEST_DEVICE`); tests marked ``cuda`` are skipped when torch
sees no CUDA device.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
#: the public benchmark families: ``../shared/benchmarks``, or ``VERIFIER_BENCHMARKS`` (e.g. the ``gpu_data`` copy
#: that benchmarks/gpu_data.py makes for a machine where ``../shared`` is not beside the checkout)
SHARED = Path(os.environ.get("VERIFIER_BENCHMARKS") or ROOT.parent / "shared" / "benchmarks").resolve()

torch.set_num_threads(1)

#: where the engine tests compute (``VERIFIER_TEST_DEVICE``, default ``cpu``)
TEST_DEVICE = torch.device(os.environ.get("VERIFIER_TEST_DEVICE", "cpu").strip() or "cpu")


def pytest_configure(config) -> None:
    if TEST_DEVICE.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"VERIFIER_TEST_DEVICE={TEST_DEVICE}, but torch sees no CUDA device")
    if TEST_DEVICE.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"VERIFIER_TEST_DEVICE={TEST_DEVICE}: use cpu, cuda or cuda:N")


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch sees none)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def shared_family(name: str) -> Path:
    """Path of a public benchmark family; skips the test when ``../shared/benchmarks`` is absent."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"benchmark family {name} not available at {path}")
    return path


@pytest.fixture
def device() -> torch.device:
    """The device the engine tests compute on (:data:`TEST_DEVICE`)."""
    return TEST_DEVICE


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)
