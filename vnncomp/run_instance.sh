#!/usr/bin/env bash
# VNN-COMP: run one instance. Usage: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS_FILE TIMEOUT
# Writes the verdict (sat / unsat / unknown / timeout, with the witness after sat) to RESULTS_FILE.
set -uo pipefail
VERSION="$1"; CATEGORY="$2"; ONNX="$3"; VNNLIB="$4"; RESULTS="$5"; TIMEOUT="$6"
if [ "$VERSION" != "v1" ]; then
    echo "run_instance.sh: expected version string v1, got $VERSION" >&2
    exit 1
fi
PYTHON="${PYTHON:-python3}"
# a little of the budget is kept for process start and writing the result
BUDGET=$("$PYTHON" -c "print(max(1.0, float('$TIMEOUT') - 1.0))")
"$PYTHON" -m verifier verify "$ONNX" "$VNNLIB" --timeout "$BUDGET" --results "$RESULTS"
status=$?
if [ $status -ne 0 ] || [ ! -s "$RESULTS" ]; then
    echo "unknown" > "$RESULTS"
fi
exit 0
