#!/usr/bin/env bash
# Sets everything up, builds the offline tiny student and teachers (once), then scores the teachers
# for the student end to end with `grace rank` and prints the ranking. No network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
models=.grace/tiny-models
[ -f "$models/candidates.json" ] || .venv/bin/grace tiny-models "$models"
exec .venv/bin/grace rank \
  --student "$models/student" \
  --candidates "$models/candidates.json" \
  --prompts "$models/prompts.jsonl" \
  --response-cache .grace/responses \
  --out .grace/ranking.json "$@"
