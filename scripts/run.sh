#!/usr/bin/env bash
# Runs Lucid headless with embedded defaults (local SQLite store in the OS data directory,
# local Docker sandboxes) on http://127.0.0.1:8000. Prints a bearer token for the API first.
# Extra arguments go to `lucid serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
lucid() { cargo run --quiet --release --locked -p lucid-server --bin lucid -- "$@"; }
cargo build --release --locked -p lucid-server
echo "Bearer token for the API (valid 30 days):"
lucid serve --print-token
lucid doctor || true
exec cargo run --quiet --release --locked -p lucid-server --bin lucid -- serve "$@"
