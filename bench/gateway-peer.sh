#!/usr/bin/env bash
# Issue 15 §4: our gateway's allowed path against the upstream directly and the original
# HAProxy gate, in ONE run of ../shared/peers/haproxy-gate/perf.sh (rows interleaved), with our
# release gateway as rows d (allowed) and e (deny). Prints the peer's table, then the ratios
# from that same run. The TLS / plain ratio comes from ./bench/gateway.sh (its own single run).
#
#   BIN (target/release/federation-gateway)  RUNS (5)  DURATION (10)  PEERS (../shared/peers)
#   GATEWAY_ARGS  extra flags for our gateway (default: --log.level warn)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-target/release/federation-gateway}")
PEERS=$(realpath "${PEERS:-../shared/peers}")
export RUNS=${RUNS:-5} DURATION=${DURATION:-10}
for t in haproxy wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x "$BIN" ] || { echo "no $BIN: nice -n 10 cargo build --release -p federation-gateway" >&2; exit 1; }
export OURS_CMD="$BIN ${GATEWAY_ARGS:---log.level warn} --config \"\$OURS_CONFIG\""
OUT=$(mktemp); trap 'rm -f "$OUT"' EXIT
echo "# commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway || echo '+dirty'); OURS_CMD=$OURS_CMD"
(cd "$PEERS/haproxy-gate" && ./perf.sh) | tee "$OUT"
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
# The medians table: "<row> <what...> req/s p50 p99 non-2xx RSS".
awk '$1 ~ /^[a-e]$/ && NF >= 7 && $(NF-4) ~ /^[0-9.]+$/ { rps[$1] = $(NF-4); p99[$1] = $(NF-2) }
  END {
    if (!("d" in rps)) { print "our gateway row missing"; exit 1 }
    printf "ratios (same run): allowed d/a (upstream direct) %.2f, d/b (HAProxy gate) %.2f; HAProxy gate b/a %.2f; deny e/c %.2f; p99 d/a %.2f\n",
      rps["d"] / rps["a"], rps["d"] / rps["b"], rps["b"] / rps["a"], rps["e"] / rps["c"], p99["d"] / p99["a"]
  }' "$OUT"
