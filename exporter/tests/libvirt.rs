//! The libvirt source against libvirt's test driver (no daemon), checked against what `virsh`
//! reports for the same URI.
//!
//! The test driver computes CPU times and I/O counters from the wall clock at each call, so
//! every counter is read by virsh before and after our refresh and ours must lie between the
//! two; values that do not move (memory, vCPU count, capacity, state) must be equal.
//!
//! The `daemon` module runs the same checks on a real libvirtd (with `LIBVIRTD_E2E=1`).

#![cfg(feature = "libvirt")]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use site_exporter::cli::Cli;
use site_exporter::config::{Config, FileConfig, MigrationEnv};
use site_exporter::settings::Schedule;
use site_exporter::snapshot::{Guest, GuestState, GuestsSnapshot, SourceData};
use site_exporter::source::Source;
use site_exporter::sources::libvirt::{params, LibvirtConfig, LibvirtSource};

#[path = "libvirt/daemon.rs"]
mod daemon;

fn fixture_uri() -> String {
    format!(
        "test://{}/tests/fixtures/libvirt-node.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn virsh(uri: &str, args: &[&str]) -> String {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .expect("virsh runs (install libvirt-clients)");
    assert!(
        out.status.success(),
        "virsh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("virsh prints UTF-8")
}

/// `Key:  value` lines of `dominfo` / `domblkinfo`.
fn colon_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `dev key value` lines of `domblkstat` / `domifstat`, or `key value` of `dommemstat`.
fn counters(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let (k, v) = match words.as_slice() {
                [_, k, v] | [k, v] => (k, v),
                _ => return None,
            };
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// First column of the rows of `domiflist`, or the Target column of disks in
/// `domblklist --details`.
fn table_column(text: &str, column: usize, keep: impl Fn(&[&str]) -> bool) -> Vec<String> {
    text.lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() > column && keep(w))
        .map(|w| w[column].to_string())
        .collect()
}

fn seconds(v: &str) -> f64 {
    v.trim()
        .trim_end_matches('s')
        .parse()
        .expect("a time in seconds")
}

/// Everything virsh says about one guest.
#[derive(Debug)]
struct Virsh {
    state: u64,
    info: BTreeMap<String, String>,
    disks: Vec<String>,
    nics: Vec<String>,
    block: BTreeMap<String, BTreeMap<String, u64>>,
    capacity: BTreeMap<String, u64>,
    net: BTreeMap<String, BTreeMap<String, u64>>,
    memory: BTreeMap<String, u64>,
    vcpu_times: Vec<f64>,
}

fn virsh_guests(uri: &str) -> BTreeMap<String, Virsh> {
    let raw = params::parse_virsh_raw(&virsh(uri, &["domstats", "--raw", "--nowait"]));
    let mut out = BTreeMap::new();
    for (name, params) in raw {
        let state = params
            .iter()
            .find(|(k, _)| k == "state.state")
            .and_then(|(_, v)| v.as_u64())
            .expect("domstats has state.state");
        let running = state == 1;
        let n = name.as_str();
        let disks = table_column(&virsh(uri, &["domblklist", n, "--details"]), 2, |w| {
            w[1] == "disk"
        });
        let nics = table_column(&virsh(uri, &["domiflist", n]), 0, |_| true);
        let mut v = Virsh {
            state,
            info: colon_fields(&virsh(uri, &["dominfo", n])),
            block: BTreeMap::new(),
            capacity: BTreeMap::new(),
            net: BTreeMap::new(),
            memory: BTreeMap::new(),
            vcpu_times: Vec::new(),
            disks: disks.clone(),
            nics: nics.clone(),
        };
        if running {
            for d in &disks {
                v.block
                    .insert(d.clone(), counters(&virsh(uri, &["domblkstat", n, d])));
                let info = colon_fields(&virsh(uri, &["domblkinfo", n, d]));
                v.capacity
                    .insert(d.clone(), info["Capacity"].parse().expect("capacity"));
            }
            for i in &nics {
                v.net
                    .insert(i.clone(), counters(&virsh(uri, &["domifstat", n, i])));
            }
            v.memory = counters(&virsh(uri, &["dommemstat", n]));
            v.vcpu_times = virsh(uri, &["vcpuinfo", n])
                .lines()
                .filter_map(|l| l.strip_prefix("CPU time:"))
                .map(seconds)
                .collect();
        }
        out.insert(name, v);
    }
    out
}

async fn collect(uri: &str) -> GuestsSnapshot {
    let config = LibvirtConfig {
        uri: uri.to_string(),
        schedule: Schedule {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(15),
        },
        event_grace: Duration::from_secs(3600),
    };
    let mut source = LibvirtSource::new(&config);
    match source.collect(SystemTime::now()).await {
        Ok(SourceData::Guests(g)) => g,
        other => panic!("expected guests, got {other:?}"),
    }
}

/// `lo <= got <= hi` (with `slack` for values virsh rounds).
fn between(what: &str, lo: f64, got: f64, hi: f64, slack: f64) {
    assert!(
        lo - slack <= got && got <= hi + slack,
        "{what}: ours {got} is not between virsh's {lo} (before) and {hi} (after)"
    );
}

fn guest<'a>(snapshot: &'a GuestsSnapshot, name: &str) -> &'a Guest {
    snapshot
        .guests
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("guest {name} missing"))
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_match_virsh() {
    check_guests_match_virsh(&fixture_uri()).await;
}

