#!/usr/bin/env bash
# Cached-scrape benchmark of site-exporter on a generated dummy cloud. Prints a table.
#
#   PROJECTS (10000) SERVERS (5) GUESTS (500)   size of the generated cloud
#   DURATION (10)  seconds per wrk run; RUNS (3) rounds, medians reported
#   BIN            the binary (default: target/release/site-exporter, built if missing)
#
# wrk: 2 threads, 8 connections, loopback only. "CPU per scrape" is the exporter's own CPU time
# (utime+stime from /proc) during the wrk run divided by the requests served.
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECTS=${PROJECTS:-10000}; SERVERS=${SERVERS:-5}; GUESTS=${GUESTS:-500}
DURATION=${DURATION:-10}; RUNS=${RUNS:-3}
BIN=${BIN:-target/release/site-exporter}
for t in wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x "$BIN" ] || cargo build --release -p site-exporter >&2

port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
url=http://127.0.0.1:$port/metrics
start=$(date +%s.%N)
"$BIN" --dummy --dummy.projects "$PROJECTS" --dummy.servers-per-project "$SERVERS" \
  --dummy.guests "$GUESTS" --dummy.interval 60s --web.listen-address "127.0.0.1:$port" \
  --log.level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.05; done
ready=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")

om='Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5'
plain_bytes=$(curl -s -H "$om" "$url" | wc -c)
gzip_bytes=$(curl -s -H "$om" -H 'Accept-Encoding: gzip' "$url" | wc -c)
classic_bytes=$(curl -s "$url" | wc -c)
series=$(curl -s "$url" | grep -vc '^#')
refresh_s=$(curl -s "$url" | awk '/^site_exporter_source_refresh_duration_seconds\{source="dummy"\}/{print $2}')

cpu_ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
tck=$(getconf CLK_TCK)
run_wrk() { # $1 = extra header; prints "req/s p50_ms p99_ms cpu_us_per_req"
  local c0 c1 out
  c0=$(cpu_ticks)
  out=$(wrk -t2 -c8 -d"${DURATION}s" --latency -H "$om" ${1:+-H "$1"} "$url")
  c1=$(cpu_ticks)
  python3 - "$out" "$c0" "$c1" "$tck" <<'PY'
import re, sys
out, c0, c1, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
reqs = int(re.search(r"(\d+) requests in", out).group(1))
# Anchored to the "Latency Distribution" lines: unanchored, "50%" also matches the end of a
# "+/- Stdev" figure such as "72.50%" and takes the next line's first word.
p50 = ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
print(rps, p50, p99, (c1 - c0) / tck / max(reqs, 1) * 1e6)
PY
}
median() { python3 -c "import statistics,sys;print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
declare -A col
for variant in plain gzip; do
  hdr=""; [ $variant = gzip ] && hdr="Accept-Encoding: gzip"
  rps=(); p50=(); p99=(); cpu=()
  for _ in $(seq 1 "$RUNS"); do
    read -r a b c d < <(run_wrk "$hdr")
    rps+=("$a"); p50+=("$b"); p99+=("$c"); cpu+=("$d")
  done
  col[$variant]="$(median "${rps[@]}") $(median "${p50[@]}") $(median "${p99[@]}") $(median "${cpu[@]}")"
done
rss_kb=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
hwm_kb=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")

printf '\nsite-exporter, generated cloud: %s projects x %s servers, %s guests\n' "$PROJECTS" "$SERVERS" "$GUESTS"
printf '| what | value |\n|---|---|\n'
printf '| series | %s |\n' "$series"
printf '| start to ready | %s s |\n' "$ready"
printf '| last refresh (collect + render; gzip not included), self-reported | %s s |\n' "$refresh_s"
printf '| exposition OpenMetrics / classic / OpenMetrics gzip | %s / %s / %s bytes |\n' "$plain_bytes" "$classic_bytes" "$gzip_bytes"
for variant in plain gzip; do
  read -r a b c d <<<"${col[$variant]}"
  printf '| wrk 8 conns, OpenMetrics %s: req/s, p50, p99 | %.0f req/s, %.2f ms, %.2f ms |\n' "$variant" "$a" "$b" "$c"
  printf '| exporter CPU per scrape, %s | %.0f us |\n' "$variant" "$d"
done
printf '| RSS after the runs / peak | %s MB / %s MB |\n' "$((rss_kb / 1024))" "$((hwm_kb / 1024))"
