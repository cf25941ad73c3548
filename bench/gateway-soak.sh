#!/usr/bin/env bash
# federation-gateway fault soak: concurrent HTTP/1.1 and HTTP/2 clients (curl over TLS) against
# an upstream that, per request, answers fine, answers 500, drops the connection, hangs, sends
# its headers too late, trickles its body, or resets the connection in the middle of a body
# (announced by length or chunked). Loopback only; bounded in count and time.
#
# Pass when, in every round:
# - every request ends cleanly: the expected status with a complete body, or 502/504, and a
#   body cut by the upstream reaches curl as a broken transfer (never exit 0 with a 200);
# - no client connection stays open after the round, and the gateway's open file descriptors
#   do not grow from round to round (idle pooled upstream connections are bounded);
# - RSS after the last round is within 10 % of RSS after the second (the first warms up).
#
# Eight clients per round finish TLS and send nothing; the gateway must close them
# (header_read_timeout 2s).
#
#   BIN (target/release/federation-gateway)  ROUNDS (10)  REQUESTS (300 per protocol and round)
#   PARALLEL (16 per protocol)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/federation-gateway}
ROUNDS=${ROUNDS:-10}; REQUESTS=${REQUESTS:-300}; PARALLEL=${PARALLEL:-16}
for t in curl python3 openssl ss; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
[ -x "$BIN" ] || cargo build --release -p federation-gateway >&2
WORK=$(mktemp -d); PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"' EXIT
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

TOKEN=soak-token-0123456789abcdef
echo "$TOKEN" > "$WORK/token"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

cat > "$WORK/upstream.py" <<'PY'
# The faulty upstream: the mode is the value of the request's `mode` matcher.
import asyncio, re, socket, struct, sys, urllib.parse

