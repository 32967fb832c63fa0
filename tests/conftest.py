"""Shared test fixtures: paths to the project's models and to the public benchmark families."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SHARED = ROOT.parent / "shared" / "benchmarks"

torch.set_num_threads(1)


def shared_family(name: str) -> Path:
    """Path of a public benchmark family; skips the test when ``../shared/benchmarks`` is absent."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"benchmark family {name} not available at {path}")
    return path


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)
