#!/usr/bin/env bash
# What the UI's build and browser tests need: Node.js >= 20.19 with npm (Vite 8, Vitest 4)
# and Debian's Chromium (driven headless by playwright-core; no browser download).
# Safe to run again: it skips what is already there.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need_pkgs=()
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs npm)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "setup-ui: installing ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number);
  if (maj < 20 || (maj === 20 && min < 19)) {
    console.error(`setup-ui: Node.js ${process.versions.node} is too old: the UI needs >= 20.19 (Vite 8).`);
    process.exit(1);
  }'
echo "setup-ui: ok (node $(node --version), $(chromium --version 2>/dev/null | head -1))"
