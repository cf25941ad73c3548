#!/usr/bin/env bash
# site-exporter fault soak: the exporter (--openstack, with a state file, a 1 s interval)
# against exporter/examples/fake_openstack serving a generated cloud, with faults injected at
# random by the fake (`--fault-rate`, every kind of exporter/examples/fake_openstack/faults.rs:
# 5xx; 429 with Retry-After; connection resets; bodies cut mid-transfer; truncated and
# malformed JSON; answers slower than the request timeout; every token expiring in the middle
# of a refresh; Keystone down for a while), and SIGKILL of the exporter at random moments and
# while it writes its state (the script waits for the state's append log `<state>.log` or a
# compaction's `<state>.tmp` to change, then kills), each followed by a restart on the same
# state file. /metrics is scraped throughout.
# Loopback only; every wait has a deadline; processes are stopped by PID.
#
# Pass when:
# - no scrape shows an `openstack_project_*_total` counter or a legacy gauge
#   (`project_vcpu_usage`, `project_mb_usage`) lower than the scrape before of the same series,
#   across restarts too;
# - at the end (faults off, a few clean refreshes), every project's four exported totals equal
#   the fake's own for [usage_start, window_end) to 1e-9 relative, the window being the one the
#   same scrape exports (`site_exporter_openstack_usage_start_timestamp_seconds{origin=
#   "accounting"}`, `site_exporter_openstack_usage_window_end_timestamp_seconds`);
# - RSS over the last 100 refreshes is at most 10 % above RSS over the first 100 (fewer when
#   the run is shorter: a third of the refreshes each), RSS over a window being the highest
#   sampled at its refreshes: a process's RSS climbs over its first refreshes while the
#   allocator warms up, which a mean would count as growth; a leak raises the peak. The first
#   KILL_AFTER refreshes run in one process, so the first window is not a mix of fresh ones;
# - every restart after a kill resumes the state (none is ever set aside), the exporter never
#   panics and never exits by itself.
#
#   REFRESHES (1000)       successful refreshes to observe
#   SOAK_SECONDS           stop after this many seconds instead, if sooner (the short version)
#   PROJECTS (1000) SERVERS (20000) SEED (1)   the fake's cloud
#   FAULT_RATE (0.03)      share of the fake's API answers that are faults
#   REFRESH_TIMEOUT (5s)   the exporter's `timeout` of one refresh (request timeout: 1 s)
#   KILL_MIN (20) KILL_MAX (60)   refreshes between two kills, from KILL_AFTER (100) refreshes
#                          on, until 60 % of the run
#   PROFILE (release)      which build to use (built first); BIN_GIVEN=1 uses BIN and FAKE as
#                          they are (./run-tests.sh: the debug build its tests made)
#   KEEP                   keep the work directory (logs, state file)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
BIN=${BIN:-target/$PROFILE/site-exporter}
FAKE=${FAKE:-target/$PROFILE/examples/fake_openstack}
for t in python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
if [ -z "${BIN_GIVEN:-}" ]; then
  flag=(); [ "$PROFILE" = release ] && flag=(--release)
  cargo build "${flag[@]}" -p site-exporter --bin site-exporter --example fake_openstack >&2
