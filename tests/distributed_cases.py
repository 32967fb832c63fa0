"""Properties for the distributed tests: small networks, but properties that need branching.

``acas_margin(d)``: on ``models/acasxu_like.onnx`` (input splitting), "``Y_0 - Y_1 <= d`` somewhere in a wide
box". Dense sampling (200 000 points) puts the smallest ``Y_0 - Y_1`` at about -0.4068, so ``d = -0.41`` is
just below it: proving it takes about 800 sub-boxes; ``d = -0.408`` about 2 500; ``d = 0`` is sat.

``digits_margin(d)``: on ``models/digits_mlp.onnx`` (64 inputs: ReLU splitting with beta-CROWN), "class 2
minus class 8 ``<= d``" on the L-inf ball of radius 0.15 around ``digits_mlp_img0.npy`` (clipped to [0, 1]).
PGD puts the smallest margin at about 1.489; ``d = 1.44`` is proved after about 300 domains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import MODELS

ACAS = MODELS / "acasxu_like.onnx"
DIGITS = MODELS / "digits_mlp.onnx"
ACAS_LOWER = [30000.0, -1.0, -1.0, 500.0, 300.0]
ACAS_UPPER = [60760.0, 1.0, 1.0, 1200.0, 1200.0]


def _declare(inputs: int, outputs: int) -> str:
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(inputs)) + \
        "".join(f"(declare-const Y_{i} Real)\n" for i in range(outputs))


def _box(lower, upper) -> str:
    return "".join(f"(assert (>= X_{i} {float(lo)!r}))\n(assert (<= X_{i} {float(hi)!r}))\n"
                   for i, (lo, hi) in enumerate(zip(lower, upper)))


def acas_margin(folder: Path, d: float) -> Path:
    path = folder / f"acas_margin_{d}.vnnlib"
    path.write_text(_declare(5, 5) + _box(ACAS_LOWER, ACAS_UPPER) + f"(assert (<= (- Y_0 Y_1) {d!r}))\n")
    return path


def digits_margin(folder: Path, d: float, eps: float = 0.15) -> Path:
    x = np.load(MODELS / "digits_mlp_img0.npy").reshape(-1).astype(np.float64)
    lower, upper = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    path = folder / f"digits_margin_{d}.vnnlib"
    path.write_text(_declare(64, 10) + _box(lower, upper) + f"(assert (<= (- Y_2 Y_8) {d!r}))\n")
    return path
