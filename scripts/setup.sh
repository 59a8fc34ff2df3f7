#!/usr/bin/env bash
# Set up a development environment in .venv (idempotent): pixquery with every extra the tests need.
# torch==2.13.0 is pinned first so pip takes the CPU build (a bare `torch` would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.pixquery-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet "torch==2.13.0" || .venv/bin/pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
  .venv/bin/pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
