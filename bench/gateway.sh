#!/usr/bin/env bash
# federation-gateway: (1) throughput over TLS vs plain HTTP against the same fixed upstream,
# (2) RSS while 50 clients each download a 100 MB /federate body through it. Prints tables.
# Loopback only. Needs haproxy, wrk, curl, python3 (and openssl for the test certificate).
#
#   BIN (target/release/federation-gateway)  DURATION (10)  RUNS (5)  CLIENTS (50)  MB (100)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/federation-gateway}
DURATION=${DURATION:-10}; RUNS=${RUNS:-5}; CLIENTS=${CLIENTS:-50}; MB=${MB:-100}
for t in haproxy wrk curl python3 openssl; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x "$BIN" ] || cargo build --release -p federation-gateway >&2
WORK=$(mktemp -d); PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
median() { python3 -c "import statistics,sys;print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }

TOKEN=bench-token-0123456789abcdef
echo "$TOKEN" > "$WORK/token"
SEL='{job="project_usages",__name__=~"project_.*_usage"}'
Q='/federate?match%5B%5D=%7Bjob%3D%22project_usages%22%2C__name__%3D~%22project_.%2A_usage%22%7D'
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

# --- (1) a fixed ~2.2 MB body from HAProxy, as ../shared/peers/haproxy-gate uses
python3 - "$WORK/body.txt" <<'PY'
import random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    for i in range(10000):
        f.write(f'project_vcpu_usage{{domain_id="default",domain_name="Default",instance="exporter:9184",job="project_usages",project_id="{random.getrandbits(128):032x}",project_name="project-{i:05}"}} {random.random()*1e6:.3f} 1700000000000\n')
PY
UP=$(freeport)
cat > "$WORK/up.cfg" <<CFG
global
  tune.bufsize 4194304
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend up
  bind 127.0.0.1:$UP
  http-request return status 200 content-type "text/plain; version=0.0.4" file $WORK/body.txt
CFG
haproxy -db -f "$WORK/up.cfg" >"$WORK/up.log" 2>&1 & PIDS+=($!)
wait_port "$UP"

start_gateway() { # $1 = name, $2 = extra top-level yaml, $3 = upstream url
  local port iport
  port=$(freeport); iport=$(freeport)
  cat > "$WORK/$1.yml" <<CFG
$2
listen: 127.0.0.1:$port
internal_listen: 127.0.0.1:$iport
upstream: {url: '$3', timeout: 60s}
limits: {max_connections: 4096}
clients:
  - name: portal
    token_file: $WORK/token
    allow: ['$SEL']
CFG
  # runs in a process substitution: the caller adds the PID to PIDS
  "$BIN" --log.level warn --config "$WORK/$1.yml" >"$WORK/$1.log" 2>&1 &
  wait_port "$port"
  echo "$port $!"
}
read -r PLAIN PLAIN_PID < <(start_gateway plain "" "http://127.0.0.1:$UP"); PIDS+=("$PLAIN_PID")
read -r TLS TLS_PID < <(start_gateway tls "tls: {cert_file: $WORK/tls.crt, key_file: $WORK/tls.key}" "http://127.0.0.1:$UP"); PIDS+=("$TLS_PID")
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PLAIN$Q"
curl -sf -o /dev/null --cacert "$WORK/tls.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$TLS$Q"

declare -A RPS P50 P99
for run in $(seq 1 "$RUNS"); do
  for row in upstream plain tls deny_tls; do
    case $row in
      upstream) url="http://127.0.0.1:$UP$Q"; tok=$TOKEN;;
      plain) url="http://127.0.0.1:$PLAIN$Q"; tok=$TOKEN;;
      tls) url="https://127.0.0.1:$TLS$Q"; tok=$TOKEN;;
      deny_tls) url="https://127.0.0.1:$TLS$Q"; tok=wrong-token-0123456789;;
    esac
    out=$(wrk -t2 -c8 -d"${DURATION}s" --latency -H "Authorization: Bearer $tok" "$url")
    RPS[$row]+="$(awk '/^Requests\/sec/{print $2}' <<<"$out") "
    P50[$row]+="$(awk '$1=="50%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) sub(/ms/,"",v); else {sub(/s/,"",v); v*=1000}; print v}' <<<"$out") "
    P99[$row]+="$(awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) sub(/ms/,"",v); else {sub(/s/,"",v); v*=1000}; print v}' <<<"$out") "
  done
done
echo "# federation-gateway over TLS and plain HTTP: wrk -t2 -c8 -d${DURATION}s, medians of $RUNS; body $(wc -c <"$WORK/body.txt") bytes"
echo "# nproc=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| row | req/s | p50 ms | p99 ms |\n|---|---|---|---|\n'
for row in upstream plain tls deny_tls; do
  # shellcheck disable=SC2086
  printf '| %s | %.1f | %.3f | %.3f |\n' "$row" "$(median ${RPS[$row]})" "$(median ${P50[$row]})" "$(median ${P99[$row]})"
done
printf '| RSS after the runs: plain / TLS | %s / %s kB | | |\n' "$(rss_kb "$PLAIN_PID")" "$(rss_kb "$TLS_PID")"
# shellcheck disable=SC2086
python3 -c 'import sys; u, p, t = map(float, sys.argv[1:]); print(f"ratios (same run): plain/upstream {p/u:.2f}, TLS/upstream {t/u:.2f}, TLS/plain {t/p:.2f}")' \
  "$(median ${RPS[upstream]})" "$(median ${RPS[plain]})" "$(median ${RPS[tls]})"

# --- (2) 50 clients each downloading 100 MB through the gateway
mkdir -p "$WORK/big"
head -c $((MB * 1024 * 1024)) /dev/zero | tr '\0' 'x' > "$WORK/big/federate"
BIGUP=$(freeport)
(cd "$WORK/big" && exec python3 -m http.server "$BIGUP" --bind 127.0.0.1) >"$WORK/big.log" 2>&1 & PIDS+=($!)
wait_port "$BIGUP"
read -r STREAM STREAM_PID < <(start_gateway stream "" "http://127.0.0.1:$BIGUP"); PIDS+=("$STREAM_PID")
idle=$(rss_kb "$STREAM_PID"); peak=$idle
for _ in $(seq 1 "$CLIENTS"); do
  curl -s -o /dev/null -w '%{size_download}\n' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$STREAM$Q" >>"$WORK/sizes" &
  CURLS+=($!)
done
while :; do
  r=$(rss_kb "$STREAM_PID"); [ "$r" -gt "$peak" ] && peak=$r
  running=0; for p in "${CURLS[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
  [ $running = 1 ] || break
  sleep 0.2
done
complete=$(awk -v want=$((MB * 1024 * 1024)) '$1==want{n++} END{print n+0}' "$WORK/sizes")
echo
echo "# $CLIENTS concurrent downloads of $MB MB through the gateway (python http.server upstream)"
printf '| what | value |\n|---|---|\n'
printf '| complete downloads | %s of %s |\n' "$complete" "$CLIENTS"
printf '| gateway RSS idle / peak during the downloads | %s / %s kB |\n' "$idle" "$peak"
