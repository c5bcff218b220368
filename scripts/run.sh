#!/usr/bin/env bash
# Runs Lucid with embedded defaults (local SQLite store, local Docker sandboxes): the desktop
# app where a display exists, else headless (`lucid serve` on http://127.0.0.1:8000, which
# prints a link that opens the web UI signed in). With Supabase settings in the environment
# (or .env) the headless server runs in Supabase mode and says where to sign in instead.
# Installs what is missing first.
# Extra arguments go to `lucid serve` in headless mode (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
# The UI is embedded in both front doors: build it first when Node.js >= 20.19 is available
# (otherwise they show a page saying how to build it; the API works either way).
if command -v npm >/dev/null 2>&1 && node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
else
  echo "run.sh: Node.js >= 20.19 not found: building without the UI" >&2
fi
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${LUCID_HEADLESS:-}" != "1" ]; then
  scripts/setup-desktop.sh
  echo "run.sh: a display was found: opening the Lucid desktop app (LUCID_HEADLESS=1 for the server)"
  exec cargo run --quiet --release --locked -p lucid-desktop --bin lucid-desktop
fi
echo "run.sh: no display: starting Lucid headless (lucid serve)"
lucid() { cargo run --quiet --release --locked -p lucid-server --bin lucid -- "$@"; }
cargo build --release --locked -p lucid-server
# Local mode: print a bearer token for the API. Supabase mode (SUPABASE_* set): Lucid issues
# no tokens (they come from Supabase Auth) and `--print-token` exits with status 3 after saying
# so; `lucid serve` then prints where to sign in. Any other failure stops here.
status=0
token=$(lucid serve --print-token) || status=$?
case "$status" in
  0) echo "Bearer token for the API (valid 30 days):"; echo "$token" ;;
  3) ;;
  *) exit "$status" ;;
esac
lucid doctor || true
exec cargo run --quiet --release --locked -p lucid-server --bin lucid -- serve "$@"