SIZE = 50_000
LINE = b'project_vcpu_usage{project_id="p"} 1 1700000000000\n'
BODY = (LINE * (SIZE // len(LINE) + 1))[:SIZE]

def reset(writer):
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = urllib.parse.unquote(head.split(b" ", 2)[1].decode())
            m = re.search(r'mode="([a-z0-9_]+)"', target)
            mode = m.group(1) if m else "ok"
            ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            if mode == "ok":
                writer.write(ok + b"Content-Length: %d\r\n\r\n" % SIZE + BODY)
            elif mode == "e500":
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n")
            elif mode == "drop":
                reset(writer)
                return
            elif mode in ("hang", "latehead"):
                # Never answer (or answer after the gateway's timeout); stop when it hangs up.
                try:
                    await asyncio.wait_for(reader.read(), 30 if mode == "hang" else 2.5)
                    return
                except asyncio.TimeoutError:
                    if mode == "hang":
                        return
                writer.write(ok + b"Content-Length: %d\r\n\r\n" % SIZE + BODY)
            elif mode == "slowbody":
                writer.write(ok + b"Content-Length: %d\r\n\r\n" % SIZE)
                for i in range(10):
                    await writer.drain()
                    await asyncio.sleep(0.15)
                    writer.write(BODY[i * SIZE // 10:(i + 1) * SIZE // 10])
            elif mode in ("cutlen", "cutchunk"):
                if mode == "cutlen":
                    writer.write(ok + b"Content-Length: %d\r\n\r\n" % SIZE + BODY[: SIZE // 3])
                else:
                    part = BODY[: SIZE // 3]
                    writer.write(ok + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(part) + part + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
                reset(writer)
                return
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), limit=1 << 20)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY

UP=$(freeport); PORT=$(freeport); IPORT=$(freeport)
python3 "$WORK/upstream.py" "$UP" >"$WORK/upstream.log" 2>&1 & PIDS+=($!)
wait_port "$UP"
cat > "$WORK/gateway.yml" <<CFG
listen: 127.0.0.1:$PORT
internal_listen: 127.0.0.1:$IPORT
tls: {cert_file: $WORK/tls.crt, key_file: $WORK/tls.key}
upstream: {url: 'http://127.0.0.1:$UP', timeout: 1s}
limits: {max_connections: 256, header_read_timeout: 2s}
clients:
  - name: portal
    token_file: $WORK/token
    allow: ['{job="soak"}']
CFG
"$BIN" --log.level error --config "$WORK/gateway.yml" >"$WORK/gateway.log" 2>&1 & GW=$!; PIDS+=($GW)
wait_port "$PORT"

python3 - "$GW" "$PORT" "$IPORT" "$UP" "$TOKEN" "$WORK/tls.crt" "$ROUNDS" "$REQUESTS" "$PARALLEL" <<'PY'
import collections, os, random, re, socket, ssl, subprocess, sys, time, urllib.parse

gw, port, iport, up, token, ca = sys.argv[1:7]
rounds, requests, parallel = (int(x) for x in sys.argv[7:10])
random.seed(1)
MODES = {  # mode: (weight, what a client must see)
    "ok": (4, "complete"), "e500": (2, "status 500"), "drop": (1, "status 502"),
    "hang": (1, "status 504"), "latehead": (1, "status 504"), "slowbody": (1, "complete"),
    "cutlen": (2, "broken"), "cutchunk": (2, "broken"),
}
SIZE = 50_000

def fds():
    return len(os.listdir(f"/proc/{gw}/fd"))

def rss_kib():
    with open(f"/proc/{gw}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])

def conns(filt):
    out = subprocess.run(["ss", "-Htn", "state", "established", filt], capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])

def url(mode, raw_quotes):
    sel = f'{{job="soak",mode="{mode}"}}'
    if raw_quotes:  # as `curl -g` sends it: only HTTP/1.1 can take raw quotes
        return f"https://127.0.0.1:{port}/federate?match[]={sel}"
    return f"https://127.0.0.1:{port}/federate?match%5B%5D=" + urllib.parse.quote(sel, safe="")

def batch(proto, modes):
    args = ["curl", "-s", "--no-progress-meter", "-g", "--cacert", ca, f"--{proto}", "--parallel", "--parallel-max", str(parallel),
            "--max-time", "20", "-H", f"Authorization: Bearer {token}",
            "-w", "%{exitcode} %{http_code} %{size_download} %{url}\\n"]
    for m in modes:
        args += ["-o", "/dev/null", url(m, proto == "http1.1" and random.random() < 0.5)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

def judge(line):
    code, status, size, u = line.split(" ", 3)
    mode = re.search(r'mode(?:=|%3D)(?:"|%22)([a-z0-9_]+)', u).group(1)
    want = MODES[mode][1]
    code, status, size = int(code), int(status), int(size)
    if want == "complete":
        good = code == 0 and status == 200 and size == SIZE
    elif want.startswith("status"):
        good = code == 0 and status == int(want.split()[1])
    else:  # broken: a 200 that curl sees cut (18 partial file, 56 recv error, 92/16 HTTP/2
        # stream error), or a 502 when the reset came before the headers reached the gateway
        good = (status == 200 and code != 0) or (code == 0 and status == 502)
    return mode, good, (code, status, size)

names = list(MODES); weights = [MODES[m][0] for m in MODES]
base_fds = fds()
rows, bad = [], []
seen = collections.Counter()
endings = collections.defaultdict(collections.Counter)  # (proto, mode) -> (status, curl exit)
for r in range(1, rounds + 1):
    started = time.time()
    # Clients that finish TLS and never send a byte: the gateway must hang up on them.
    silent = []
    for alpn in ["http/1.1", "h2"] * 4:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols([alpn])
        silent.append(ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))),
                                      server_hostname="127.0.0.1"))
    procs = [(p, batch(p, random.choices(names, weights, k=requests))) for p in ("http1.1", "http2")]
    for proto, p in procs:
        out, _ = p.communicate()
        for line in out.splitlines():
            mode, good, got = judge(line)
            seen[(proto, mode, "ok" if good else "BAD")] += 1
            endings[(proto, mode)][got[:2]] += 1
            if not good:
                bad.append((r, proto, mode, got))
    # Every client connection must close once curl has exited.
    deadline = time.time() + 10
    while conns(f"( sport = :{port} )") and time.time() < deadline:
        time.sleep(0.1)
    still_open = 0
    for sock in silent:
        sock.settimeout(max(0.1, started + 10 - time.time()))
        try:
            still_open += sock.recv(1) != b""
        except OSError as e:
            still_open += isinstance(e, socket.timeout)
        sock.close()
    if still_open:
        bad.append((r, "silent", still_open, "connections the gateway kept open"))
    rows.append((r, time.time() - started, conns(f"( sport = :{port} )"),
                 conns(f"( dport = :{up} )"), fds(), rss_kib()))

print(f"\nrounds: {rounds}, {2 * requests} requests each ({requests} HTTP/1.1 + {requests} HTTP/2), "
      f"{2 * parallel} at once; fds before traffic: {base_fds}\n")
print("| round | seconds | client conns open after | upstream conns (pooled/idle) | gateway fds | RSS KiB |")
print("|---:|---:|---:|---:|---:|---:|")
for r, secs, cc, uc, f, rss in rows:
    print(f"| {r} | {secs:.1f} | {cc} | {uc} | {f} | {rss} |")
print("\n| protocol | upstream | expected | clean | not clean | seen: status/curl exit x count |")
print("|---|---|---|---:|---:|---|")
for proto in ("http1.1", "http2"):
    for m in names:
        seen_as = ", ".join(f"{s}/{c} x{n}" for (c, s), n in sorted(endings[(proto, m)].items()))
        print(f"| {proto} | {m} | {MODES[m][1]} | {seen[(proto, m, 'ok')]} | {seen[(proto, m, 'BAD')]} | {seen_as} |")
failures = []
if bad:
    failures.append(f"{len(bad)} requests did not end cleanly, e.g. {bad[:5]}")
if any(cc for _, _, cc, _, _, _ in rows):
    failures.append("client connections stayed open after a round")
fd_first = rows[0][4]
if max(f for *_, f, _ in rows) > fd_first + 2 * parallel + 16 or rows[-1][4] > fd_first + 16:
    failures.append(f"file descriptors grew: {[row[4] for row in rows]}")
try:
    os.kill(int(gw), 0)
except OSError:
    failures.append("the gateway died")
if len(rows) > 2 and rows[-1][5] > 1.10 * rows[1][5]:
    failures.append(f"RSS grew more than 10 %: {rows[1][5]} -> {rows[-1][5]} KiB")
print()
if failures:
    print("FAIL: " + "; ".join(failures))
    sys.exit(1)
print("PASS")
PY
