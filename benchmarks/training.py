"""Certified training: time per epoch of natural, IBP and CROWN-IBP training, and the accuracy each reaches.

    python benchmarks/training.py [--arch cnn|mlp] [--repeats 3] [--skip-accuracy] [--json]

Torch runs single-threaded. The model is the digits CNN (or MLP) of models/make_certified_models.py, the data
its 1437 training digits in minibatches of 64.

1. Time per epoch, measured side by side: copies of the same model train one epoch each in turn, ``--repeats``
   rounds, at a fixed epsilon (0.1) and fixed weights, through ``verifier.training.train_certified``; the table
   gives the median epoch time of each configuration and its ratio to the natural epoch. The configurations
   are the phases of a schedule: IBP with ``kappa = 0`` (after the ramp, where an IBP run spends most
   epochs; the clean logits need no gradient), IBP with ``kappa = 0.5`` (during the ramp), CROWN-IBP with
   ``beta = 1`` (the start of its ramp: a CROWN pass from the 9 margin rows of every sample) with
   ``kappa = 0.5`` and ``0``, and with ``crown_rows=2`` (its CROWN pass on the 2 hardest margins of each sample
   only, IBP on the other 7; sound, not in the paper). CROWN-IBP with ``beta = 0`` is IBP (its end of ramp and
   the epochs after).
2. Accuracy (unless ``--skip-accuracy``): natural, IBP and CROWN-IBP (all rows, and 2 rows) training with the
   recipe of make_certified_models.py (60 epochs), then clean, PGD and certified accuracy on the 360 test digits
   at L-infinity eps 0.05 and 0.1, measured with the engine (elided IBP, CROWN-IBP and CROWN bounds); also each
   run's total training time over the natural run's (the schedule averages the expensive epochs with the cheap
   ones: CROWN-IBP computes its CROWN pass only while ``beta > 0``, during the ramp).

Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from make_certified_models import ARCHITECTURES, EPSILONS, train  # noqa: E402
from make_models import load_digits  # noqa: E402

import verifier  # noqa: E402
from verifier.training import EpsilonSchedule, batches, evaluate, ibp_init, train_certified  # noqa: E402

TIMING_EPS = 0.1
CONFIGS = [  # name, method, kappa, beta, crown_rows
    ("natural", "natural", 1.0, 0.0, None),
    ("IBP, kappa 0", "ibp", 0.0, 0.0, None),
    ("IBP, kappa 0.5", "ibp", 0.5, 0.0, None),
    ("CROWN-IBP beta 1, kappa 0.5", "crown-ibp", 0.5, 1.0, None),
    ("CROWN-IBP beta 1, kappa 0", "crown-ibp", 0.0, 1.0, None),
    ("CROWN-IBP beta 1, kappa 0.5, crown_rows 2", "crown-ibp", 0.5, 1.0, 2),
]
RUNS = [("natural", None), ("ibp", None), ("crown-ibp", None), ("crown-ibp", 2)]  # accuracy: method, crown_rows


def epoch_times(arch: str, repeats: int) -> dict[str, list[float]]:
    """Seconds per epoch of each configuration, one epoch of each in turn, ``repeats`` rounds (plus a warm-up)."""
    make, shape = ARCHITECTURES[arch]
    x_train, y_train, _, _ = load_digits()
    torch.manual_seed(0)
    base = ibp_init(make())
    models = {name: copy.deepcopy(base) for name, *_ in CONFIGS}
    optimizers = {name: torch.optim.Adam(models[name].parameters(), lr=1e-3) for name, *_ in CONFIGS}
    schedule = EpsilonSchedule(TIMING_EPS, start=0, length=0)  # the target at once
    times: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
    for round_ in range(repeats + 1):
        for name, method, kappa, beta, rows in CONFIGS:
            loader = batches(x_train.reshape(-1, *shape), y_train, 64, seed=round_)
            history = train_certified(models[name], loader, schedule, 1, method, kappa=kappa, beta=beta,
                                      optimizer=optimizers[name], crown_rows=rows, progress=False)
            if round_ > 0:
                times[name].append(history.epochs[0].time_s)
    return times


def accuracy_runs(arch: str) -> list[dict]:
    x_train, y_train, x_test, y_test = load_digits()
    shape = ARCHITECTURES[arch][1]
    rows = []
    for method, crown_rows in RUNS:
        model, seconds = train(arch, method, 0, x_train, y_train, crown_rows)
        network = verifier.from_torch(model, torch.zeros(1, *shape))
        accuracy = evaluate(network, x_test.reshape(-1, *shape), y_test, EPSILONS)
        name = method if crown_rows is None else f"{method}, crown_rows {crown_rows}"
        rows.append({"training": name, "train_s": seconds, "clean": accuracy.clean,
                     **{f"pgd@{e}": accuracy.pgd[e] for e in EPSILONS},
                     **{f"certified@{e}": accuracy.certified[e] for e in EPSILONS}})
    natural = rows[0]["train_s"]
    for row in rows:
        row["time_vs_natural"] = row["train_s"] / natural
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="cnn")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (one epoch per configuration each)")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the epoch timings")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    times = epoch_times(args.arch, args.repeats)
    natural = statistics.median(times["natural"])
    timing = [{"configuration": name, "epoch_s": statistics.median(times[name]),
               "ratio": statistics.median(times[name]) / natural, "all_s": times[name]} for name, *_ in CONFIGS]
    result = {"arch": args.arch, "threads": torch.get_num_threads(), "timing_eps": TIMING_EPS, "epochs": timing}
    if not args.json:
        print(f"time per epoch, digits {args.arch}, 1437 digits in batches of 64, eps {TIMING_EPS}, 1 thread "
              f"(median of {args.repeats}, side by side)")
        print("| configuration | epoch | vs natural |\n|---|---|---|")
        for row in timing:
            print(f"| {row['configuration']} | {row['epoch_s']:.2f} s | {row['ratio']:.1f}x |")
    if not args.skip_accuracy:
        rows = accuracy_runs(args.arch)
        result["accuracy"] = rows
        if not args.json:
            print(f"\naccuracy on the 360 test digits (digits {args.arch}, trained as make_certified_models.py)")
            print("| training | clean | PGD 0.05 | certified 0.05 | PGD 0.1 | certified 0.1 | train time | "
                  "vs natural |\n|---|---|---|---|---|---|---|---|")
            for row in rows:
                cells = " | ".join(f"{100 * row[k]:.1f} %" for k in
                                   ("clean", "pgd@0.05", "certified@0.05", "pgd@0.1", "certified@0.1"))
                print(f"| {row['training']} | {cells} | {row['train_s']:.0f} s | {row['time_vs_natural']:.1f}x |")
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
