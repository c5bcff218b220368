#!/usr/bin/env bash
# Installs and starts what Lucid needs on a fresh Debian machine: git, a Docker daemon,
# busybox-static (the test sandbox image is built from it), openssl (interop tests),
# PostgreSQL 15 server binaries (the Supabase schema tests start throwaway clusters of their
# own; no system cluster is created or used).
# Safe to run again: it skips what is already there.
set -euo pipefail

need_pkgs=()
command -v git >/dev/null 2>&1 || need_pkgs+=(git)
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
command -v cc >/dev/null 2>&1 || need_pkgs+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_pkgs+=(postgresql-15)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [[ " ${need_pkgs[*]} " == *" postgresql-15 "* ]]; then
    # Only the binaries are wanted: tell postgresql-common not to create (and start) a
    # `main` cluster when the package is installed.
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" |
      $SUDO tee /etc/postgresql-common/createcluster.d/lucid-no-main-cluster.conf >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi

# A Docker daemon: reuse a running one, else start one (no bridge/iptables: sandboxes use
# network mode `none` by default in tests; set DOCKER_NETWORK for other setups).
if ! docker version >/dev/null 2>&1; then
  echo "setup: starting dockerd"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO sh -c 'nohup dockerd --bridge=none --iptables=false --ip6tables=false >/var/log/lucid-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker version >/dev/null 2>&1 || { echo "setup: dockerd did not start, see /var/log/lucid-dockerd.log" >&2; exit 1; }
fi
echo "setup: ok (docker $(docker version --format '{{.Server.Version}}'))"
