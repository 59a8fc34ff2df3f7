#!/usr/bin/env bash
# The test suite on a fresh machine: set up, lint, run pytest in the full environment, then run the torch-free
# tests in a second environment that has only the base install (so a stray torch import fails).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Browser tests drive Debian's Chromium; install it when we can (root with apt), else they skip with a reason.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will skip"
fi
.venv/bin/ruff check pixquery tests benchmarks
.venv/bin/python -m pytest -q "$@"
bash scripts/test_torch_free.sh
