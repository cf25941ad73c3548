#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need first when it is missing:
# Debian's prometheus (prometheus, promtool), libvirt's client tools and development files,
# docker-compose (to validate the compose files; no Docker engine is needed) and curl.
set -euo pipefail
cd "$(dirname "$0")"

need=()
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
command -v virsh >/dev/null 2>&1 || need+=(libvirt-clients)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
{ command -v pkg-config && pkg-config --exists libvirt; } >/dev/null 2>&1 || need+=(libvirt-dev pkg-config)
if ((${#need[@]})); then
  echo "run-tests: installing ${need[*]}" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features
