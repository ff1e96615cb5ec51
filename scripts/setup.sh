#!/usr/bin/env bash
# Creates .venv and installs the project with its dev tools. Idempotent: a second run only checks.
# torch goes in first and pinned: on these machines `pip install torch==2.13.0` takes the local CPU
# wheel, while an unpinned torch (or one pulled in by transformers) downloads gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${GRACE_TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.grace-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
