#!/usr/bin/env bash
# Runs Lucid headless with embedded defaults (local SQLite store in the OS data directory,
# local Docker sandboxes) on http://127.0.0.1:8000. Prints a bearer token for the API first.
# Extra arguments go to `lucid serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
cargo build --release --locked -p lucid-server
echo "Bearer token for the API (valid 30 days):"
./target/release/lucid serve --print-token
exec ./target/release/lucid serve "$@"
