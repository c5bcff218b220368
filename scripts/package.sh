#!/usr/bin/env bash
# Builds the desktop app's Debian package (target/release/bundle/deb/) and checks that its
# desktop entry hands `lucid://` sign-in links to the app (MimeType and `Exec=… %u`).
# Needs the desktop build packages (scripts/setup-desktop.sh) and, once, network access for
# `cargo install tauri-cli`. The AppImage additionally downloads its tools at build time:
# `LUCID_BUNDLES=deb,appimage scripts/package.sh` where the network allows it.
set -euo pipefail
cd "$(dirname "$0")/.."

bundles="${LUCID_BUNDLES:-deb}"
command -v cargo-tauri >/dev/null 2>&1 || cargo install tauri-cli --locked --version '^2'
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build)
cargo tauri build --bundles "$bundles"

target="${CARGO_TARGET_DIR:-target}"
deb=$(ls -t "$target"/release/bundle/deb/*.deb | head -1)
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb -x "$deb" "$unpacked"
entry=$(find "$unpacked/usr/share/applications" -name '*.desktop' | head -1)
grep -q '^MimeType=.*x-scheme-handler/lucid' "$entry" || { echo "package: $entry does not register lucid://" >&2; exit 1; }
grep -q '^Exec=[^ ]* %u$' "$entry" || { echo "package: $entry does not pass the link (%u)" >&2; exit 1; }
if command -v desktop-file-validate >/dev/null 2>&1; then desktop-file-validate "$entry"; fi
echo "package: $deb (lucid:// links reach the app)"
