"""Fingerprints of the specifications the VNN-LIB 1.0 reader gives for the public benchmark properties.

``python tests/vnnlib1_fingerprint.py > tests/data/vnnlib1_fingerprints.json`` (run with the reader of the
commit to compare against on ``PYTHONPATH``) records, per file under ``../shared/benchmarks/*/vnnlib``, a hash
of every case's box and rows; ``tests/test_vnnlib2_v1_regression.py`` checks that the reader still gives the
same specifications.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


def fingerprint(spec) -> str:
    """A hash of the specification: sizes, dropped cases, and every case's lower, upper, C and d (float64)."""
    digest = hashlib.sha256()
    digest.update(f"{spec.n_inputs} {spec.n_outputs} {len(spec.cases)} {spec.infeasible_cases}".encode())
    for case in spec.cases:
        for array in (case.lower, case.upper, case.C, case.d):
            a = np.ascontiguousarray(array, dtype=np.float64)
            digest.update(str(a.shape).encode())
            digest.update(a.tobytes())
    return digest.hexdigest()


def property_files(root: Path = BENCHMARKS) -> list[Path]:
    return sorted(p for p in root.glob("*/vnnlib/*") if p.name.endswith((".vnnlib", ".vnnlib.gz")))


def main() -> None:
    from verifier.spec import parse_vnnlib

    result = {}
    for path in property_files():
        result[str(path.relative_to(BENCHMARKS))] = fingerprint(parse_vnnlib(path))
        print(path, file=sys.stderr)
    json.dump(result, sys.stdout, indent=0, sort_keys=True)


if __name__ == "__main__":
    main()
