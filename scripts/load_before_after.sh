#!/usr/bin/env bash
# The load rows of the README's "Under load" table against one installation:
#   bash scripts/load_before_after.sh [VENV] [OUT]     (defaults: .venv, load-figures/)
# Serves the embedded model with VENV's `triage serve` on a temporary SQLite store, then runs `triage load-test`
# (from this checkout's .venv) at saturation, under a flood, and with 64-item batches (polite and flood),
# 15 s each, writing one JSON per row to OUT. For "before", point VENV at an older checkout's environment.
set -euo pipefail
venv=${1:-.venv}; out=${2:-load-figures}; port=${PORT:-8021}
load="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/triage"
mkdir -p "$out"; out=$(cd "$out" && pwd); rm -f "$out"/t.db*
HF_HUB_OFFLINE=1 TRIAGE_DATABASE_URL="sqlite:///$out/t.db" TRIAGE_LOG_LEVEL=WARNING \
  "$venv/bin/triage" serve --port "$port" > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "localhost:$port/readyz" > /dev/null && break; sleep 1; done
url=http://127.0.0.1:$port
"$load" load-test --url $url --clients 4 --batch 1 --seconds 5 > /dev/null  # warm up
"$load" load-test --url $url --clients 16 --batch 1 --seconds 15 --out "$out/saturation.json"
"$load" load-test --url $url --clients 200 --batch 1 --seconds 15 --flood --out "$out/flood200.json"
"$load" load-test --url $url --clients 40 --batch 64 --seconds 15 --out "$out/batch40x64.json"
"$load" load-test --url $url --clients 40 --batch 64 --seconds 15 --flood --out "$out/batch40x64_flood.json"
