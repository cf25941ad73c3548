#!/usr/bin/env bash
# Our legacy values against the original exporter 3.0.0's on the same TOML cloud, weights file
# and start date, scraped at (nearly) the same moment. Prints a table and the largest relative
# difference; exits 1 when any series differs by more than the drift between the two scrapes
# allows, or when a series is missing on either side.
#
#   ORIG_EXP_DIR  the original's scratch dir made by ../shared/peers/original-exporter/setup.sh
#                 (default /tmp/orig-exp)
#   CLOUD WEIGHTS START   the inputs (default: exporter/tests/fixtures/legacy-cloud.toml,
#                 exporter/tests/fixtures/weights.toml, 2024-01-01)
#   BIN           our binary (default target/release/site-exporter)
set -euo pipefail
cd "$(dirname "$0")/.."
ORIG_EXP_DIR=${ORIG_EXP_DIR:-/tmp/orig-exp}
CLOUD=$(realpath "${CLOUD:-exporter/tests/fixtures/legacy-cloud.toml}")
WEIGHTS=$(realpath "${WEIGHTS:-exporter/tests/fixtures/weights.toml}")
START=${START:-2024-01-01}
BIN=${BIN:-target/release/site-exporter}
[ -x "$ORIG_EXP_DIR/venv/bin/python" ] || { echo "run ../shared/peers/original-exporter/setup.sh first" >&2; exit 2; }
[ -x "$BIN" ] || cargo build --release -p site-exporter >&2
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
op=$(free); ours=$(free)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT
# The original only fills its gauges after its first interval.
(cd "$ORIG_EXP_DIR/src" && TZ=UTC exec "$ORIG_EXP_DIR/venv/bin/python" project_usage_exporter.py \
  -d "$CLOUD" -w "$WEIGHTS" -s "$START" -i 2 -p "$op" --domain) >/tmp/legacy-vs-original.orig.log 2>&1 &
pids+=($!)
"$BIN" --dummy --dummy.file "$CLOUD" --dummy.weights "$WEIGHTS" --dummy.usage-start "$START" \
  --dummy.interval 1s --web.listen-address "127.0.0.1:$ours" --log.level warn &
pids+=($!)
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$op/metrics" | grep -q '^project_vcpu_usage{' && \
    curl -sf "http://127.0.0.1:$ours/-/ready" >/dev/null && break
  sleep 0.1
done
# Wait for fresh refreshes on both sides, then scrape both within a moment.
sleep 2.5
curl -s "http://127.0.0.1:$op/metrics" >/tmp/legacy-vs-original.orig.txt
curl -s "http://127.0.0.1:$ours/metrics" >/tmp/legacy-vs-original.ours.txt
python3 - /tmp/legacy-vs-original.orig.txt /tmp/legacy-vs-original.ours.txt <<'PY'
import re, sys
def load(path):
    out = {}
    for line in open(path):
        m = re.match(r'^(project_(?:vcpu|mb)_usage)\{([^}]*)\} (\S+)$', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out[(m.group(1), labels["project_id"], labels["project_name"])] = float(m.group(3))
    return out
orig, ours = load(sys.argv[1]), load(sys.argv[2])
print("| metric | project | original | ours | relative difference |")
print("|---|---|---|---|---|")
worst, bad = 0.0, False
for key in sorted(set(orig) | set(ours)):
    o, u = orig.get(key), ours.get(key)
    if o is None or u is None:
        bad = True
        print(f"| {key[0]} | {key[2]} | {o} | {u} | missing |")
        continue
    rel = abs(o - u) / max(abs(o), 1e-9) if o or u else 0.0
    worst = max(worst, rel)
    print(f"| {key[0]} | {key[2]} | {o:.4f} | {u:.4f} | {rel:.2e} |")
# Both refresh every 1-2 s: a few seconds of drift on hundreds of hours is < 1e-4.
print(f"\nlargest relative difference: {worst:.2e}")
sys.exit(1 if bad or worst > 1e-4 else 0)
PY
