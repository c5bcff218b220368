#!/usr/bin/env bash
# Runs Lucid headless with embedded defaults (local SQLite store in the OS data directory,
# local Docker sandboxes) on http://127.0.0.1:8000. Prints a bearer token for the API first,
# then `lucid serve` prints a link that opens the web UI signed in.
# Extra arguments go to `lucid serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
# The web UI is embedded in the binary: build it first when Node.js >= 20.19 is available
# (otherwise the binary serves a page saying how to build it; the API works either way).
if command -v npm >/dev/null 2>&1 && node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
else
  echo "run.sh: Node.js >= 20.19 not found: building without the web UI (see ui/README.md)" >&2
fi
lucid() { cargo run --quiet --release --locked -p lucid-server --bin lucid -- "$@"; }
cargo build --release --locked -p lucid-server
echo "Bearer token for the API (valid 30 days):"
lucid serve --print-token
lucid doctor || true
exec cargo run --quiet --release --locked -p lucid-server --bin lucid -- serve "$@"
