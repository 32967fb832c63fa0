#!/usr/bin/env bash
# The GPU check in one short run (about 8 minutes on one H100, build included; at most 150 + 130 + 300 s, under
# the 10 minutes a device command may run):
#   1. build the native kernels in place for Hopper (TORCH_CUDA_ARCH_LIST=9.0, CPU + CUDA);
#   2. the GPU test selection with VERIFIER_TEST_DEVICE=cuda (CUDA kernel parity, opcheck, gradcheck, dispatch;
#      engine, verdict, MILP-comparison and ground-truth tests on the GPU);
#   3. python benchmarks/gpu.py --quick (CPU 1 thread vs GPU, side by side).
# Everything goes to the folder named by $OUT (default gpu_out/): build.log, tests.log, gpu.log,
# gpu_tables.md, gpu.json, summary.txt -- six files, under the eight a device call brings back.
#
#   python benchmarks/gpu_data.py               # here, first: gpu_data/ travels with the checkout (carry it)
#   bash benchmarks/gpu_check.sh                # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu          # here, without a GPU: the same steps, shortened, on the CPU
#
# Each step has its own time limit; a failed step is reported and the next one runs. Exit code: 0 when the
# build, the tests and the benchmark (0 incorrect answers) all passed, else 1.
set -u
cd "$(dirname "$0")/.."
MODE=gpu
if [ "${1:-}" = "--cpu" ]; then MODE=cpu; fi
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }

if [ -d gpu_data ]; then
  export VERIFIER_BENCHMARKS="$PWD/gpu_data"
elif [ -d ../shared/benchmarks ]; then
  export VERIFIER_BENCHMARKS="$(cd ../shared/benchmarks && pwd)"
else
  say "no gpu_data/ and no ../shared/benchmarks: run python benchmarks/gpu_data.py first (tests on them will skip)"
fi
say "mode $MODE; $($PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
  "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' 2>&1)"
if [ "$MODE" = gpu ]; then
  nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem,driver_version --format=csv,noheader \
    2>/dev/null | sed 's/^/nvidia-smi: /' | tee -a "$SUMMARY"
fi

# 1. build --------------------------------------------------------------------------------------------------
status_build=0
if [ "$MODE" = gpu ]; then
  export TORCH_CUDA_ARCH_LIST=9.0
  export MAX_JOBS=${MAX_JOBS:-$(nproc)}
fi
BUILD_LIMIT=150; [ "$MODE" = cpu ] && BUILD_LIMIT=1200
timeout $BUILD_LIMIT $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || status_build=$?
kernels=$($PY -c 'from verifier import kernels; print(kernels.native_available(), kernels.cuda_kernels_available())' 2>&1 | tail -1)
say "build: exit $status_build in $(elapsed) s; native kernels, CUDA kernels: $kernels"
if [ "$MODE" = gpu ] && [ "$kernels" != "True True" ]; then status_build=1; fi
if [ "$MODE" = cpu ] && [ "${kernels%% *}" != "True" ]; then status_build=1; fi

# 2. the GPU test selection ---------------------------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
  export VERIFIER_TEST_DEVICE=cuda
  TESTS="tests/test_kernels_cuda.py tests/test_bounds_soundness.py tests/test_milp_exact.py tests/test_verify_milp.py
         tests/test_verify_groundtruth.py tests/test_verify_robustness.py tests/test_hand_bounds.py"
  LIMIT=130
else
  export VERIFIER_TEST_DEVICE=cpu
  # the CPU stand-in: the CUDA tests (they skip), the guard that catches default-device tensors, one of each
  TESTS="tests/test_kernels_cuda.py tests/test_device_plumbing.py tests/test_hand_bounds.py
         tests/test_verify_groundtruth.py::test_fast_instances_give_the_known_answer[test]"
  LIMIT=600
fi
PARALLEL=""
if [ "$MODE" = gpu ] && $PY -c "import xdist" 2>/dev/null; then PARALLEL="-n 8"; fi
status_tests=0
timeout $LIMIT $PY -m pytest -q -p no:cacheprovider $PARALLEL -m "not slow" --durations=15 $TESTS \
  > "$OUT/tests.log" 2>&1 || status_tests=$?
say "tests ($VERIFIER_TEST_DEVICE${PARALLEL:+, $PARALLEL}): exit $status_tests at $(elapsed) s: $(grep -E '(passed|failed|error)' "$OUT/tests.log" | tail -1)"

# 3. benchmarks/gpu.py --quick ------------------------------------------------------------------------------------
status_bench=0
if [ "$MODE" = gpu ]; then
  timeout 300 $PY benchmarks/gpu.py --quick --out "$OUT" > "$OUT/gpu.log" 2>&1 || status_bench=$?
else
  timeout 900 $PY benchmarks/gpu.py --quick --out "$OUT" > "$OUT/gpu.log" 2>&1 || status_bench=$?
fi
say "gpu.py --quick: exit $status_bench at $(elapsed) s (1: an incorrect answer; 124: out of time)"
grep -E "^== hard" "$OUT/gpu.log" | tee -a "$SUMMARY"

if [ $status_build -eq 0 ] && [ $status_tests -eq 0 ] && [ $status_bench -eq 0 ]; then
  say "GPU check passed in $(elapsed) s"
  exit 0
fi
say "GPU check FAILED (build $status_build, tests $status_tests, benchmark $status_bench) after $(elapsed) s"
exit 1
