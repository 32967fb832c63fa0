"""Run VNN-COMP benchmark instances: resumable, parallel, scored against the ground truth, with plots.

Every row (onnx,vnnlib,timeout) of each INSTANCES.csv runs in its own `verifier verify` process with a hard
deadline (killed --grace seconds after its timeout); a crash, hang or out-of-memory kill is recorded as
`error` and the run goes on. With --isolation fork (the default where os.fork exists, unless --command is
given) that process is forked from a warm server that imported the verifier once, saving the ~1.3 s
start-up of a fresh Python per instance; --isolation process starts a fresh one each time. Outcomes are
appended to DIR/results.csv as each instance ends (VNN-COMP columns, then ours); --resume skips what is
there, so an interrupted run loses nothing. A `sat` answer counts only if its witness passes the runner's
own onnxruntime check.

At the end: a table per family (ours, the best VNN-COMP tool and the virtual best from the ground_truth.csv
beside the instances), every disagreement with the ground truth, DIR/summary.md, DIR/summary.json and
DIR/cactus.png. Exit code 1 when an answer is incorrect, 2 on bad input, else 0. --threads N is handed
to every instance's process (VERIFIER_THREADS).

On a Dask cluster (--scheduler tcp://HOST:PORT, or --cluster local:N for N worker processes here), each
instance is a Dask task around the same isolated process and deadline; this process still writes
results.csv as results arrive. The workers need the benchmark files at the same paths (a shared
filesystem). A worker lost mid-instance costs that instance one re-run, noted in its row.

Examples:
  verifier bench ../shared/benchmarks/test/instances.csv --out bench_out/test
  verifier bench ../shared/benchmarks/acasxu/instances.csv --rows ::20 --jobs 2 --timeout-scale 0.5
  verifier bench ../shared/benchmarks/acasxu/instances.csv --out bench_out/acasxu --resume
  verifier bench ../shared/benchmarks/test/instances.csv --isolation process
  verifier bench ../shared/benchmarks/acasxu/instances.csv --cluster local:4
  verifier bench ../shared/benchmarks/acasxu/instances.csv --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from verifier.commands.options import add_device_argument, nonnegative_number, positive_int, positive_number
from verifier.errors import OptionError, shorten


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("instances", nargs="+", metavar="INSTANCES.csv",
                        help="VNN-COMP instances file(s); the family is the name of each file's folder")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default bench_out/FAMILY, or bench_out/run for several families)")
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="instances run in parallel on this machine (default 1)")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                         help="run the instances on this Dask cluster, one task each, as many at once as it has "
                         "worker threads (needs the extra: pip install \"verifier[distributed]\")")
    cluster.add_argument("--cluster", metavar="local:N",
                         help="run the instances on a Dask cluster of N worker processes started here (needs "
                         "the extra: pip install \"verifier[distributed]\")")
    parser.add_argument("--timeout-scale", type=positive_number, default=1.0,
                        help="multiply every instance's timeout by this (default 1)")
    parser.add_argument("--grace", type=nonnegative_number, default=5.0,
                        help="seconds past the timeout before an instance's process is killed (default 5)")
    parser.add_argument("--resume", action="store_true", help="continue the run in DIR, skipping recorded instances")
    parser.add_argument("--overwrite", action="store_true", help="start afresh, replacing DIR/results.csv")
    parser.add_argument("--rows", metavar="SLICE",
                        help="run only these rows of each file, a Python slice: '0:10', '::20' (every 20th)")
    parser.add_argument("--limit", type=positive_int, help="run at most this many rows of each file (after --rows)")
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="accept rows whose onnx/vnnlib paths lead outside the folder of their instances.csv "
                        "(refused by default: an instances file from elsewhere could point anywhere)")
    parser.add_argument("--command", metavar="CMD",
                        help="verifier command, called as CMD ONNX VNNLIB --timeout T --results FILE --json "
                        "(default: python -m verifier verify; e.g. 'python -m verifier verify --method bounds')")
    parser.add_argument("--isolation", choices=["process", "fork"], default=None,
                        help="fork: each instance is a child of a warm server that imported the verifier once "
                        "(start-up of milliseconds); process: a fresh process each (about 1.3 s start-up). "
                        "Default: fork where os.fork exists, process with --command (fork accepts a --command "
                        "'python -m MODULE ...' or 'python SCRIPT.py ...' of this interpreter)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_device_argument(parser, default=None, help_text="--device handed to every instance: auto, cpu, cuda or "
                        "cuda:N (default: the instance's own default, auto)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar on stderr (default: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    from verifier.bench import BenchOptions, ground_truth_beside, read_instances, run_benchmark, select_rows
    from verifier.bench.report import startup_line, text_table

    distributed = args.scheduler or args.cluster
    if args.jobs is not None and distributed:
        raise OptionError("--jobs is for runs on this machine; a Dask cluster runs as many instances at once as it "
                          "has worker threads")
    jobs = 1 if args.jobs is None else args.jobs
    if args.resume and args.overwrite:
        raise OptionError("--resume and --overwrite exclude each other")
    instances, truth_files = [], {}
    for path in args.instances:
        rows = select_rows(read_instances(path, allow_outside=args.allow_outside_paths), args.rows, args.limit)
        instances += rows
        truth = ground_truth_beside(path)
        if rows and truth is not None:
            truth_files[rows[0].category] = truth
    keys = [instance.key for instance in instances]
    if len(set(keys)) < len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise OptionError(f"instance {shorten(' '.join(twice), 120)} is listed twice (two files of one family?)")
    families = list(dict.fromkeys(instance.category for instance in instances))
    if not instances:
        raise OptionError("no instances selected")
    out = Path(args.out) if args.out else Path("bench_out") / (families[0] if len(families) == 1 else "run")
    options = BenchOptions(out=out, jobs=jobs, timeout_scale=args.timeout_scale, grace=args.grace,
                           resume=args.resume, overwrite=args.overwrite,
                           command=tuple(shlex.split(args.command)) if args.command else (),
                           progress=args.progress, command_line=shlex.join(["verifier", *sys.argv[1:]]),
                           env=(("VERIFIER_THREADS", str(args.threads)),) if args.threads else (),
                           isolation=args.isolation, device=args.device)
    executor = _dask_executor(args) if distributed else None
    try:
        if executor is not None:
            options.jobs = executor.jobs
        report = run_benchmark(instances, options, executor=executor, truth_files=truth_files)
    finally:
        if executor is not None:
            executor.shutdown()
    if args.json:
        from verifier.jsonout import dumps

        print(dumps(report.summary))
    else:
        print(text_table(report.scores))
        if report.summary["run"]["startup_s"] is not None:
            print(f"{startup_line(report.summary['run'])} (included in every time but 'w/o start')")
        print(f"results in {out}/: results.csv, summary.md, summary.json, cactus.png")
    if report.disagreements:
        banner = f"!!! {len(report.disagreements)} DISAGREEMENT(S) WITH THE GROUND TRUTH !!!"
        print("\n".join([banner, *report.disagreements, banner]), file=sys.stderr)
    return 1 if report.summary["incorrect"] else 0


def _dask_executor(args: argparse.Namespace):
    """The Dask executor of ``--cluster local:N`` (started here) or ``--scheduler ADDRESS`` (connected to)."""
    from verifier.distributed.cluster import connect, parse_local, require_dask, start_local

    require_dask()
    from verifier.bench.dask_executor import DaskExecutor

    # the workers only supervise instances (each in its own process): they need not import torch
    cluster = start_local(parse_local(args.cluster), warm=False, start="spawn") if args.cluster \
        else connect(args.scheduler)
    try:
        return DaskExecutor(cluster)
    except BaseException:
        cluster.close()
        raise
