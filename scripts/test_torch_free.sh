#!/usr/bin/env bash
# Install pixquery WITHOUT extras in a fresh venv (no torch), check torch is not importable there, run the
# torch-free tests there, then run the offline demo there (`pixquery demo`: mini and conse, both shipped) and
# print the environment's size. A model exported beforehand in the full environment is handed over through
# PIXQUERY_TEST_ONNX_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/pixquery export-onnx random:tiny "$work/tiny-onnx" >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet .
base_size=$(du -sm "$work/venv" | cut -f1)
"$work/venv/bin/pip" install --quiet pytest
if "$work/venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "error: the base install pulled in torch" >&2
  exit 1
fi
repo=$PWD
cd "$work"  # run against the installed package, not the source tree
PIXQUERY_TEST_ONNX_DIR="$work/tiny-onnx" PIXQUERY_CACHE="$work/cache" "$work/venv/bin/python" -m pytest -q \
  -p no:cacheprovider "$repo/tests/torch_free"
# The README's main job, in the base install: the whole demo, both parts, with no torch anywhere.
PIXQUERY_CACHE="$work/cache" "$work/venv/bin/pixquery" demo --n 200 > "$work/demo.out"
grep -q "ShapesWorld: .* scenes indexed with mini" "$work/demo.out"
grep -q "Real photos: 21 photos indexed with conse" "$work/demo.out"
if "$work/venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "error: torch became importable in the base install" >&2
  exit 1
fi
echo "torch-free: the base install (${base_size} MB, no torch) runs the tests in tests/torch_free and pixquery demo"
