#!/usr/bin/env bash
# Issue 15 §3: where a scrape's latency tail comes from. Variants of our exporter (same binary
# with other environments, or other binaries) and nginx serving the first variant's bytes, all
# serving the original's 10,000-project stress file, interleaved round by round; for each row
# wrk's latency percentiles (from a done() script) and the run-queue waits of the server's and
# wrk's threads (/proc/PID/task/*/schedstat: time runnable but not running) over the run.
#
#   ./bench/scrape-tail.sh shipped 'one-worker:TOKIO_WORKER_THREADS=1' 'old:BIN=/tmp/old'
#
# Each argument is NAME[:K=V ...]; BIN=path picks the binary (default target/release/site-exporter),
# every other K=V goes to its environment.
#   RUNS (3)  DURATION (10s)  ROWS ("gzip plain")  INTERVAL (15s)  PEERS (../shared/peers)
#   DELAY (0: each connection sends its next request as soon as the answer is in; N: waits N ms
#          first, wrk's delay(), for latencies below saturation)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=$(realpath "${PEERS:-../shared/peers}")
RUNS=${RUNS:-3}; DURATION=${DURATION:-10s}; ROWS=${ROWS:-gzip plain}; INTERVAL=${INTERVAL:-15s}
DELAY=${DELAY:-0}
[ $# -gt 0 ] || set -- shipped
for t in nginx wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
ACCEPT='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
W=$(mktemp -d /tmp/scrape-tail.XXXX); chmod 755 "$W"   # nginx workers run unprivileged
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
zcat "$PEERS/original-exporter/vendor/dummy_cc_site_a.toml.10000.gz" >"$W/stress10k.toml"
cat >"$W/latency.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("LATENCY %.1f %.3f %.3f %.3f %.3f %.3f\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
LUA
[ "$DELAY" = 0 ] || echo "delay = function() return $DELAY end" >>"$W/latency.lua"

names=(); declare -A URL SERVER
for spec in "$@"; do
  name=${spec%%:*}; envs=(); bin=target/release/site-exporter
  [ "$name" != "$spec" ] && for kv in ${spec#*:}; do
    case $kv in BIN=*) bin=${kv#BIN=} ;; *=*) envs+=("$kv") ;; *) echo "not K=V: $kv" >&2; exit 1 ;; esac
  done
  [ -x "$bin" ] || { echo "no $bin: nice -n 10 cargo build --release -p site-exporter" >&2; exit 1; }
  port=$(free_port)
  env ${envs[@]+"${envs[@]}"} "$bin" --dummy --dummy.file "$W/stress10k.toml" --dummy.interval "$INTERVAL" \
    --web.listen-address "127.0.0.1:$port" --log.level warn >"$W/$name.log" 2>&1 & pids+=($!)
  SERVER[$name]=$!; URL[$name]=http://127.0.0.1:$port/metrics; names+=("$name")
  for _ in $(seq 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/-/ready" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/-/ready" || { tail "$W/$name.log"; echo "$name not ready" >&2; exit 1; }
done

mkdir -p "$W/www"
curl -s -H "Accept: $ACCEPT" -o "$W/www/plain" "${URL[${names[0]}]}"
curl -s -H "Accept: $ACCEPT" -H 'Accept-Encoding: gzip' -o "$W/www/gzip" "${URL[${names[0]}]}"
chmod -R a+rX "$W/www"
nport=$(free_port)
cat >"$W/nginx.conf" <<NG
worker_processes 1;
daemon off;
error_log $W/nginx.err warn;
pid $W/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path $W/ct; proxy_temp_path $W/pt; fastcgi_temp_path $W/ft; uwsgi_temp_path $W/ut; scgi_temp_path $W/st;
  server {
    listen 127.0.0.1:$nport;
    root $W/www;
    location = /plain { default_type "application/openmetrics-text; version=1.0.0; charset=utf-8"; }
    location = /gzip { default_type "application/openmetrics-text; version=1.0.0; charset=utf-8"; add_header Content-Encoding gzip; }
  }
}
NG
nginx -c "$W/nginx.conf" -p "$W" & pids+=($!)
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$nport/plain" && break; sleep 0.1; done
cmp -s <(curl -s "http://127.0.0.1:$nport/plain") "$W/www/plain" || { echo "nginx serves other bytes" >&2; exit 1; }
for _ in $(seq 50); do SERVER[nginx]=$(pgrep -P "$(cat "$W/nginx.pid")" | head -1) && break; sleep 0.1; done

running() { case $(awk '{print $3}' /proc/"$1"/stat 2>/dev/null) in R|S|D) return 0 ;; esac; return 1; }
waited() { # run-queue wait of all threads of $1 in s; nothing once the process is gone
  { cat /proc/"$1"/task/*/schedstat 2>/dev/null || true; } | awk '{w += $2} END {if (NR) printf "%.3f", w / 1e9}'
}
echo "# $(git rev-parse --short HEAD); $(nproc) cores; loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# wrk -t2 -c8 -d$DURATION, delay $DELAY ms, $RUNS rounds, rows interleaved; our refresh every $INTERVAL; nginx (one worker, sendfile) serves ${names[0]}'s bytes"
for r in $(seq "$RUNS"); do
  for row in $ROWS; do
    for n in "${names[@]}" nginx; do
      url=${URL[$n]:-http://127.0.0.1:$nport/$row}; enc=(); [ "$row" = gzip ] && enc=(-H 'Accept-Encoding: gzip')
      wrk -s "$W/latency.lua" -t2 -c8 -d"$DURATION" -H "Accept: $ACCEPT" "${enc[@]}" "$url" >"$W/wrk.out" & wrk=$!
      sleep 0.5   # let wrk start its threads; the waits below cover the rest of the run
      s0=$(waited "${SERVER[$n]}"); w0=$(waited $wrk); s1=$s0; w1=$w0
      while running $wrk; do   # the last sample taken while wrk still ran
        s=$(waited "${SERVER[$n]}"); w=$(waited $wrk)
        [ -n "$w" ] && [ -n "$s" ] && s1=$s && w1=$w
        sleep 0.2
      done
      wait $wrk
      echo "$r $row $n $(grep LATENCY "$W/wrk.out" | cut -d' ' -f2-) $(python3 -c "print(f'{$s1-$s0:.2f} {$w1-$w0:.2f}')")"
    done
  done
done >"$W/rounds"
cat "$W/rounds"
python3 - "$W/rounds" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    _, row, name, *v = line.split()
    rows.setdefault((row, name), []).append(list(map(float, v)))
print("| row | server | req/s | p50 ms | p95 ms | p99 ms | p99 / nginx's | p99.9 ms | max ms | server run-queue wait s | wrk run-queue wait s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (row, name), v in rows.items():
    m = [statistics.median(c) for c in zip(*v)]
    ng = statistics.median(x[3] for x in rows[(row, "nginx")])
    print(f"| {row} | {name} | {m[0]:.1f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} | {m[3] / ng:.2f} | {m[4]:.2f} | {m[5]:.2f} | {m[6]:.2f} | {m[7]:.2f} |")
PY
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg); medians of the rounds; waits from 0.5 s into the run to its last 0.2 s sample"
