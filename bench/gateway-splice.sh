#!/usr/bin/env bash
# Issue 15 §4: what splice(2) buys a proxy on this machine. One run of
# ../shared/peers/haproxy-gate/perf.sh whose row d is NOT our gateway but a second copy of the
# original HAProxy gate with `option splice-auto` + `option splice-response` (kernel-side
# forwarding of the response body through a pipe, no user-space copy). Rows a (upstream
# direct), b (the gate without splice) and d (the same gate with splice) come from the same
# run, interleaved; d/b is the effect of splice, d/a what a splicing proxy reaches.
#
#   RUNS (5)  DURATION (10)  PEERS (../shared/peers)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=$(realpath "${PEERS:-../shared/peers}")
export RUNS=${RUNS:-5} DURATION=${DURATION:-10}
for t in haproxy wrk curl python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
export SPLICE_TMPL="$PEERS/haproxy-gate/haproxy.cfg.tmpl"
export OURS_CMD="$PWD/bench/haproxy-splice-gate.sh"
OUT=$(mktemp); trap 'rm -f "$OUT"' EXIT
echo "# row d below is the original gate WITH splice (bench/haproxy-splice-gate.sh), not our gateway"
(cd "$PEERS/haproxy-gate" && ./perf.sh) | tee "$OUT"
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk '$1 ~ /^[a-e]$/ && NF >= 7 && $(NF-4) ~ /^[0-9.]+$/ { rps[$1] = $(NF-4); p99[$1] = $(NF-2) }
  END {
    if (!("d" in rps)) { print "splice gate row missing"; exit 1 }
    printf "ratios (same run): splice gate d/a (upstream direct) %.2f, without splice b/a %.2f; splice effect d/b %.2f; p99 d/b %.2f\n",
      rps["d"] / rps["a"], rps["b"] / rps["a"], rps["d"] / rps["b"], p99["d"] / p99["b"]
  }' "$OUT"
