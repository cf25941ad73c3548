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

# The OpenStack source against a real Keystone + Nova (../shared/openstack: installed from PyPI
# and Debian, bound to 127.0.0.1, ~6 minutes cold, 2.2 GiB). Runs when that directory exists
# and we are root; OPENSTACK_E2E=0 skips it. A stack already answering on 127.0.0.1:5000 is
# left alone (run the opt-in test by hand against it, README "The OpenStack source").
os_dir=../shared/openstack
if [ "${OPENSTACK_E2E:-}" = 0 ]; then
  echo "run-tests: OPENSTACK_E2E=0: real-OpenStack tests skipped" >&2
elif [ ! -x "$os_dir/setup.sh" ] || [ "$(id -u)" -ne 0 ]; then
  echo "run-tests: real-OpenStack tests skipped: need $os_dir/setup.sh and root" >&2
elif curl -fs -o /dev/null --max-time 2 http://127.0.0.1:5000/v3; then
  echo "run-tests: real-OpenStack tests skipped: something already answers on 127.0.0.1:5000" >&2
else
  (
    export REALSTACK_DIR=${REALSTACK_DIR:-/tmp/realstack-ci}
    trap '"$os_dir/stop.sh" >/dev/null 2>&1' EXIT
    "$os_dir/setup.sh" --reset >"$REALSTACK_DIR.setup.log" 2>&1 \
      || { tail -30 "$REALSTACK_DIR.setup.log" >&2; exit 1; }
    # shellcheck disable=SC1091
    . "$REALSTACK_DIR/openrc"
    "$os_dir/seed.sh" >"$REALSTACK_DIR.seed.log" 2>&1 || { tail -30 "$REALSTACK_DIR.seed.log" >&2; exit 1; }
    "$os_dir/backdate.sh" 2 >/dev/null
    OPENSTACK_E2E=1 OPENSTACK_CLI="$REALSTACK_DIR/venv/bin/openstack" \
      cargo test -p site-exporter --all-features --test openstack_e2e -- --nocapture
  )
fi
