#!/usr/bin/env bash
# The main job on a fresh machine, offline: install pixquery alone (the base package: no extras, no torch) in its
# own virtual environment, .venv-demo/, then run `pixquery demo` (ShapesWorld + mini, real photos + conse).
# Re-running reuses the environment and the demo's indexes; arguments go to `pixquery demo` (e.g. --serve).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=.venv-demo
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -m venv "$venv"
fi
stamp="$venv/.pixquery-installed"
# Installed as a user would (not editable); again whenever the package or its dependencies changed.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ -n "$(find pixquery -newer "$stamp" -print -quit)" ]; then
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet .
  touch "$stamp"
fi
exec "$venv/bin/pixquery" demo "$@"
