#!/usr/bin/env python3
"""Driver of bench/openstack.sh: see that script for the knobs and what is measured."""
import datetime
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

E = os.environ
OUT = E["OUT_DIR"]
TCK = os.sysconf("SC_CLK_TCK")
USAGE = "GET /v2.1/os-simple-tenant-usage"
USAGE_ONE = "GET /v2.1/os-simple-tenant-usage/{tenant}"
SERVERS = "GET /v2.1/servers/detail"
PROJECTS = "GET /v3/projects"
procs = []  # every process started here, stopped by PID at exit


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def stop(p, grace=20):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup(*_):
    for p in procs:
        stop(p, 5)


signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(143)))
signal.signal(signal.SIGINT, lambda *a: (cleanup(), sys.exit(130)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# What Prometheus sends when it scrapes: OpenMetrics preferred, gzip. (Without it the exporter
# serves the classic format and, from then on, prepares classic and its gzip at every refresh,
# which a Prometheus-scraped exporter does not pay.)
SCRAPE_HEADERS = {"Accept-Encoding": "gzip",
                  "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}


def get(url, gz=False, timeout=60):
    req = urllib.request.Request(url, headers=SCRAPE_HEADERS if gz else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
        if r.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return r.status, body


def status(url):
    try:
        return get(url, timeout=5)[0]
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def proc(pid):
    """(CPU seconds, RSS kB, peak RSS kB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TCK
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                mem[line.split(":")[0]] = int(line.split()[1])
    return cpu, mem.get("VmRSS", 0), mem.get("VmHWM", 0)


# ---- the fake -------------------------------------------------------------------------------

def start_fake():
    cmd = [E["FAKE"], "--projects", E["PROJECTS"], "--servers", E["SERVERS"],
           "--live-fraction", E["LIVE_FRACTION"], "--history-days", E["HISTORY_DAYS"]]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(f"{OUT}/fake.err", "w"), text=True)
    procs.append(p)
    ready = json.loads(p.stdout.readline())
    log("fake:", ready)
    return p, ready


def fake_stats(base):
    return json.loads(get(f"{base}/_stats")[1])


def delta(a, b):
    """What the fake served between two statistics snapshots."""
    out = {"requests": b["requests"] - a["requests"], "bytes": b["bytes"] - a["bytes"],
           "fake_busy_s": b["busy_seconds"] - a["busy_seconds"], "by_endpoint": {}}
    for name, e in b["endpoints"].items():
        old = a["endpoints"].get(name, {"requests": 0, "bytes": 0, "busy_seconds": 0})
        if e["requests"] != old["requests"]:
            out["by_endpoint"][name] = {"requests": e["requests"] - old["requests"],
                                        "bytes": e["bytes"] - old["bytes"]}
    return out


def last_window(stats, endpoint=USAGE):
    ws = [w for w in stats["windows"] if w["endpoint"] == endpoint]
    return ws[-1] if ws else None


# ---- our exporter ---------------------------------------------------------------------------

def os_env(auth_url):
    env = dict(os.environ)
    env.update({"OS_AUTH_URL": auth_url, "OS_USERNAME": "admin", "OS_PASSWORD": "bench-only",
                "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
                "OS_REGION_NAME": "RegionOne", "OS_INTERFACE": "public"})
    env.pop("OS_CLOUD", None)
    return env


def self_metrics(port):
    text = get(f"http://127.0.0.1:{port}/metrics", gz=True)[1].decode()
    out = {}
    for line in text[max(text.find("\nsite_exporter_source_"), 0):].splitlines():
        if line.startswith("site_exporter_source_") and 'source="openstack"' in line:
            out[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    return out


def vcpu_hours(port):
    """(summed vCPU-hours, series, end of the window they cover) from one scrape."""
    text = get(f"http://127.0.0.1:{port}/metrics", gz=True)[1].decode()
    total, series, end = 0.0, 0, None
    for line in text.splitlines():
        if line.startswith("openstack_project_vcpu_seconds_total{"):
            total += float(line.rsplit(" ", 1)[1])
            series += 1
        elif line.startswith("site_exporter_openstack_usage_window_end_timestamp_seconds "):
            end = int(float(line.rsplit(" ", 1)[1]))
    return total / 3600.0, series, end


def disagreements(port):
    """site_exporter_openstack_reconcile_disagreements_total by kind."""
    text = get(f"http://127.0.0.1:{port}/metrics", gz=True)[1].decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("site_exporter_openstack_reconcile_disagreements_total{"):
            out[line.split('kind="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


INTERVAL_S = float(E["INTERVAL"].rstrip("s"))


def phase(name, fake_base, auth_url, usage_start, state_file, refreshes, incremental=True):
    port = free_port()
    cfg = f"{OUT}/{name}.yaml"
    with open(cfg, "w") as f:
        f.write(f"web:\n  listen_address: 127.0.0.1:{port}\nlog:\n  level: warn\nopenstack:\n"
                f"  usage_start: {usage_start}\n  interval: {E['INTERVAL']}\n  timeout: 30m\n"
                f"  incremental: {'true' if incremental else 'false'}\n"
                f"  reconcile_interval: {E['RECONCILE']}\n")
        # Memory only means no state file at all (the default would write data/...).
        f.write(f"  state_file: \"{state_file or ''}\"\n")
    s_prev = fake_stats(fake_base)
    t0 = time.time()
    p = subprocess.Popen([E["BIN"], "--config", cfg], env=os_env(auth_url),
                         stdout=subprocess.DEVNULL, stderr=open(f"{OUT}/{name}.log", "a"))
    procs.append(p)
    try:
        while status(f"http://127.0.0.1:{port}/-/ready") != 200:
            if p.poll() is not None or time.time() - t0 > 1800:
                raise SystemExit(f"{name}: exporter exited or never ready; see {OUT}/{name}.log")
            time.sleep(0.05)
        ttd = time.time() - t0
        records, cpu_prev, last_ts = [], 0.0, None
        while len(records) < refreshes:
            m = self_metrics(port)
            ts = m.get("site_exporter_source_last_success_timestamp_seconds")
            if ts is not None and ts != last_ts:
                s = fake_stats(fake_base)
                cpu, rss, hwm = proc(p.pid)
                rec = delta(s_prev, s)
                rec.update({"duration_s": m["site_exporter_source_refresh_duration_seconds"],
                            "errors": m.get("site_exporter_source_refresh_errors_total", 0),
                            "exporter_cpu_s": cpu - cpu_prev, "rss_kb": rss, "hwm_kb": hwm,
                            "window": last_window(s)})
                records.append(rec)
                s_prev, cpu_prev, last_ts = s, cpu, ts
                if len(records) == refreshes:
                    break
                # Each poll is a scrape of the whole exposition, which the exporter's CPU
                # figure would include: wait until shortly before the next refresh is due,
                # so a refresh sees about as many scrapes as from a Prometheus scraping at
                # the refresh interval (one or two), not ten.
                time.sleep(max(0.0, INTERVAL_S - 1.0))
            if p.poll() is not None:
                raise SystemExit(f"{name}: exporter exited; see {OUT}/{name}.log")
            time.sleep(0.25)
        # Does what the exporter accumulated equal the fake's total for the accounted window?
        # The window's end is the exporter's own (an incremental refresh asks Nova nothing).
        got, series, end = vcpu_hours(port)
        again = vcpu_hours(port)
        unchanged = again[2] == end
        start = f"{usage_start}T00:00:00"
        end_text = datetime.datetime.fromtimestamp(end, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        want = json.loads(get(f"{fake_base}/_totals?start={start}&end={end_text}")[1])
        check = {"exporter_vcpu_hours": got, "fake_vcpu_hours": want["vcpu_hours"], "series": series,
                 "window_end": end_text, "valid": unchanged,
                 "relative_difference": abs(got - want["vcpu_hours"]) / max(want["vcpu_hours"], 1e-9),
                 "disagreements": disagreements(port)}
        log(f"{name}: ready after {ttd:.2f}s; durations",
            [round(r["duration_s"], 2) for r in records], "check", check)
        return {"ttd_s": ttd, "records": records, "check": check}
    finally:
        stop(p)


# ---- the original exporter (peer) -----------------------------------------------------------

def peer(fake_base, auth_url, usage_start, elixir_id, refreshes, n_projects):
    base = E["ORIG_EXP_DIR"]
    python = f"{base}/venv/bin/python"
    if not os.path.exists(python):
        log("peer skipped: run ../shared/peers/original-exporter/setup.sh first")
        return None
    port = free_port()
    interval = int(E["INTERVAL"].rstrip("s"))
    env = os_env(auth_url)
    env["TZ"] = "UTC"
    s0 = fake_stats(fake_base)
    t0 = time.time()
    p = subprocess.Popen([python, "project_usage_exporter.py", "-s", usage_start, "-i", str(interval),
                          "-p", str(port), "--domain-id", elixir_id],
                         cwd=f"{base}/src", env=env, stdout=subprocess.DEVNULL,
                         stderr=open(f"{OUT}/peer.log", "w"))
    procs.append(p)
    records, s_prev, cpu_prev, first_data = [], s0, 0.0, None
    try:
        while len(records) < refreshes:
            time.sleep(1)
            if p.poll() is not None:
                raise SystemExit(f"peer exited; see {OUT}/peer.log")
            s = fake_stats(fake_base)
            one = s["endpoints"].get(USAGE_ONE, {"requests": 0})
            done = one["requests"] - s0["endpoints"].get(USAGE_ONE, {"requests": 0})["requests"]
            if done >= (len(records) + 1) * n_projects:
                cpu, rss, hwm = proc(p.pid)
                rec = delta(s_prev, s)
                rec.update({"duration_s": one["last_at"] - s["endpoints"][PROJECTS]["last_at"],
                            "exporter_cpu_s": cpu - cpu_prev, "rss_kb": rss, "hwm_kb": hwm})
                if first_data is None:
                    first_data = one["last_at"] - t0
                records.append(rec)
                s_prev, cpu_prev = s, cpu
                log("peer refresh", len(records), round(rec["duration_s"], 1), "s")
        # Its values against the fake's total up to its last request (each project was asked
        # at a slightly earlier moment, so the fake's total is a little larger).
        body = get(f"http://127.0.0.1:{port}/metrics", timeout=120)[1].decode()
        values = [float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                  if line.startswith("project_vcpu_usage{")]
        end = datetime.datetime.fromtimestamp(one["last_at"], datetime.timezone.utc)
        want = json.loads(get(f"{fake_base}/_totals?start={usage_start}T00:00:00"
                              f"&end={end.strftime('%Y-%m-%dT%H:%M:%S')}")[1])["vcpu_hours"]
        check = {"peer_vcpu_hours": sum(values), "fake_vcpu_hours": want,
                 "relative_difference": abs(sum(values) - want) / max(want, 1e-9)}
        log("peer check", check)
        return {"first_data_s": first_data, "records": records, "series": len(values), "check": check,
                "microversions": s["endpoints"].get(USAGE_ONE, {}).get("microversion")}
    finally:
        stop(p)


# ---- report ---------------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def row(label, recs, ttd=None):
    ep = lambda r, name, k: r["by_endpoint"].get(name, {}).get(k, 0)
    mb = 1e6
    return (f"| {label} | {'%.2f s' % ttd if ttd is not None else ''} "
            f"| {med([r['duration_s'] for r in recs]):.2f} s "
            f"| {med([r['requests'] for r in recs]):.0f} "
            f"| {med([r['bytes'] for r in recs]) / mb:.1f} MB "
            f"| {med([ep(r, USAGE, 'requests') for r in recs]):.0f} / {med([ep(r, USAGE, 'bytes') for r in recs]) / mb:.1f} MB "
            f"| {med([ep(r, SERVERS, 'requests') for r in recs]):.0f} / {med([ep(r, SERVERS, 'bytes') for r in recs]) / mb:.1f} MB "
            f"| {med([r['fake_busy_s'] for r in recs]):.2f} s "
            f"| {med([r['exporter_cpu_s'] for r in recs]):.2f} s "
            f"| {med([r['rss_kb'] for r in recs]) / 1024:.0f} / {max(r['hwm_kb'] for r in recs) / 1024:.0f} MiB |")


def machine():
    model = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout
    mem = subprocess.run("free -g | awk '/^Mem/{print $2}'", shell=True, capture_output=True, text=True).stdout
    return (f"{os.cpu_count()} cores ({model.split(':', 1)[-1].strip()}), {mem.strip()} GiB RAM, "
            f"load {os.getloadavg()[0]:.2f}")


def main():
    log("machine:", machine())
    fake, ready = start_fake()
    fake_base, auth_url = f"http://{ready['listen']}", ready["auth_url"]
    start_day = datetime.date.today() - datetime.timedelta(days=int(E["USAGE_START_DAYS"]))
    usage_start = start_day.isoformat()
    runs, inc = int(E["RUNS"]), int(E["INCREMENTAL"])
    results = {"machine": machine(), "fake": ready, "usage_start": usage_start, "runs": []}
    for i in range(runs):
        state = f"{OUT}/state-{i}.json"
        r = {"memory": phase(f"memory-{i}", fake_base, auth_url, usage_start, None, 1 + inc),
             "state": phase(f"state-{i}", fake_base, auth_url, usage_start, state, 1 + inc)}
        r["state_file_bytes"] = os.path.getsize(state)
        r["resume"] = phase(f"resume-{i}", fake_base, auth_url, usage_start, state, 1)
        r["full"] = phase(f"full-{i}", fake_base, auth_url, usage_start, None, 1 + int(E["FULL"]),
                          incremental=False)
        results["runs"].append(r)
        json.dump(results, open(f"{OUT}/results.json", "w"), indent=1)
    if E.get("PEER") == "1":
        results["peer"] = peer(fake_base, auth_url, usage_start, ready["domains"]["elixir"],
                               int(E["PEER_REFRESHES"]), ready["projects"])
    results["machine_after"] = machine()
    json.dump(results, open(f"{OUT}/results.json", "w"), indent=1)
    stop(fake)

    R = results["runs"]
    full_mem = [r["memory"]["records"][0] for r in R]
    full_state = [r["state"]["records"][0] for r in R]
    reconciling = lambda x: x["by_endpoint"].get(USAGE, {}).get("requests", 0) > 0
    later = lambda ph: [x for r in R for x in r[ph]["records"][1:]]
    inc_mem = [x for x in later("memory") if not reconciling(x)]
    inc_state = [x for x in later("state") if not reconciling(x)]
    rec_mem = [x for x in later("memory") if reconciling(x)]
    rec_state = [x for x in later("state") if reconciling(x)]
    every_full = later("full")
    resume = [r["resume"]["records"][0] for r in R]
    print(f"\nOpenStack source at scale: {ready['projects']} projects, {ready['servers']} servers "
          f"({ready['live_now']} existing at start), usage_start {usage_start}, interval {E['INTERVAL']}; "
          f"{runs} runs x {inc} incremental refreshes; medians")
    print(f"machine: {results['machine']} -> {results['machine_after']}\n")
    print("| refresh | time to data | refresh duration | requests | fetched | usage pages / bytes "
          "| servers pages / bytes | fake busy | exporter CPU | RSS after / peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(row("full window, memory only (first refresh)", full_mem, med([r["memory"]["ttd_s"] for r in R])))
    print(row("full window + state file (first refresh)", full_state, med([r["state"]["ttd_s"] for r in R])))
    print(row(f"incremental (changes-since), memory only [{len(inc_mem)}]", inc_mem))
    print(row(f"incremental (changes-since) + state file [{len(inc_state)}]", inc_state))
    if rec_mem:
        print(row(f"reconciliation, memory only [{len(rec_mem)}]", rec_mem))
    if rec_state:
        print(row(f"reconciliation + state file [{len(rec_state)}]", rec_state))
    print(row(f"every refresh full (incremental: false), memory only [{len(every_full)}]", every_full))
    print(row("restart on the state file (resume)", resume, med([r["resume"]["ttd_s"] for r in R])))
    ratio = lambda a, b, k: med([x[k] for x in a]) / max(med([x[k] for x in b]), 1e-9)
    for label, full, incr in (("memory only", full_mem, inc_mem), ("state file", full_state, inc_state),
                              ("every refresh full vs changes-since, memory only", every_full, inc_mem)):
        if not full or not incr:
            continue
        print(f"\nfull / incremental ({label}): duration {ratio(full, incr, 'duration_s'):.2f}x, "
              f"requests {ratio(full, incr, 'requests'):.2f}x, bytes {ratio(full, incr, 'bytes'):.2f}x, "
              f"exporter CPU {ratio(full, incr, 'exporter_cpu_s'):.2f}x")
    print(f"state file: {med([r['state_file_bytes'] for r in R]) / 1e6:.1f} MB")
    checks = [ph["check"] for r in R for ph in (r["memory"], r["state"], r["resume"], r["full"])]
    found = {}
    for c in checks:
        for k, v in c.get("disagreements", {}).items():
            found[k] = found.get(k, 0) + v
    print(f"reconciliation disagreements (all phases, by kind): {found}")
    valid = [c for c in checks if c["valid"]]
    worst = max((c["relative_difference"] for c in valid), default=float("nan"))
    print(f"check: exporter vCPU-hours vs the fake's own total for the same window: "
          f"{len(valid)} of {len(checks)} phases checked, largest relative difference {worst:.2e}")
    errors = sum(x.get("errors", 0) for r in R for ph in ("memory", "state", "resume", "full")
                 for x in r[ph]["records"][-1:])
    print(f"failed refreshes: {errors:.0f}")
    pr = results.get("peer")
    if pr:
        recs = pr["records"]
        print(f"\npeer: original exporter 3.0.0 against the same fake ({pr['series']} project_vcpu_usage "
              f"series; microversion headers sent: {pr['microversions'] or 'none (2.1)'}; its vCPU-hours vs "
              f"the fake's total: relative difference {pr['check']['relative_difference']:.2e})\n")
        print("| exporter | first data | refresh duration | requests | fetched | exporter CPU | RSS after / peak |")
        print("|---|---|---|---|---|---|---|")
        print(f"| original 3.0.0 (full window, one request per project) | {pr['first_data_s']:.1f} s "
              f"| {med([r['duration_s'] for r in recs]):.1f} s | {med([r['requests'] for r in recs]):.0f} "
              f"| {med([r['bytes'] for r in recs]) / 1e6:.1f} MB | {med([r['exporter_cpu_s'] for r in recs]):.1f} s "
              f"| {med([r['rss_kb'] for r in recs]) / 1024:.0f} / {max(r['hwm_kb'] for r in recs) / 1024:.0f} MiB |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup()
