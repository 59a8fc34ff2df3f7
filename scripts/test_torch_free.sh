#!/usr/bin/env bash
# Install pixquery WITHOUT extras in a fresh venv (no torch) and run the torch-free tests there.
# A model exported beforehand in the full environment is handed over through PIXQUERY_TEST_ONNX_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/pixquery export-onnx random:tiny "$work/tiny-onnx" >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet . pytest
if "$work/venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "error: the base install pulled in torch" >&2
  exit 1
fi
cd "$work"  # run against the installed package, not the source tree
PIXQUERY_TEST_ONNX_DIR="$work/tiny-onnx" "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$OLDPWD/tests/torch_free"
