#!/usr/bin/env bash
# Sets everything up, builds the offline tiny student and teachers (once), starts the service in
# its embedded default (SQLite + in-process worker, no Redis), submits a scoring job over HTTP,
# follows its progress and prints the ranking the API returns. No network needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
models=.grace/tiny-models
[ -f "$models/candidates.json" ] || .venv/bin/grace tiny-models "$models"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -u GRACE_DATABASE_URL -u GRACE_REDIS_URL GRACE_DATA_DIR=.grace GRACE_MODEL_ROOTS="$models" \
  .venv/bin/grace serve --port "$port" > .grace/serve.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
echo "service starting on http://127.0.0.1:$port (log: .grace/serve.log)" >&2
for _ in $(seq 120); do
  .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=2)" \
    >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat .grace/serve.log >&2; exit 1; }
  sleep 0.5
done
.venv/bin/grace submit --url "http://127.0.0.1:$port" --student student \
  --candidates "$models/candidates.json" --prompts "$models/prompts.jsonl" "$@"
