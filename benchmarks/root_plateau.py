"""Why ReLU splitting's root stops its full alpha-CROWN on a plateau (``ReluSplitOptions.root_plateau``,
:class:`verifier.bounds.alpha.Plateau`): the same verifications with the plateau stop and with all 50 steps,
side by side in one run.

    python benchmarks/root_plateau.py                    # three oval21 and four mnist_fc instances, 1 run each
    python benchmarks/root_plateau.py --repeats 2 --only oval

Each run is a fresh process with one thread (this script again, with ``--child``, which sets the options'
``root_plateau`` to None for the 50-step runs), the two settings interleaved; printed: verdict, time, the root's
seconds and the sub-domains of each, and the ratio of the summed times (50 steps / plateau, > 1 means the
plateau stop is faster). Asserts nothing. Instances from ``../shared/benchmarks``, skipped where absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import ROOT, SHARED

INSTANCES = [
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img3568-eps0.030457516339869282.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img876-eps0.024836601307189544.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img6767-eps0.020000000000000004.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_11_0.05.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_3_0.05.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x6.onnx", "vnnlib/prop_7_0.03.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x6.onnx", "vnnlib/prop_12_0.03.vnnlib"),
]


def child(onnx: str, vnnlib: str, timeout: float, plateau: bool) -> None:
    """One verification in this process; prints its JSON line."""
    import verifier
    from verifier.bab.relu_split import ReluSplitOptions

    if not plateau:
        initialise = ReluSplitOptions.__init__

        def all_steps(self, *args, **kwargs):
            initialise(self, *args, **kwargs)
            self.root_plateau = None

        ReluSplitOptions.__init__ = all_steps
    started = time.perf_counter()
    result = verifier.verify(onnx, vnnlib, timeout=timeout)
    print(json.dumps({"status": result.status, "time": time.perf_counter() - started,
                      "root": result.stats.get("root_s") or 0.0, "domains": result.stats.get("domains") or 0}))


def run(onnx, vnnlib, timeout: float, plateau: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFIER_THREADS="1")
    command = [sys.executable, __file__, "--child", str(onnx), str(vnnlib), str(timeout), "on" if plateau else "off"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout + 120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"status": "error", "time": 0.0, "root": 0.0, "domains": 0}


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] == "on")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting and instance (interleaved)")
    parser.add_argument("--timeout", type=float, default=150.0, help="per run (default 150 s)")
    parser.add_argument("--only", help="instances whose family or file names contain this")
    args = parser.parse_args()
    print(f"{'instance':42s} {'setting':9s} {'verdict':8s} {'time s':>8s} {'root s':>7s} {'domains':>8s}")
    totals = {True: 0.0, False: 0.0}
    for family, onnx, vnnlib in INSTANCES:
        if args.only and args.only not in f"{family}/{onnx}/{vnnlib}":
            continue
        onnx_path, vnnlib_path = SHARED / family / onnx, SHARED / family / vnnlib
        name = f"{family} {os.path.basename(vnnlib)[:32]}"
        if not onnx_path.is_file():
            print(f"{name:42s} skipped: {onnx_path} not found")
            continue
        for _ in range(args.repeats):
            for plateau in (False, True):
                row = run(onnx_path, vnnlib_path, args.timeout, plateau)
                totals[plateau] += row["time"]
                print(f"{name:42s} {'plateau' if plateau else '50 steps':9s} {row['status']:8s} {row['time']:8.2f} "
                      f"{row['root']:7.2f} {row['domains']:8d}")
    if totals[True] > 0:
        print(f"summed time: 50 steps {totals[False]:.1f} s, plateau {totals[True]:.1f} s: "
              f"{totals[False] / totals[True]:.2f}x")


if __name__ == "__main__":
    main()
