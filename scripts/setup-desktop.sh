#!/usr/bin/env bash
# What the desktop app (Tauri 2 on WebKitGTK) needs to build, and what its tests need to run
# the real window headless: Xvfb, WebKitWebDriver (driven through tauri-driver), D-Bus for the
# single-instance check, ImageMagick for screenshots. Safe to run again: it skips what is
# already there.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(libwebkit2gtk-4.1-dev build-essential pkg-config libxdo-dev libayatana-appindicator3-dev
      librsvg2-dev xvfb xauth webkit2gtk-driver imagemagick dbus-x11 at-spi2-core xdg-utils
      desktop-file-utils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-desktop: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# tauri-driver drives the real window through WebKitWebDriver in the desktop tests.
if ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
  echo "setup-desktop: installing tauri-driver"
  cargo install tauri-driver --locked --quiet
fi
echo "setup-desktop: ok"
