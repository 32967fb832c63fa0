"""Train the certifiably robust digit classifiers shipped in models/ with the engine's own bounds.

    python models/make_certified_models.py            # ~5 minutes on one CPU core; rewrites the files below

On scikit-learn's 8x8 digits (pixels in [0, 1]; the 80/20 split of make_models.py, whose 360 test digits are
models/digits_test.npz), an MLP and a small CNN, each trained with IBP (Gowal et al. 2018) and with CROWN-IBP
(Zhang et al. 2020), through ``verifier.training.train_certified`` (fixed seeds, one thread):

  digits_mlp_ibp.onnx, digits_mlp_crownibp.onnx   MLP 64 -> 256 -> 256 -> 10
  digits_cnn_ibp.onnx, digits_cnn_crownibp.onnx   CNN Conv 1->16, Conv 16->32 stride 2, Linear 512->100, Linear

Each is trained at L-infinity epsilon 0.15 (smoothed ramp from 0, kappa 1 -> 0, beta 1 -> 0, IBP initialisation
and the warm-up regulariser of Shi et al. 2021), exported to ONNX and then *reloaded from the ONNX file* to
measure its clean, PGD and certified accuracy on the 360 test digits at epsilon 0.05 and 0.1 with the engine's
Python API (``verifier.training.evaluate``: certified = elided IBP, CROWN-IBP or CROWN proves every margin
positive). The naturally trained models of make_models.py are measured the same way for comparison. The
table is printed and written to digits_certified_results.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from make_models import export, load_digits  # noqa: E402

import verifier  # noqa: E402
from verifier.training import EpsilonSchedule, Ramp, batches, evaluate, ibp_init, train_certified  # noqa: E402

EPSILONS = (0.05, 0.1)
TRAIN_EPS = 0.15
EPOCHS = {"mlp": 60, "cnn": 60}


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 100), nn.ReLU(), nn.Linear(100, 10),
    )


ARCHITECTURES = {"mlp": (mlp, (64,)), "cnn": (cnn, (1, 8, 8))}


def train(name: str, method: str, seed: int, x_train: torch.Tensor, y_train: torch.Tensor,
          crown_rows: int | None = None) -> tuple[nn.Module, float]:
    """One training run (fixed seed; ``method="natural"`` for the baseline, with the default initialisation);
    returns the model and its training time."""
    make, shape = ARCHITECTURES[name]
    torch.manual_seed(seed)
    model = make() if method == "natural" else ibp_init(make())
    epochs = EPOCHS[name]
    loader = batches(x_train.reshape(-1, *shape), y_train, 64, seed=seed)
    schedule = EpsilonSchedule(TRAIN_EPS, start=2, length=epochs // 2, shape="smoothed")
    start = time.perf_counter()
    train_certified(model, loader, schedule, epochs, method, kappa=Ramp(1.0, 0.0), beta=Ramp(1.0, 0.0), lr=1e-3,
                    lr_decay_epochs=(int(0.75 * epochs), int(0.9 * epochs)), regularizer=0.5,
                    crown_rows=crown_rows, label=f"{name} {method}")
    return model, time.perf_counter() - start


def measure(path: Path, x_test: torch.Tensor, y_test: torch.Tensor) -> dict:
    """Clean, PGD and certified accuracy of the ONNX file on the test digits, at each epsilon."""
    network = verifier.load_onnx(path)
    accuracy = evaluate(network, x_test, y_test, EPSILONS, domain=(0.0, 1.0))
    return {"clean": accuracy.clean, **{f"pgd@{e}": accuracy.pgd[e] for e in EPSILONS},
            **{f"certified@{e}": accuracy.certified[e] for e in EPSILONS},
            "certified_by": {str(e): accuracy.certified_by[e] for e in EPSILONS}}


def table(rows: list[dict]) -> str:
    header = "| model | training | clean | PGD 0.05 | certified 0.05 | PGD 0.1 | certified 0.1 | train time |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [f"{100 * row[k]:.1f} %" for k in ("clean", "pgd@0.05", "certified@0.05", "pgd@0.1", "certified@0.1")]
        seconds = "-" if row["train_s"] is None else f"{row['train_s']:.0f} s"
        lines.append(f"| `{row['file']}` | {row['training']} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines)


def main() -> int:
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_digits()
    rows = []
    for name in ("mlp", "cnn"):
        path = HERE / f"digits_{name}.onnx"
        if path.exists():
            rows.append({"file": path.name, "training": "natural (make_models.py)", "train_s": None,
                         **measure(path, x_test, y_test)})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    for name, method in (("mlp", "ibp"), ("mlp", "crown-ibp"), ("cnn", "ibp"), ("cnn", "crown-ibp")):
        model, seconds = train(name, method, 0, x_train, y_train)
        path = HERE / f"digits_{name}_{method.replace('-', '')}.onnx"
        export(model, torch.zeros(1, *ARCHITECTURES[name][1]), path)
        rows.append({"file": path.name, "training": f"{method.upper()} at eps {TRAIN_EPS}", "train_s": seconds,
                     **measure(path, x_test, y_test)})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    (HERE / "digits_certified_results.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
