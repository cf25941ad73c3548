#!/usr/bin/env bash
# libvirt-refresh.sh [N...] -- our libvirt source's refresh time and RSS, the part a scrape never
# waits for. For each N (default 10 100 1000) a libvirt test-driver node with N Nova-like guests
# (../shared/peers/libvirt-exporter/gen_node.py), our exporter with --libvirt.interval 1s, and
# COUNT (12) refreshes observed: site_exporter_source_refresh_duration_seconds after each, and
# VmRSS from /proc. Prints a table: first refresh, median and max of the later ones, RSS after
# the first and the last. Only 127.0.0.1 is used; the exporter is stopped by PID.
#
#   BIN      the exporter (default: target/release/site-exporter, built with --features libvirt)
#   PEERS    the shared peers directory (default: ../shared/peers next to this repository)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-12}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
if [ -z "${BIN:-}" ]; then
  cargo build --release --features libvirt -p site-exporter --bin site-exporter >&2
  BIN=$PWD/target/release/site-exporter
fi
NS=("$@"); [ ${#NS[@]} -gt 0 ] || NS=(10 100 1000)
WORK=$(mktemp -d -t lv-refresh.XXXXXX)
pid=""
cleanup() { [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; rm -rf "$WORK"; }
trap cleanup EXIT
echo "| N | first refresh ms | later refreshes, median ms | max ms | RSS MiB after 1st | after ${COUNT}th |"
echo "|---|---|---|---|---|---|"
for n in "${NS[@]}"; do
  xml=$WORK/node-$n.xml
  python3 "$PEERS/libvirt-exporter/gen_node.py" "$n" "$xml" >/dev/null
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$BIN" --libvirt --libvirt.uri "test://$xml" --libvirt.interval 1s \
    --web.listen-address "127.0.0.1:$port" >"$WORK/exporter-$n.log" 2>&1 &
  pid=$!
  last=""; durs=(); rss=()
  deadline=$((SECONDS + 120))
  while [ ${#durs[@]} -lt "$COUNT" ]; do
    [ $SECONDS -lt $deadline ] || { echo "N=$n: only ${#durs[@]} refreshes in 120 s" >&2; exit 1; }
    kill -0 "$pid" 2>/dev/null || { echo "N=$n: exporter exited:" >&2; cat "$WORK/exporter-$n.log" >&2; exit 1; }
    body=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" || true)
    ts=$(grep -E '^site_exporter_source_last_success_timestamp_seconds\{source="libvirt"\}' <<<"$body" | awk '{print $2}' || true)
    if [ -n "$ts" ] && [ "$ts" != "$last" ]; then
      last=$ts
      durs+=("$(grep -E '^site_exporter_source_refresh_duration_seconds\{source="libvirt"\}' <<<"$body" | awk '{print $2}')")
      rss+=("$(awk '$1=="VmRSS:"{print $2}' "/proc/$pid/status")")
    fi
    sleep 0.05 # poll interval of the metrics page, not a wait for a server
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  python3 - "$n" "${durs[*]}" "${rss[*]}" <<'PY'
import statistics, sys
n = sys.argv[1]
d = [float(x) * 1e3 for x in sys.argv[2].split()]
r = [int(x) // 1024 for x in sys.argv[3].split()]
print(f"| {n} | {d[0]:.1f} | {statistics.median(d[1:]):.1f} | {max(d[1:]):.1f} | {r[0]} | {r[-1]} |")
PY
done
