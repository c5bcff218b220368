#!/usr/bin/env bash
# Makes room before a test run. A full build of the workspace with its test binaries needs
# about LUCID_BUILD_GB (default 20) GB; a long-lived target directory (CI keeps one between
# runs) collects artifacts of every earlier dependency set and compiler flag and can fill the
# disk. When less than that is free, the target directory's build outputs are removed (the
# next build starts cold) and Docker's unused containers, dangling images and build cache go.
set -euo pipefail
cd "$(dirname "$0")/.."
need_gb="${LUCID_BUILD_GB:-20}"
target="${CARGO_TARGET_DIR:-target}"

free_gb() {
  local dir="$1"
  while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
  df -Pk "$dir" | awk 'NR==2 { print int($4 / 1048576) }'
}

before=$(free_gb "$target")
if [ "$before" -ge "$need_gb" ]; then
  echo "free-disk: ${before} GB free for $target"
  exit 0
fi
echo "free-disk: only ${before} GB free (want ${need_gb}); cleaning"
if [ -d "$target" ]; then
  du -sh "$target" 2>/dev/null || true
  rm -rf "$target/debug" "$target/release" "$target/tmp"
fi
if docker version >/dev/null 2>&1; then
  docker container prune -f >/dev/null || true
  docker image prune -f >/dev/null || true
  docker builder prune -f >/dev/null 2>&1 || true
fi
echo "free-disk: ${before} GB -> $(free_gb "$target") GB free"
