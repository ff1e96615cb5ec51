#!/usr/bin/env bash
# Sets everything up (.venv with the pinned CPU torch and the dev tools) and runs the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k gradients`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
