#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (Docker
# daemon, busybox-static for the local sandbox image, git, openssl, PostgreSQL 15 binaries for
# the Supabase schema tests; Node.js and Chromium for the UI; WebKitGTK, Xvfb, WebKitWebDriver
# and tauri-driver for the desktop app), then lints, tests and builds the UI (so it is embedded
# in the `lucid` binary and the app), formats-checks, lints and runs every test of the
# workspace against the real daemon and real databases (the desktop app in a real window
# under Xvfb), and finally drives the UI in headless Chromium against a real `lucid serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# A test run builds every test binary once: incremental caches would only cost disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
scripts/free-disk.sh
scripts/setup-host.sh
scripts/setup-ui.sh
scripts/setup-desktop.sh

ui_start=$(date +%s)
(
  cd ui
  npm ci --no-audit --no-fund --loglevel=error
  npm run lint          # eslint + tsc --noEmit
  npm run check:api     # generated API types match the committed OpenAPI document
  npm test              # vitest
  npm run build
  npm run size          # first-load JS within budget
)
echo "test.sh: UI lint, unit tests and build took $(( $(date +%s) - ui_start )) s"
# The official @supabase/auth-js client that checks the fake Supabase Auth (auth_js_fidelity).
(cd tests/auth-js && npm ci --no-audit --no-fund --loglevel=error)

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

e2e_start=$(date +%s)
cargo build --locked -p lucid-server --bin lucid --example ui_e2e_harness --example sign_in_e2e_harness
target=$(cargo metadata --format-version 1 --no-deps --locked \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
(cd ui && node e2e/run.mjs --harness "$target/debug/examples/ui_e2e_harness" --lucid "$target/debug/lucid")
# Sign-in with a provider in Supabase mode (fake Supabase Auth), reload, silent refresh, sign-out.
(cd ui && node e2e/sign-in.mjs --harness "$target/debug/examples/sign_in_e2e_harness" --lucid "$target/debug/lucid")
echo "test.sh: UI end-to-end took $(( $(date +%s) - e2e_start )) s"
