#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need first when it is missing:
# Debian's prometheus (prometheus, promtool), victoria-metrics (the billing store's tests),
# prometheus-alertmanager (amtool, the alerting tests), prometheus-node-exporter (the oracle of
# --web.config.file), libvirt's client tools and development files, docker-compose (to
# validate the compose files), curl and python3; as root also libvirt's daemon, for the libvirt
# source's real-daemon tests, and for the container tests at the end Debian's docker.io and
# mmdebstrap (see below).
set -euo pipefail
cd "$(dirname "$0")"

# The libvirt source against a real libvirtd (exporter/tests/libvirt/daemon.rs, its lifecycle
# events in daemon_events.rs): the test driver's shared instance, test+unix:///default, through
# the daemon's sockets.
# - LIBVIRTD_E2E=0 skips these tests;
# - LIBVIRTD_E2E_SOCKET_DIR=DIR uses the daemon answering there as is (no restart tests);
# - otherwise, as root: a daemon answering on /run/libvirt is used as is (no restart tests);
#   when no libvirtd runs, Debian's libvirt-daemon is installed if missing and a private
#   daemon is started with its sockets in a temporary directory (exporter/tests/libvirtd.sh),
#   restarted by the restart tests and stopped when this script exits;
# - not root, or a libvirtd that runs elsewhere: skipped, saying so.
libvirtd_skip() {
  echo "run-tests: *** SKIPPING the libvirt source's real-libvirtd tests: $* ***" >&2
  export LIBVIRTD_E2E=0
}
libvirtd_mode=
if [ "${LIBVIRTD_E2E:-}" = 0 ]; then
  libvirtd_skip "LIBVIRTD_E2E=0"
elif [ -n "${LIBVIRTD_E2E_SOCKET_DIR:-}" ]; then
  libvirtd_mode=given
elif [ "$(id -u)" -ne 0 ]; then
  libvirtd_skip "they start libvirtd and need root (or set LIBVIRTD_E2E_SOCKET_DIR to a running daemon's socket directory)"
else
  libvirtd_mode=root
fi

