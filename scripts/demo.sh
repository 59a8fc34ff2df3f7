#!/usr/bin/env bash
# The main job on a fresh machine, offline: set up, then run `pixquery demo` (ShapesWorld + mini, real photos + conse).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pixquery demo "$@"
