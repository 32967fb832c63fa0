#!/usr/bin/env bash
# VNN-COMP: install the verifier. Usage: install_tool.sh v1
set -euo pipefail
TOOL_DIR="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="${1:-v1}"
if [ "$VERSION" != "v1" ]; then
    echo "install_tool.sh: expected version string v1, got $VERSION" >&2
    exit 1
fi
PYTHON="${PYTHON:-python3}"
# torch first (the package's own requirement is a range); a CPU build is enough
"$PYTHON" -c "import torch" 2>/dev/null || "$PYTHON" -m pip install torch
"$PYTHON" -m pip install --no-build-isolation -e "$TOOL_DIR"
"$PYTHON" -m verifier --help > /dev/null
echo "verifier installed from $TOOL_DIR"
