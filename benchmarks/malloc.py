"""Why the engine fixes glibc's allocator thresholds (``verifier.threads.tune_malloc``): the same verification
with them and with glibc's own dynamic thresholds (``VERIFIER_MALLOC=default``), side by side in one run.

    python benchmarks/malloc.py                     # ACAS Xu 3_3 prop 2 and oval21 img 8194, 2 runs each
    python benchmarks/malloc.py --repeats 1

Each run is a fresh ``verifier verify --json`` process with one thread, the two settings interleaved; printed:
verdict, sub-domains, the verifier's own time per run, and the ratio of the medians (default / tuned, > 1
means the tuned allocator is faster). Asserts nothing. Linux/glibc only (elsewhere both are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import ROOT, SHARED

INSTANCES = [
    ("acasxu", "onnx/ACASXU_run2a_3_3_batch_2000.onnx", "vnnlib/prop_2.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img8194-eps0.018300653594771243.vnnlib"),
]


def run(onnx, vnnlib, timeout: float, setting: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), VERIFIER_THREADS="1")
    env.pop("VERIFIER_MALLOC", None)
    if setting == "default":
        env["VERIFIER_MALLOC"] = "default"
    done = subprocess.run([sys.executable, "-m", "verifier", "verify", str(onnx), str(vnnlib), "--json",
                           "--timeout", str(timeout)], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"status": "error"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    print(f"{'instance':40s} {'setting':8s} {'verdict':8s} {'domains':>8s} {'times s':>16s}")
    for family, onnx, vnnlib in INSTANCES:
        onnx, vnnlib = SHARED / family / onnx, SHARED / family / vnnlib
        if not onnx.is_file():
            print(f"{family}: skipped, {onnx} not found")
            continue
        times: dict[str, list[float]] = {"default": [], "tuned": []}
        last: dict[str, dict] = {}
        for _ in range(args.repeats):
            for setting in ("default", "tuned"):
                payload = run(onnx, vnnlib, args.timeout, setting)
                last[setting] = payload
                if "time_s" in payload:
                    times[setting].append(payload["time_s"])
        name = f"{onnx.stem[:20]}/{vnnlib.stem[:18]}"
        for setting in ("default", "tuned"):
            payload = last[setting]
            print(f"{name:40s} {setting:8s} {payload.get('status', '?'):8s} "
                  f"{payload.get('stats', {}).get('domains', 0):8d} "
                  f"{'/'.join(f'{t:.1f}' for t in times[setting]):>16s}")
        if times["default"] and times["tuned"]:
            ratio = statistics.median(times["default"]) / statistics.median(times["tuned"])
            print(f"{name:40s} default / tuned: {ratio:.2f}x")


if __name__ == "__main__":
    main()
