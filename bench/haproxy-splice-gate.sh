#!/usr/bin/env bash
# Started by bench/gateway-splice.sh as perf.sh's OURS_CMD: the original gate's template
# ($SPLICE_TMPL) rendered for OURS_PORT / UPSTREAM_URL / PORTAL_TOKEN with splice switched on in
# `defaults`, run in the foreground (perf.sh stops it by PID).
set -euo pipefail
cfg=$(mktemp --suffix=.cfg)
python3 - "$SPLICE_TMPL" "$cfg" <<'PY'
import os, string, sys
t = open(sys.argv[1]).read()
marker = "\toption httplog\n"
assert marker in t, "template changed: no 'option httplog' line"
t = t.replace(marker, marker + "\toption splice-auto\n\toption splice-response\n", 1)
up = os.environ["UPSTREAM_URL"].removeprefix("http://")
open(sys.argv[2], "w").write(string.Template(t).substitute(
    LOG_TARGET="127.0.0.1:9", LISTEN="127.0.0.1:" + os.environ["OURS_PORT"],
    UPSTREAM=up, PROMETHEUS_AUTH_TOKEN=os.environ["PORTAL_TOKEN"]))
PY
haproxy -c -q -f "$cfg"
exec haproxy -db -f "$cfg"
