"""Why the coordinator holds one worker thread back while the exact MILP runs alone (``_Run._beside_milp`` in
:mod:`verifier.distributed.coordinator`): a 60-variable unsatisfiable 3-SAT network, which the MILP decides,
verified on one warm local cluster with the hold and without it, interleaved, in one run.

    python benchmarks/milp_beside.py                  # 2 workers, 2 pairs
    python benchmarks/milp_beside.py --workers 2 --repeats 3

"Without" tells the coordinator the machine has 64 cores, so nothing is held back; "held" uses the real core
count (on a machine with more cores than the workers take, both settings hold nothing). Printed per run: verdict,
wall seconds of ``verifier.verify``, HiGHS's seconds, sub-domains, whether a thread was held; then the ratio of
the summed times (without / held, > 1 means holding is faster). Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT

sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    import verifier
    from tests import satnet
    from verifier.distributed import coordinator
    from verifier.distributed.cluster import start_local

    n = 60
    formula = satnet.random_formula(n, int(4.5 * n), np.random.default_rng(1))
    folder = Path(tempfile.mkdtemp(prefix="milp_beside_"))
    model, prop = satnet.write_instance(folder, "unsat60", formula, n)
    cluster = start_local(args.workers)
    cluster.wait_for_workers(args.workers)
    real = coordinator.available_cores
    totals = {"without": 0.0, "held": 0.0}
    try:
        for _ in range(args.repeats):
            for label, cores in (("without", lambda: 64), ("held", real)):
                coordinator.available_cores = cores
                start = time.perf_counter()
                result = verifier.verify(str(model), str(prop), timeout=args.timeout, client=cluster.client)
                seconds = time.perf_counter() - start
                totals[label] += seconds
                info = result.stats.get("distributed", {})
                print(f"{label:8s} {result.status:8s} {seconds:6.1f} s  HiGHS "
                      f"{result.stats.get('milp', {}).get('time_s', 0.0):5.1f} s  domains "
                      f"{result.stats.get('domains', 0):7d}  held {info.get('held_for_milp', 0)}", flush=True)
    finally:
        coordinator.available_cores = real
        cluster.close()
    print(f"without / held: {totals['without'] / max(totals['held'], 1e-9):.2f}x "
          f"({args.workers} workers, {real()} cores)")


if __name__ == "__main__":
    main()
