"""VNN-LIB 1.0 properties read exactly as before VNN-LIB 2.0 support was added.

``tests/data/vnnlib1_fingerprints.json`` holds, for every property under ``../shared/benchmarks/*/vnnlib``, a
hash of the specification (every case's box and rows) the 1.0 reader gave before the 2.0 reader existed
(written by ``tests/vnnlib1_fingerprint.py`` from the reader of that commit). The fast test reads a spread of
the files (every family); the slow one reads all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vnnlib1_fingerprint import BENCHMARKS, fingerprint, property_files

from verifier.spec import parse_vnnlib
from verifier.spec.vnnlib2 import read_text, vnnlib_version

RECORDED = json.loads((Path(__file__).parent / "data" / "vnnlib1_fingerprints.json").read_text())

pytestmark = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="public benchmarks not present")


def _check(paths: list[Path]) -> None:
    assert paths
    for path in paths:
        key = str(path.relative_to(BENCHMARKS))
        assert key in RECORDED, f"{key}: no recorded fingerprint"
        assert vnnlib_version(read_text(path)[0]) is None        # a 1.0 file is never taken for 2.0
        assert fingerprint(parse_vnnlib(path)) == RECORDED[key], f"{key}: the specification changed"


def _spread(per_family: int) -> list[Path]:
    chosen, seen = [], {}
    for path in property_files():
        family = path.relative_to(BENCHMARKS).parts[0]
        seen[family] = seen.get(family, 0) + 1
        if seen[family] <= per_family and path.stat().st_size < 2_000_000:
            chosen.append(path)
    return chosen


def test_a_spread_of_properties_reads_as_before():
    _check(_spread(per_family=3))


@pytest.mark.slow
def test_every_public_property_reads_as_before():
    paths = property_files()
    assert len(paths) == len(RECORDED)
    _check(paths)
