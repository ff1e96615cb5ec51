#!/usr/bin/env bash
# Sets everything up (.venv, and throwaway PostgreSQL + Redis servers on loopback) and runs the
# test suite; the servers are stopped afterwards whatever the outcome. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -k gradients`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
services=$(mktemp -d)
trap 'bash scripts/services.sh stop "$services"' EXIT
eval "$(bash scripts/services.sh start "$services")"
.venv/bin/python -m pytest "$@"