/// The fixture's guests as the source reads them from `uri` equal what virsh reads there.
async fn check_guests_match_virsh(uri: &str) {
    let before = virsh_guests(uri);
    let ours = collect(uri).await;
    let after = virsh_guests(uri);

    assert!(ours.up);
    let names: BTreeSet<&str> = ours.guests.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, before.keys().map(String::as_str).collect());
    // The fixture covers what the test is about; a fixture edit that loses it fails here.
    let states: BTreeSet<u64> = before.values().map(|v| v.state).collect();
    assert_eq!(
        states,
        BTreeSet::from([1, 3, 5]),
        "running, paused and shut off"
    );

    for (name, b) in &before {
        let a = &after[name];
        let g = guest(&ours, name);
        let ctx = |what: &str| format!("{name} {what}");
        assert_eq!(u64::from(g.state.code()), b.state, "{}", ctx("state"));
        assert_eq!(g.uuid, b.info["UUID"], "{}", ctx("uuid"));
        let kib = |v: &Virsh, k: &str| -> u64 {
            v.info[k].trim_end_matches(" KiB").parse::<u64>().expect(k) * 1024
        };
        assert_eq!(
            g.info.maximum_memory_bytes,
            kib(b, "Max memory"),
            "{}",
            ctx("max memory")
        );
        assert_eq!(
            g.info.memory_usage_bytes,
            kib(b, "Used memory"),
            "{}",
            ctx("used memory")
        );
        assert_eq!(
            g.info.virtual_cpus.to_string(),
            b.info["CPU(s)"],
            "{}",
            ctx("vcpus")
        );
        between(
            &ctx("cpu time"),
            seconds(&b.info["CPU time"]),
            g.info.cpu_time_seconds,
            seconds(&a.info["CPU time"]),
            0.1,
        );

        if b.state != 1 {
            assert!(
                g.blocks.is_empty() && g.interfaces.is_empty() && g.vcpus.is_empty(),
                "{}",
                ctx("not running: no I/O counters")
            );
            assert_eq!(g.memory, None, "{}", ctx("not running: no memory stats"));
            continue;
        }

        let disks: Vec<&str> = g.blocks.iter().map(|d| d.target_device.as_str()).collect();
        assert_eq!(disks, b.disks, "{}", ctx("disks"));
        for d in &g.blocks {
            let (lo, hi) = (&b.block[&d.target_device], &a.block[&d.target_device]);
            let check = |key: &str, got: u64| {
                between(&ctx(key), lo[key] as f64, got as f64, hi[key] as f64, 0.0)
            };
            check("rd_req", d.read_requests);
            check("rd_bytes", d.read_bytes);
            check("wr_req", d.write_requests);
            check("wr_bytes", d.write_bytes);
            assert_eq!(
                d.capacity_bytes,
                b.capacity[&d.target_device],
                "{}",
                ctx("capacity")
            );
        }

        let nics: Vec<&str> = g
            .interfaces
            .iter()
            .map(|i| i.target_device.as_str())
            .collect();
        assert_eq!(nics, b.nics, "{}", ctx("nics"));
        for i in &g.interfaces {
            let (lo, hi) = (&b.net[&i.target_device], &a.net[&i.target_device]);
            let check = |key: &str, got: u64| {
                between(&ctx(key), lo[key] as f64, got as f64, hi[key] as f64, 0.0)
            };
            check("rx_bytes", i.receive_bytes);
            check("rx_packets", i.receive_packets);
            check("rx_errs", i.receive_errors);
            check("rx_drop", i.receive_drops);
            check("tx_bytes", i.transmit_bytes);
            check("tx_packets", i.transmit_packets);
            check("tx_errs", i.transmit_errors);
            check("tx_drop", i.transmit_drops);
        }

        let kib_of = |k: &str| b.memory.get(k).map(|v| v * 1024);
        let m = g.memory.unwrap_or_default();
        assert_eq!(
            m.actual_balloon_bytes,
            kib_of("actual"),
            "{}",
            ctx("balloon")
        );
        assert_eq!(
            m.available_bytes,
            kib_of("available"),
            "{}",
            ctx("available")
        );
        assert_eq!(m.unused_bytes, kib_of("unused"), "{}", ctx("unused"));
        assert_eq!(m.usable_bytes, kib_of("usable"), "{}", ctx("usable"));
        assert_eq!(m.rss_bytes, kib_of("rss"), "{}", ctx("rss"));

        assert_eq!(g.vcpus.len(), b.vcpu_times.len(), "{}", ctx("vcpu count"));
        for (k, v) in g.vcpus.iter().enumerate() {
            assert_eq!(v.vcpu as usize, k);
            between(
                &ctx("vcpu time"),
                b.vcpu_times[k],
                v.time_seconds,
                a.vcpu_times[k],
                0.1,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nova_metadata_and_states() {
    check_nova_metadata_and_states(&collect(&fixture_uri()).await);
}

/// The fixture's Nova metadata (1.1, 1.0, none) and states in a snapshot of its guests.
fn check_nova_metadata_and_states(ours: &GuestsSnapshot) {
    let web = guest(ours, "instance-00000001");
    let nova = web.openstack.as_ref().expect("nova 1.1 metadata");
    assert_eq!(nova.instance_id, web.uuid);
    assert_eq!(
        (
            nova.instance_name.as_str(),
            nova.flavor_name.as_str(),
            nova.project_name.as_str(),
            nova.user_name.as_str()
        ),
        ("web-1", "m1.medium", "genomics", "alice")
    );
    assert_eq!(nova.project_id, "9e8d7c6b5a4f4e3d8c2b1a0f9e8d7c61");
    assert_eq!(nova.user_id, "0f3b8a2f6c9d4b1e8a7f6e5d4c3b2a11");

    let old = guest(ours, "instance-00000002");
    assert_eq!(old.state, GuestState::Paused);
    let nova = old.openstack.as_ref().expect("nova 1.0 metadata");
    assert_eq!(nova.instance_name, "legacy & old");

    let off = guest(ours, "instance-00000003");
    assert_eq!(off.state, GuestState::Shutoff);
    assert_eq!(
        off.openstack.as_ref().map(|n| n.flavor_name.as_str()),
        Some("m1.large")
    );

    assert_eq!(guest(ours, "plain-guest").openstack, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_node_file_is_libvirt_down_not_an_error() {
    let ours = collect("test:///nonexistent/site-exporter-node.xml").await;
    assert_eq!(
        ours,
        GuestsSnapshot {
            up: false,
            ..GuestsSnapshot::default()
        }
    );
}

/// GET `path` over HTTP/1.1 with `Connection: close`: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The exporter with `--libvirt --libvirt.uri uri`, served in this runtime on 127.0.0.1.
struct Served {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), site_exporter::StartError>>,
}

impl Served {
    /// Serves with the libvirt source refreshed every `interval` (the default without one).
    async fn start(uri: &str, interval: Option<Duration>) -> Self {
        let cli = Cli {
            libvirt: true,
            libvirt_uri: Some(uri.to_string()),
            libvirt_interval: interval.map(Into::into),
            ..Cli::default()
        };
        let config = Config::merge(&cli, FileConfig::default(), &MigrationEnv::default())
            .expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(site_exporter::run(
            config,
            listener,
            async {
                let _ = stopped.await;
            },
            tokio::runtime::Handle::current(),
        ));
        Self { addr, stop, server }
    }

    /// Scrapes until the body has every line of `want` (polling, 30 s at most).
    async fn until(&self, want: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = get(self.addr, "/metrics").await;
            assert_eq!(status, 200, "the scrape succeeds");
            if want.iter().all(|w| body.contains(w)) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {want:?} within 30 s:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Serves the exporter with `--libvirt --libvirt.uri uri` until the body has `want`.
async fn scrape_until(uri: &str, want: &str) -> String {
    let served = Served::start(uri, None).await;
    let body = served.until(&[want]).await;
    served.stop().await;
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_uri_scrapes_as_libvirt_up_0() {
    let body = scrape_until("test:///nonexistent/node.xml", "\nlibvirt_up ").await;
    assert!(body.contains("\nlibvirt_up 0\n"), "{body}");
    assert!(body.contains("\nlibvirt_domains 0\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exporter_serves_every_guest() {
    check_the_exporter_serves_every_guest(&fixture_uri()).await;
}

/// The exporter on `uri` serves the fixture's four guests.
async fn check_the_exporter_serves_every_guest(uri: &str) {
    let body = scrape_until(uri, "\nlibvirt_up ").await;
    assert!(body.contains("\nlibvirt_up 1\n"), "{body}");
    assert!(body.contains("\nlibvirt_domains 4\n"), "{body}");
    assert!(
        body.contains("site_exporter_source_up{source=\"libvirt\"} 1"),
        "{body}"
    );
    for name in [
        "instance-00000001",
        "instance-00000002",
        "instance-00000003",
        "plain-guest",
    ] {
        assert!(
            body.contains(&format!("libvirt_domain_state_code{{domain=\"{name}\"}}")),
            "{name} missing:\n{body}"
        );
    }
}

/// Family names and the label names of their samples, from an OpenMetrics fragment.
fn shape(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels) = match line.split_once('{') {
            Some((n, rest)) => (n, rest.split_once('}').map_or("", |(l, _)| l)),
            None => (line.split_whitespace().next().unwrap_or(""), ""),
        };
        let keys = out.entry(name.to_string()).or_default();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, _)) = pair.split_once('=') {
                keys.insert(k.trim_start_matches(',').to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dummy_guests_and_libvirt_guests_have_the_same_families_and_labels() {
    use site_exporter::sources::dummy::{CloudSpec, DummyConfig, DummySource};
    let ours = collect(&fixture_uri()).await;
    let now = SystemTime::now();
    let dummy = DummySource::new(
        &DummyConfig {
            cloud: CloudSpec::BuiltIn,
            guests: None,
            usage_start: None,
            usage_start_url: None,
            schedule: Schedule {
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(15),
            },
        },
        Default::default(),
        site_exporter::weights::WeightsInput::None,
        now,
    )
    .expect("the built-in dummy cloud loads");
    let SourceData::Cloud { guests, .. } = dummy.snapshot(now) else {
        panic!("the dummy source produces a cloud");
    };
    let libvirt = shape(&site_exporter::render::guests(Arc::new(ours)));
    let dummy = shape(&site_exporter::render::guests(Arc::new(guests)));
    assert!(
        libvirt.len() > 20,
        "libvirt renders most families: {libvirt:?}"
    );
    assert_eq!(dummy, libvirt);
}

/// A libvirt "daemon" that accepts connections and never answers: every call on it hangs.
struct Hanging {
    dir: tempfile::TempDir,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Hanging {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("libvirt.sock")).expect("bind");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(conn);
            }
        });
        Self { dir, accepted }
    }

    fn uri(&self) -> String {
        format!(
            "qemu+unix:///system?socket={}",
            self.dir.path().join("libvirt.sock").display()
        )
    }
}

/// Runs under the default event loop the source registers, as in production.
#[test]
fn a_hanging_libvirt_fails_refreshes_without_piling_up_calls_and_shutdown_still_works() {
    let daemon = Hanging::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_site-exporter"))
        .args([
            "--libvirt",
            "--libvirt.uri",
            &daemon.uri(),
            "--libvirt.interval",
            "1s",
        ])
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the exporter starts");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let errors = "site_exporter_source_refresh_errors_total{source=\"libvirt\"} ";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let body = runtime.block_on(async {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => Some(get(addr, "/metrics").await.1),
                Err(_) => None,
            }
        });
        let failed = body.as_deref().and_then(|b| {
            b.lines()
                .find_map(|l| l.strip_prefix(errors))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        if let (Some(body), Some(n)) = (&body, failed) {
            if n >= 3 {
                break body.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no three failed refreshes within 30 s: {body:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        body.contains("site_exporter_source_up{source=\"libvirt\"} 0"),
        "{body}"
    );
    assert_eq!(
        daemon.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one stuck call, no second connection while it hangs"
    );
    // All of this under libvirt's default event loop (and so keepalive), on its own thread.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .expect("the exporter's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    assert!(
        threads.iter().any(|t| t == "libvirt-events"),
        "no event loop thread: {threads:?}"
    );

    // The shell's builtin: minimal images may have no kill binary.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .expect("sh runs");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the exporter did not exit within 20 s of SIGTERM with a libvirt call stuck");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
}
