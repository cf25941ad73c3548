#!/usr/bin/env bash
# The OpenStack source at scale: site-exporter --openstack against a fake Keystone + Nova
# (exporter/examples/fake_openstack) serving a generated cloud. Prints a table of medians.
#
#   PROJECTS (10000) SERVERS (200000)   servers ever launched, deleted ones included
#   LIVE_FRACTION (0.25)                share of them that exist at start (the rest deleted)
#   HISTORY_DAYS (400)  launches spread over this many days; USAGE_START_DAYS (365) the
#                       accounting start, as a date this many days ago
#   RUNS (5)            rounds; INCREMENTAL (7) refreshes after the first observed per phase;
#   INTERVAL (5s)       the exporter's refresh interval; RECONCILE (30s) its
#                       reconcile_interval, so that a phase sees changes-since refreshes and
#                       a reconciliation (told apart by whether Nova's usage was asked)
#   FULL (3)            refreshes after the first of the phase with incremental: false
#   PEER (0)            1 = also run the original exporter 3.0.0 against the same fake
#                       (needs ../shared/peers/original-exporter/setup.sh, ORIG_EXP_DIR);
#                       PEER_REFRESHES (2) refreshes observed
#   OUT_DIR             raw measurements (default /tmp/bench-openstack-<time>)
#
# Each round has three phases, each a fresh exporter process:
#   memory  no state file: the first refresh asks the whole window [usage_start, now) (what an
#           exporter that re-reads the full window pays on every refresh), then INCREMENTAL
#           refreshes of [last end, now)
#   state   the same with a state file (written after every refresh)
#   resume  restart on that state file: time to data, and that first refresh (a full listing)
#   full    incremental: false (every refresh lists every server and asks Nova for the
#           window, the behaviour before issue 15), memory only: the same-run comparison
# Per refresh: duration (site_exporter_source_refresh_duration_seconds), requests and response
# bytes as counted by the fake (by endpoint), the fake's time building answers, the exporter's
# CPU time (/proc) and RSS. "Time to data" is from spawning the exporter to /-/ready = 200.
# After each phase the exporter's summed vCPU-seconds are checked against the fake's own
# total for the accounted window. Only 127.0.0.1 is used; processes are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
for t in curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
echo "building (release): site-exporter, then the fake" >&2
cargo build --release -p site-exporter --bin site-exporter >&2
cargo build --release -p site-exporter --example fake_openstack >&2
export BIN=${BIN:-$PWD/target/release/site-exporter}
export FAKE=${FAKE:-$PWD/target/release/examples/fake_openstack}
export PROJECTS=${PROJECTS:-10000} SERVERS=${SERVERS:-200000} LIVE_FRACTION=${LIVE_FRACTION:-0.25}
export HISTORY_DAYS=${HISTORY_DAYS:-400} USAGE_START_DAYS=${USAGE_START_DAYS:-365}
export RUNS=${RUNS:-5} INCREMENTAL=${INCREMENTAL:-7} INTERVAL=${INTERVAL:-5s}
export RECONCILE=${RECONCILE:-30s} FULL=${FULL:-3}
export PEER=${PEER:-0} PEER_REFRESHES=${PEER_REFRESHES:-2} ORIG_EXP_DIR=${ORIG_EXP_DIR:-/tmp/orig-exp}
export OUT_DIR=${OUT_DIR:-/tmp/bench-openstack-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT_DIR"
echo "raw results -> $OUT_DIR" >&2
exec python3 "$PWD/bench/openstack_bench.py"
