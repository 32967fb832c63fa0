#!/usr/bin/env bash
# VNN-COMP: prepare one instance. Usage: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Stops leftovers of earlier runs and checks that the model and the property load; a non-zero exit code
# tells the harness the instance cannot be run by this tool.
set -uo pipefail
VERSION="$1"; CATEGORY="$2"; ONNX="$3"; VNNLIB="$4"
if [ "$VERSION" != "v1" ]; then
    echo "prepare_instance.sh: expected version string v1, got $VERSION" >&2
    exit 1
fi
pkill -f "verifier verify" 2>/dev/null || true
PYTHON="${PYTHON:-python3}"
"$PYTHON" - "$ONNX" "$VNNLIB" <<'PY'
import sys
import verifier
from verifier.spec import parse_vnnlib

network = verifier.load_onnx(sys.argv[1])
parse_vnnlib(sys.argv[2], n_inputs=network.input_size, n_outputs=network.output_size)
PY
status=$?
if [ $status -ne 0 ]; then
    echo "prepare_instance.sh: $CATEGORY instance cannot be loaded (exit $status)" >&2
fi
exit $status