need=()
[ "$libvirtd_mode" != root ] || [ -x /usr/sbin/libvirtd ] || need+=(libvirt-daemon)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
{ command -v prometheus-alertmanager && command -v amtool; } >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v virsh >/dev/null 2>&1 || need+=(libvirt-clients)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
# The oracle of --web.config.file (tests/tests/web_config.rs).
[ -x /usr/bin/prometheus-node-exporter ] || need+=(prometheus-node-exporter)
command -v python3 >/dev/null 2>&1 || need+=(python3)
{ command -v pkg-config && pkg-config --exists libvirt; } >/dev/null 2>&1 || need+=(libvirt-dev pkg-config)
if ((${#need[@]})); then
  echo "run-tests: installing ${need[*]}" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

libvirtd_answers() {
  virsh -q -c "test+unix:///default?socket=$1/libvirt-sock" uri >/dev/null 2>&1
}
if [ "$libvirtd_mode" = given ]; then
  libvirtd_answers "$LIBVIRTD_E2E_SOCKET_DIR" \
    || { echo "run-tests: no libvirtd answers in LIBVIRTD_E2E_SOCKET_DIR=$LIBVIRTD_E2E_SOCKET_DIR" >&2; exit 1; }
  echo "run-tests: real-libvirtd tests use the libvirtd in $LIBVIRTD_E2E_SOCKET_DIR (restart tests skipped)" >&2
  export LIBVIRTD_E2E=1 LIBVIRTD_E2E_RESTART=0
elif [ "$libvirtd_mode" = root ] && libvirtd_answers /run/libvirt; then
  echo "run-tests: real-libvirtd tests use the libvirtd running on /run/libvirt (restart tests skipped)" >&2
  export LIBVIRTD_E2E=1 LIBVIRTD_E2E_SOCKET_DIR=/run/libvirt LIBVIRTD_E2E_RESTART=0
elif [ "$libvirtd_mode" = root ] && pids=$(pgrep -x -r D,R,S,T,I libvirtd); then
  # Only one libvirtd can run per machine (its drivers lock files under /run/libvirt). A
  # stopped one can linger as a zombie until init reaps it: not counted (-r).
  libvirtd_skip "a libvirtd runs (pid $(echo $pids)) but not on /run/libvirt; set LIBVIRTD_E2E_SOCKET_DIR to its socket directory"
elif [ "$libvirtd_mode" = root ]; then
  # The daemon's QEMU driver refuses to start without its user and groups.
  getent group kvm >/dev/null || groupadd --system kvm
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  id libvirt-qemu >/dev/null 2>&1 \
    || useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin \
      -g kvm -G libvirt-qemu libvirt-qemu
  libvirtd_dir=$(mktemp -d /tmp/site-exporter-libvirtd.XXXXXX)
  trap 'exporter/tests/libvirtd.sh stop "$libvirtd_dir" || true; rm -rf "$libvirtd_dir"' EXIT
  started=$SECONDS
  exporter/tests/libvirtd.sh start "$libvirtd_dir"
  echo "run-tests: started libvirtd in $libvirtd_dir in $((SECONDS - started)) s for the real-libvirtd tests" >&2
  export LIBVIRTD_E2E=1 LIBVIRTD_E2E_SOCKET_DIR=$libvirtd_dir LIBVIRTD_E2E_RESTART=1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The crate maps (`lib.rs`) are the documentation: their links must resolve.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps
cargo test --workspace --all-features

# The OpenStack source's fault soak, short version (bench/soak.sh; BENCHMARKS.md has the full
# run): 120 s on the debug build the tests just made (a release build would add minutes), a
# smaller cloud than the full run's so that a debug refresh stays near a second, faults on 15 %
# of the fake's answers and a SIGKILL every 3-6 refreshes after the first 10. SOAK=0 skips it.
if [ "${SOAK:-}" = 0 ]; then
  echo "run-tests: SOAK=0: the OpenStack fault soak skipped" >&2
else
  cargo build --workspace --all-features --bin site-exporter --example fake_openstack
  echo "run-tests: OpenStack fault soak (short: 120 s, debug build; bench/soak.sh)" >&2
  soak_started=$SECONDS
  if BIN_GIVEN=1 BIN=target/debug/site-exporter FAKE=target/debug/examples/fake_openstack \
    SOAK_SECONDS=120 PROJECTS=250 SERVERS=5000 FAULT_RATE=0.15 KILL_MIN=3 KILL_MAX=6 KILL_AFTER=10 \
    bench/soak.sh; then
    echo "run-tests: OpenStack fault soak passed in $((SECONDS - soak_started)) s" >&2
  else
    echo "run-tests: *** the OpenStack fault soak FAILED (table above) ***" >&2
    exit 1
  fi
fi

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

# The stacks in containers (issue 12): images built from compose/Dockerfile by
# compose/local-images.sh (no image registry needed), stacks started from the compose files on
# a real engine. An engine that answers is used as it is; otherwise, as root, Debian's dockerd
# is started with its data (base image, build cache) in $DOCKER_CACHE, which later runs reuse,
# and stopped on exit. DOCKER_E2E=0 skips them.
if [ "${DOCKER_E2E:-}" = 0 ]; then
  echo "run-tests: SKIPPED: container tests (DOCKER_E2E=0)" >&2
elif ! docker info >/dev/null 2>&1 && [ "$(id -u)" -ne 0 ]; then
  echo "run-tests: SKIPPED: container tests: no Docker engine answers and only root starts one" >&2
elif [ "$(id -u)" -ne 0 ] && ! command -v mmdebstrap >/dev/null && ! docker image inspect site-monitoring/debian:bookworm-slim >/dev/null 2>&1; then
  echo "run-tests: SKIPPED: container tests: mmdebstrap is missing and only root installs it" >&2
else
  (
    started=$SECONDS
    docker_need=()
    command -v mmdebstrap >/dev/null 2>&1 || docker_need+=(mmdebstrap)
    docker info >/dev/null 2>&1 || command -v dockerd >/dev/null 2>&1 || docker_need+=(docker.io)
    if ((${#docker_need[@]})); then
      echo "run-tests: installing ${docker_need[*]}" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${docker_need[@]}" >/dev/null
    fi
    if ! docker info >/dev/null 2>&1; then
      cache=${DOCKER_CACHE:-/var/cache/site-monitoring/docker}
      run=/run/site-monitoring-docker
      mkdir -p "$cache" "$run"
      export DOCKER_HOST=unix://$run/docker.sock
      echo "run-tests: starting dockerd (data in $cache, log in $cache/dockerd.log)" >&2
      dockerd --data-root "$cache/data" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
        --host "$DOCKER_HOST" >"$cache/dockerd.log" 2>&1 &
      dockerd_pid=$!
      trap 'kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid"' EXIT
      deadline=$((SECONDS + 60))
      until docker info >/dev/null 2>&1; do
        if ! kill -0 "$dockerd_pid" 2>/dev/null || ((SECONDS > deadline)); then
          echo "run-tests: dockerd did not answer within 60 s:" >&2
          tail -20 "$cache/dockerd.log" >&2
          exit 1
        fi
        sleep 0.5
      done
    fi
    echo "run-tests: engine $(docker version -f '{{.Server.Version}}'), $(docker-compose version --short 2>/dev/null || true)" >&2
    images=$(mktemp)
    nice -n 10 compose/local-images.sh >"$images"
    set -a
    # shellcheck disable=SC1090
    . "$images"
    set +a
    rm -f "$images"
    echo "run-tests: images ready after $((SECONDS - started)) s" >&2
    DOCKER_E2E=1 cargo test -p stack-tests --all-features --test docker_stacks --test docker_site \
      -- --ignored --nocapture
    echo "run-tests: container tests took $((SECONDS - started)) s" >&2
  )
fi
