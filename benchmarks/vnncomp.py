"""Run a VNN-COMP family with its instance timeouts and print the verdict counts, the incorrect answers
(against ground_truth.csv), and the total and median wall time per instance with and without process start.

    python benchmarks/vnncomp.py acasxu
    python benchmarks/vnncomp.py mnist_fc --limit 20 --jobs 1

Each instance runs in its own process, as in the competition (``verifier bench``; see
``benchmarks/run_family.py`` for every option). Results land in ``bench_out/<family>/``.
"""

from run_family import main

if __name__ == "__main__":
    main()