fi
WORK=$(mktemp -d /tmp/site-exporter-soak.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
[ -z "${KEEP:-}" ] || echo "soak: work directory $WORK" >&2
export BIN FAKE WORK
exec python3 - <<'PY'
import atexit, datetime, json, os, random, select, signal, socket, subprocess, sys, time
import urllib.error, urllib.request

E = os.environ
BIN, FAKE, WORK = E["BIN"], E["FAKE"], E["WORK"]
REFRESHES = int(E.get("REFRESHES", "1000"))
SOAK_SECONDS = float(E.get("SOAK_SECONDS") or 0)
PROJECTS, SERVERS, SEED = E.get("PROJECTS", "1000"), E.get("SERVERS", "20000"), E.get("SEED", "1")
FAULT_RATE = E.get("FAULT_RATE", "0.03")
REFRESH_TIMEOUT = E.get("REFRESH_TIMEOUT", "5s")
KILL_MIN, KILL_MAX = int(E.get("KILL_MIN", "20")), int(E.get("KILL_MAX", "60"))
KILL_AFTER = int(E.get("KILL_AFTER", "100"))
STATE = f"{WORK}/state.json"
TMP = STATE + ".tmp"
LOG = STATE + ".log"
CHECKED_LEGACY = ("project_vcpu_usage", "project_mb_usage")
TOTALS = ("vcpu_seconds", "memory_byte_seconds", "disk_byte_seconds", "instance_seconds")
random.seed(int(SEED))
procs = []


def log(*a):
    print(time.strftime("%H:%M:%S"), "soak:", *a, file=sys.stderr, flush=True)


def cleanup(*_):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


# Also when the script itself fails (an exception): no fake or exporter is left running.
atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(143)))
signal.signal(signal.SIGINT, lambda *a: (cleanup(), sys.exit(130)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url, method="GET", timeout=10):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


def wait_port(port, p, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if p.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS")).split()[1])
    except (OSError, StopIteration):
        return None


# ---- the fake ----------------------------------------------------------------------------------
started = time.time()
fake = subprocess.Popen([FAKE, "--projects", PROJECTS, "--servers", SERVERS, "--seed", SEED,
                         "--fault-rate", FAULT_RATE, "--fault-slow-seconds", "2.5",
                         "--churn-window", "1h"],
                        stdout=subprocess.PIPE, stderr=open(f"{WORK}/fake.log", "w"), text=True)
procs.append(fake)
if not select.select([fake.stdout], [], [], 300)[0]:
    sys.exit("soak: the fake did not start within 300 s")
ready = json.loads(fake.stdout.readline())
FAKE_BASE = f"http://{ready['listen']}"
log(f"fake: {ready['projects']} projects, {ready['servers']} servers ({ready['live_now']} live), "
    f"faults on {float(FAULT_RATE):.0%} of answers")
usage_start = (datetime.date.today() - datetime.timedelta(days=365)).isoformat()

# ---- the exporter ------------------------------------------------------------------------------
PORT = free_port()
with open(f"{WORK}/exporter.yaml", "w") as f:
    f.write(f"web:\n  listen_address: 127.0.0.1:{PORT}\nlog:\n  level: warn\nopenstack:\n"
            f"  usage_start: {usage_start}\n  interval: 1s\n  timeout: {REFRESH_TIMEOUT}\n"
            f"  request_timeout: 1s\n  retries: 3\n  state_file: {STATE}\n")
env = dict(os.environ)
env.update({"OS_AUTH_URL": ready["auth_url"], "OS_USERNAME": "admin", "OS_PASSWORD": "soak-only",
            "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
            "OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public"})
env.pop("OS_CLOUD", None)
exporter_log = open(f"{WORK}/exporter.log", "a")


def start_exporter():
    p = subprocess.Popen([BIN, "--config", f"{WORK}/exporter.yaml"], env=env,
                         stdout=subprocess.DEVNULL, stderr=exporter_log)
    procs.append(p)
    if not wait_port(PORT, p):
        sys.exit(f"soak: the exporter did not start; see {WORK}/exporter.log")
    return p


def scrape():
    """Checked series -> value, and the openstack source's self-metrics; None when unreachable."""
    try:
        text = http(f"http://127.0.0.1:{PORT}/metrics", timeout=10)
    except (OSError, urllib.error.URLError):
        return None
    checked, own = {}, {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        name = key.split("{", 1)[0]
        if (name.startswith("openstack_project_") and name.endswith("_total")) or name in CHECKED_LEGACY:
            checked[key] = float(value)
        elif name.startswith("site_exporter_source_") and 'source="openstack"' in key:
            own[name] = float(value)
        elif name == "site_exporter_openstack_usage_window_end_timestamp_seconds":
            own["window_end"] = float(value)
        elif key == 'site_exporter_openstack_usage_start_timestamp_seconds{origin="accounting"}':
            own["usage_start"] = float(value)
    return checked, own


# ---- the soak ----------------------------------------------------------------------------------
last = {}            # series -> last value seen, across restarts
violations = []      # (scrape, series, before, after)
scrapes = unreachable = refreshes = 0
rss = []             # RSS at each counted refresh
kills = {"random": 0, "state write": 0}
killed_mid_write = 0  # kills that left <state>.tmp behind: a compaction had begun, its rename not
exited = []
incarnation_refreshes = [0]
p = start_exporter()
last_ts = None
next_kill = KILL_AFTER + random.randint(0, KILL_MIN)
kill_mode = 0
deadline = started + (SOAK_SECONDS * 2 + 300 if SOAK_SECONDS else REFRESHES * 10 + 600)


def progress():
    done = refreshes / REFRESHES
    if SOAK_SECONDS:
        done = max(done, (time.time() - started) / SOAK_SECONDS)
    return done


def kill(mode):
    """SIGKILL now (after a random moment), or as soon as a state write has begun (the append
    log or a compaction's temporary file changed)."""
    global killed_mid_write

    def stamps():
        out = []
        for path in (LOG, TMP):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                out.append(None)
        return out

    if mode == "state write":
        before = stamps()
        until = time.time() + 15
        while time.time() < until and stamps() == before:
            time.sleep(0.0005)
    else:
        time.sleep(random.uniform(0, 1.5))
    p.kill()
    p.wait()
    kills[mode] += 1
    killed_mid_write += mode == "state write" and os.path.exists(TMP)


while progress() < 1:
    if time.time() > deadline:
        break
    if p.poll() is not None:
        exited.append(p.returncode)
        log(f"the exporter exited by itself ({p.returncode}); restarting")
        p, last_ts = start_exporter(), None
        incarnation_refreshes.append(0)
    got = scrape()
    if got is None:
        unreachable += 1
        time.sleep(0.1)
        continue
    scrapes += 1
    checked, own = got
    for key, value in checked.items():
        before = last.get(key)
        if before is not None and value < before:
            violations.append((scrapes, key, before, value))
        last[key] = value
    ts = own.get("site_exporter_source_last_success_timestamp_seconds")
    if ts and ts != last_ts:
        last_ts = ts
        refreshes += 1
        incarnation_refreshes[-1] += 1
        rss.append(rss_kib(p.pid))
        with open(f"{WORK}/refreshes.csv", "a") as f:
            f.write(f"{refreshes},{len(incarnation_refreshes)},{ts},{rss[-1]}\n")
        if refreshes % 50 == 0:
            log(f"{refreshes} refreshes, {sum(kills.values())} kills, "
                f"{len(violations)} decreases")
        if refreshes >= next_kill and progress() < 0.6:
            mode = ("random", "state write")[kill_mode % 2]
            kill_mode += 1
            kill(mode)
            p, last_ts = start_exporter(), None
            incarnation_refreshes.append(0)
            next_kill = refreshes + random.randint(KILL_MIN, KILL_MAX)
    time.sleep(0.25)
soak_seconds = time.time() - started

# ---- the end: faults off, a few clean refreshes, then the totals -------------------------------
injected = json.loads(http(f"{FAKE_BASE}/_faults", "POST"))["injected"]
http(f"{FAKE_BASE}/_faults?rate=0", "POST")
clean, until = 0, time.time() + 120
while clean < 3 and time.time() < until:
    got = scrape()
    if got:
        ts = got[1].get("site_exporter_source_last_success_timestamp_seconds")
        if ts and ts != last_ts:
            clean, last_ts = clean + 1, ts
        for key, value in got[0].items():
            if last.get(key) is not None and value < last[key]:
                violations.append(("end", key, last[key], value))
            last[key] = value
    time.sleep(0.2)
# The totals and the window they cover, from one scrape (one published refresh).
exported = state = None
for _ in range(50):
    got = scrape()
    if got is None or "window_end" not in got[1] or "usage_start" not in got[1]:
        time.sleep(0.2)
        continue
    exported = {}
    for key, value in got[0].items():
        name = key.split("{", 1)[0]
        for t in TOTALS:
            if name == f"openstack_project_{t}_total":
                pid = key.split('project_id="', 1)[1].split('"', 1)[0]
                exported.setdefault(pid, {})[t] = value
    state = {"usage_start": got[1]["usage_start"], "window_end": got[1]["window_end"]}
    break
fmt = lambda s: datetime.datetime.fromtimestamp(s, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
max_rel, worst, missing = 0.0, None, []
if state:
    want = json.loads(http(f"{FAKE_BASE}/_totals?start={fmt(state['usage_start'])}"
                           f"&end={fmt(state['window_end'])}&projects=1", timeout=120))["projects"]
    missing = sorted(set(want) - set(exported))
    for pid, got_t in exported.items():
        for t in TOTALS:
            w, g = want.get(pid, {}).get(t, 0.0), got_t.get(t, 0.0)
            rel = abs(g - w) / abs(w) if w else abs(g)
            if rel > max_rel:
                max_rel, worst = rel, (pid, t, g, w)
log_lines = open(f"{WORK}/exporter.log", errors="replace").read().splitlines()
panics = sum(1 for line in log_lines if "panic" in line)
failed = sum(1 for line in log_lines if "refresh failed" in line or "refresh timed out" in line)
set_aside = [n for n in os.listdir(WORK) if ".set-aside-" in n]
exporter_pid = p.pid
p.terminate()
try:
    p.wait(20)
except subprocess.TimeoutExpired:
    p.kill()
cleanup()

# ---- report ------------------------------------------------------------------------------------
n = max(1, min(100, len(rss) // 3))
samples = [r for r in rss if r]
mean = lambda xs: sum(xs) / max(1, len(xs))
rss_first, rss_last = max(samples[:n], default=0), max(samples[-n:], default=0)
final = [r for r in rss[len(rss) - incarnation_refreshes[-1]:] if r]
m = max(1, min(100, len(final) // 3))
fault_rows = ", ".join(f"{k} {v}" for k, v in sorted(injected.items()))
print(f"\nsoak: {PROJECTS} projects, {SERVERS} servers, interval 1 s, request timeout 1 s, "
      f"refresh timeout {REFRESH_TIMEOUT}, faults on {float(FAULT_RATE):.0%} of answers, "
      f"{soak_seconds:.0f} s\n")
print("| what | value |")
print("|---|---|")
print(f"| successful refreshes | {refreshes} (+{clean} clean at the end) |")
print(f"| failed refreshes (the exporter's log) | {failed} |")
print(f"| scrapes checked (unanswered while restarting) | {scrapes} ({unreachable}) |")
print(f"| series checked | {len(last)} |")
print(f"| SIGKILL + restart: at a random moment / while writing the state | {kills['random']} / {kills['state write']} ({killed_mid_write} left a compaction's `.tmp` behind) |")
print(f"| refreshes per exporter process (min / max) | {min(incarnation_refreshes)} / {max(incarnation_refreshes)} |")
print(f"| faults injected by the fake | {fault_rows} |")
print(f"| RSS over the first / last {n} refreshes: highest | {rss_first / 1024:.1f} / {rss_last / 1024:.1f} MiB |")
print(f"| RSS over the first / last {n} refreshes: mean | {mean(samples[:n]) / 1024:.1f} / {mean(samples[-n:]) / 1024:.1f} MiB |")
print(f"| RSS of the last process ({len(final)} refreshes), first / last {m}: highest | {max(final[:m], default=0) / 1024:.1f} / {max(final[-m:], default=0) / 1024:.1f} MiB |")
print(f"| window checked | {fmt(state['usage_start']) if state else '?'} .. {fmt(state['window_end']) if state else '?'} |")
checks = [
    ("no counter or legacy gauge ever lower than the scrape before", not violations,
     f"{len(violations)} decreases" + (f", e.g. {violations[:3]}" if violations else "")),
    ("the scrape exports the window its totals cover", state is not None, "yes" if state else "never"),
    ("every project's totals = the fake's own (1e-9 relative)",
     state is not None and max_rel <= 1e-9 and not missing,
     f"max relative difference {max_rel:.2e}" + (f" at {worst}" if max_rel > 1e-9 else "")
     + (f"; {len(missing)} projects missing" if missing else "")),
    (f"RSS (highest) over the last {n} refreshes ≤ 1.10 × over the first {n}", rss_first > 0 and rss_last <= 1.10 * rss_first,
     f"{rss_last / max(rss_first, 1):.3f}×"),
    ("every restart resumed the state; none set aside", not set_aside,
     f"{len(set_aside)} set aside"),
    ("no panic, never exited by itself", not panics and not exited,
     f"{panics} panic lines, {len(exited)} exits"),
    (f"enough refreshes ({'SOAK_SECONDS' if SOAK_SECONDS else REFRESHES})",
     progress() >= 1 and refreshes > 0, f"{refreshes}"),
]
print("\n| criterion | result | value |")
print("|---|---|---|")
for name, ok, value in checks:
    print(f"| {name} | {'pass' if ok else '**FAIL**'} | {value} |")
failures = [name for name, ok, _ in checks if not ok]
print()
if failures:
    print(f"FAIL: {'; '.join(failures)} (logs: {WORK}, kept only with KEEP=1)")
    sys.exit(1)
print("PASS")
PY
