#!/usr/bin/env bash
# Issue 15 §3: our cached scrape against the static limit. Runs
# ../shared/peers/static-limit/perf.sh (nginx with sendfile serving the very bytes ours served,
# wrk interleaved) with our exporter serving the original's 10,000-project stress file
# (dummy_cc_site_a.toml.10000 from ../shared/peers/original-exporter/vendor as our dummy file),
# once per format (OpenMetrics, classic). Then one exporter is asked for all four bodies
# (OpenMetrics and classic, plain and gzip) with wrk and its RSS is read after each: the RSS
# target is on that last figure.
#
#   BIN (target/release/site-exporter)  BIN_COMMIT (names another BIN's commit in the header)
#   RUNS (5)  DURATION (10s)  INTERVAL (15s: the dummy source's default refresh interval)
#   PEERS (../shared/peers)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-target/release/site-exporter}")
PEERS=$(realpath "${PEERS:-../shared/peers}")
RUNS=${RUNS:-5}; DURATION=${DURATION:-10s}; INTERVAL=${INTERVAL:-15s}
for t in nginx wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x "$BIN" ] || { echo "no $BIN: nice -n 10 cargo build --release -p site-exporter" >&2; exit 1; }
W=$(mktemp -d); pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$W"' EXIT
zcat "$PEERS/original-exporter/vendor/dummy_cc_site_a.toml.10000.gz" >"$W/stress10k.toml"
export OURS_CMD="exec $BIN --dummy --dummy.file $W/stress10k.toml --dummy.interval $INTERVAL --web.listen-address 127.0.0.1:\$PORT --log.level warn"
OM='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
CLASSIC='text/plain;version=0.0.4;q=1,*/*;q=0.1'
if [ "$BIN" = "$(realpath target/release/site-exporter 2>/dev/null)" ]; then
  built="commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- exporter || echo '+dirty')"
else # a binary from elsewhere: the tree's HEAD says nothing about it
  built="binary $BIN${BIN_COMMIT:+ (commit $BIN_COMMIT)}"
fi
echo "# $built; $(nproc) cores; loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
for fmt in openmetrics classic; do
  accept=$OM; [ $fmt = classic ] && accept=$CLASSIC
  echo "## format: $fmt"
  (cd "$PEERS/static-limit" && ACCEPT="$accept" RUNS=$RUNS DURATION=$DURATION ./perf.sh)
  echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
done

echo "## RSS of one exporter after plain, gzip and classic scrapes (wrk -t2 -c8 -d5s each)"
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
PORT=$port bash -c "$OURS_CMD" >"$W/rss.log" 2>&1 & pid=$!
for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.1; done
rss() { awk '$1=="VmRSS:"{printf "%.0f", $2/1024}' "/proc/$pid/status"; }
echo "| after | RSS MiB |"; echo "|---|---|"
echo "| ready | $(rss) |"
for step in "openmetrics plain|$OM|" "openmetrics gzip|$OM|gzip" "classic plain|$CLASSIC|" "classic gzip|$CLASSIC|gzip"; do
  IFS='|' read -r name accept enc <<<"$step"
  wrk -t2 -c8 -d5s -H "Accept: $accept" ${enc:+-H "Accept-Encoding: $enc"} "http://127.0.0.1:$port/metrics" >/dev/null
  echo "| $name | $(rss) |"
done
echo "| peak (VmHWM) | $(awk '$1=="VmHWM:"{printf "%.0f", $2/1024}' "/proc/$pid/status") |"
