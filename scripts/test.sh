#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (Docker
# daemon, busybox-static for the local sandbox image, git, openssl, PostgreSQL 15 binaries for
# the Supabase schema tests), then formats-checks, lints and runs every test of the workspace
# against the real daemon and real databases.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
