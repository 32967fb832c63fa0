"""A stand-in verifier for the benchmark runner's tests: misbehaves on purpose, chosen by the property's name.

Called as ``python bench_fake_verifier.py ONNX VNNLIB --timeout T --results FILE --json`` (the contract of
``verifier verify``), in a process of its own or in a child of the fork server. It imports neither torch nor
the verifier, so it starts fast. Behaviour by the stem of VNNLIB: ``crash`` (exception, exit 1), ``segv``
(killed by SIGSEGV), ``oom`` (killed by SIGKILL, as by the out-of-memory killer), ``hang`` (ignores its
timeout), ``late`` (answers unsat just after its timeout), ``silent`` (exits 0 without a verdict), ``forged``
(sat with a made-up witness), ``slowN`` or ``slowN_anything`` (unsat after N/10 s), ``killparent`` (kills its
parent, the fork server in fork isolation, then hangs), anything else: unsat at once. The answer's message
is ``$BENCH_FAKE_NOTE`` (to check the environment an instance gets).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("property")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--results")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--device")
    args = parser.parse_args()
    started = time.monotonic()
    kind = Path(args.property).stem
    if kind == "crash":
        raise RuntimeError("boom: the fake verifier crashed")
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "oom":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "killparent":
        os.kill(os.getppid(), signal.SIGKILL)
        kind = "hang"
    if kind == "hang":
        print("thinking forever", file=sys.stderr, flush=True)
        while True:
            time.sleep(1)
    if kind == "silent":
        return 0
    if kind == "late":
        time.sleep(args.timeout + 0.5)
    if kind.startswith("slow"):
        time.sleep(int(kind[4:].split("_")[0] or 5) / 10)
    status, witness = "unsat", ""
    if kind == "forged":
        status = "sat"
        witness = "((X_0 0.0)\n (X_1 0.0)\n (X_2 0.0)\n (X_3 0.0)\n (X_4 0.0)\n" \
                  " (Y_0 -100.0)\n (Y_1 100.0)\n (Y_2 100.0)\n (Y_3 100.0)\n (Y_4 100.0))\n"
    Path(args.results).write_text(f"{status}\n{witness}")
    note = os.environ.get("BENCH_FAKE_NOTE", "") or (f"device {args.device}" if args.device else "")
    print(json.dumps({"status": status, "message": note, "stats": {"phases": {}},
                      "time_s": time.monotonic() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
