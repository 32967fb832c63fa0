"""Fill ``gpu_data/`` (git-ignored, inside the checkout) with what the GPU check reads from the shared benchmarks.

    python benchmarks/gpu_data.py [--source ../shared/benchmarks] [--target gpu_data]

The GPU machine gets a copy of the checkout only: ``../shared`` does not travel with it. This copies the networks
and properties that ``benchmarks/gpu.py`` and the GPU test selection (``benchmarks/gpu_check.sh``) use -- the
cases of gpu.py, the fast ground-truth instances of tests/test_verify_groundtruth.py, the networks of the
soundness tests -- with each family's ``instances.csv`` and ``ground_truth.csv`` cut to the copied instances, in
the layout of ``../shared/benchmarks`` (tests find it through ``VERIFIER_BENCHMARKS=gpu_data``). Prints the
total size, which must stay well under the 64 MiB a device call may carry.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: families whose every network the soundness tests bound (acasxu: the three of tests/netutil.shared_networks)
ALL_NETWORKS = ["mnist_fc", "eran", "oval21", "cifar10_resnet", "sri_resnet_a", "rl_benchmarks", "collins_rul_cnn",
                "test"]
LIMIT_BYTES = 48 * 2**20


def wanted_instances() -> dict[str, set[tuple[str, str]]]:
    """Per family, the (onnx, vnnlib) pairs to copy."""
    import gpu

    from tests.test_verify_groundtruth import FAST

    wanted: dict[str, set[tuple[str, str]]] = {}
    for family, onnx, vnnlib in gpu.CROWN_CASES + gpu.BAB_CASES + gpu.HARD_CASES:
        wanted.setdefault(family, set()).add((onnx, vnnlib))
    return wanted | {family: wanted.get(family, set()) | {("*", key) for key in (keys or ["*"])}
                     for family, keys in FAST.items()}


def rows_of(path: Path) -> tuple[list[str], list[dict]]:
    with open(path) as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def selected(row: dict, pairs: set[tuple[str, str]]) -> bool:
    """Whether an instances/ground-truth row is one of ``pairs`` (``("*", "NET.onnx:prop")`` names a fast
    instance the way the tests do; ``("*", "*")`` takes the whole family)."""
    onnx, vnnlib = row["onnx"], row["vnnlib"]
    key = f"{onnx.split('/')[-1]}:{vnnlib.split('/')[-1].removesuffix('.vnnlib')}"
    return any((o, v) == (onnx, vnnlib) or (o == "*" and v in (key, "*")) for o, v in pairs)


def copy_family(source: Path, target: Path, family: str, pairs: set[tuple[str, str]]) -> None:
    folder, out = source / family, target / family
    out.mkdir(parents=True, exist_ok=True)
    files = set()
    for name in ("instances.csv", "ground_truth.csv"):
        if not (folder / name).is_file():
            continue
        fields, rows = rows_of(folder / name)
        if name == "instances.csv":  # no header: onnx,vnnlib,timeout
            with open(folder / name) as handle:
                rows = [dict(zip(("onnx", "vnnlib", "timeout"), line)) for line in csv.reader(handle) if line]
        keep = [row for row in rows if selected(row, pairs)]
        files |= {row["onnx"] for row in keep} | {row["vnnlib"] for row in keep}
        with open(out / name, "w", newline="") as handle:
            if name == "instances.csv":
                csv.writer(handle).writerows([row["onnx"], row["vnnlib"], row["timeout"]] for row in keep)
            else:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(keep)
    if family in ALL_NETWORKS:
        files |= {f"onnx/{p.name}" for p in (folder / "onnx").glob("*.onnx")}
    if family == "acasxu":
        networks = sorted((folder / "onnx").glob("*.onnx"))
        files |= {f"onnx/{p.name}" for p in networks[:: max(1, len(networks) // 3)][:3]}
        files.add("onnx/ACASXU_run2a_1_1_batch_2000.onnx")
    for relative in sorted(files):
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / relative, out / relative)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "benchmarks"))
    parser.add_argument("--target", default=str(ROOT / "gpu_data"))
    args = parser.parse_args()
    source, target = Path(args.source), Path(args.target)
    if not source.is_dir():
        print(f"no benchmarks at {source}", file=sys.stderr)
        return 2
    if target.exists():
        shutil.rmtree(target)
    wanted = wanted_instances()
    for family in sorted(set(wanted) | set(ALL_NETWORKS)):
        copy_family(source, target, family, wanted.get(family, set()))
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    count = sum(1 for p in target.rglob("*") if p.is_file())
    print(f"{target}: {count} files, {total / 2**20:.1f} MiB")
    if total > LIMIT_BYTES:
        print(f"too large: keep it under {LIMIT_BYTES / 2**20:.0f} MiB (a device call carries 64 MiB in all)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
