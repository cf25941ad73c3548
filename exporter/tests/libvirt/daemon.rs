//! The same checks on a real libvirtd: the test driver's shared instance, reached through the
//! remote protocol production's `qemu:///system` uses, read through the read-only socket.
//!
//! Runs only with `LIBVIRTD_E2E=1` (`./run-tests.sh` sets it as root, starting a private
//! daemon with `tests/libvirtd.sh` when none runs); otherwise each test prints that it was
//! skipped. `LIBVIRTD_E2E_SOCKET_DIR` is the daemon's socket directory (default
//! `/run/libvirt`). The restart tests stop and start the daemon and run only with
//! `LIBVIRTD_E2E_RESTART=1`, which `run-tests.sh` sets when it started the daemon itself.
//!
//! The daemon is shared, so its tests take one lock and each starts from the fixture: every
//! domain is removed, the fixture's domains are defined with `virsh define` and brought to
//! their `<test:runstate>`. The test driver keeps its state only while a connection is open,
//! so a [`Daemon`] holds one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use site_exporter::sources::libvirt::{Blocking, Host};
use virt::connect::Connect;

use super::*;

#[path = "daemon_events.rs"]
mod events;

/// One daemon test at a time: they share the daemon's one test instance.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The fixture's domain names, for the checks that know them.
const FIXTURE: [&str; 4] = [
    "instance-00000001",
    "instance-00000002",
    "instance-00000003",
    "plain-guest",
];

/// The real daemon, loaded with the fixture, for one test.
struct Daemon {
    dir: PathBuf,
    /// Keeps the test instance (and what was defined in it) alive.
    hold: Option<Connect>,
    /// Stopped by this test and not started again (yet).
    stopped: bool,
    _one: MutexGuard<'static, ()>,
}

impl Drop for Daemon {
    /// A test that failed while the daemon was stopped starts it again for the next tests.
    fn drop(&mut self) {
        if self.stopped {
            if let Err(e) = self.control("start") {
                skipped("the next real-libvirtd tests", &e);
            }
        }
    }
}

impl Daemon {
    /// The daemon with the fixture loaded, or `None` (printed) when real-daemon tests are off.
    fn get(test: &str) -> Option<Self> {
        if std::env::var("LIBVIRTD_E2E").as_deref() != Ok("1") {
            skipped(
                test,
                "real-libvirtd test; set LIBVIRTD_E2E=1 with a libvirtd running \
                 (./run-tests.sh does, as root)",
            );
            return None;
        }
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        // As in the exporter: libvirt's event loop before this process opens a connection.
        site_exporter::sources::libvirt::start_event_loop().expect("the libvirt event loop");
        let dir = std::env::var_os("LIBVIRTD_E2E_SOCKET_DIR")
            .map_or_else(|| PathBuf::from("/run/libvirt"), PathBuf::from);
        let mut daemon = Self {
            dir,
            hold: None,
            stopped: false,
            _one: one,
        };
        daemon.load_fixture();
        Some(daemon)
    }

    fn uri(&self, socket: &str) -> String {
        format!(
            "test+unix:///default?socket={}",
            self.dir.join(socket).display()
        )
    }

    /// Read-write, for virsh changing domains.
    fn rw_uri(&self) -> String {
        self.uri("libvirt-sock")
    }

    /// Read-only, what the exporter is given in production.
    fn ro_uri(&self) -> String {
        self.uri("libvirt-sock-ro")
    }

    /// Removes every domain and defines the fixture's, each in its `<test:runstate>`.
    fn load_fixture(&mut self) {
        let rw = self.rw_uri();
        let conn = Connect::open(Some(&rw)).unwrap_or_else(|e| panic!("cannot open {rw}: {e}"));
        let all = conn.list_all_domains(0).expect("list domains");
        for dom in all {
            if dom.is_active().expect("is_active") {
                dom.destroy().expect("destroy");
            }
            // A transient domain is gone once destroyed.
            if dom.is_persistent().unwrap_or(false) {
                dom.undefine().expect("undefine");
            }
        }
        self.hold = Some(conn);
        let node = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/libvirt-node.xml"
        ))
        .expect("the fixture reads");
        let files = tempfile::tempdir().expect("temp dir");
        for (k, xml) in node.split("<domain ").skip(1).enumerate() {
            let xml = format!(
                "<domain {}",
                &xml[..xml.find("</domain>").expect("</domain>")]
            ) + "</domain>";
            let name = between_tags(&xml, "name");
            let path = files.path().join(format!("{k}.xml"));
            std::fs::write(&path, &xml).expect("write a domain XML");
            virsh(&rw, &["define", &path.display().to_string()]);
            match between_tags(&xml, "test:runstate") {
                "1" => drop(virsh(&rw, &["start", name])),
                "3" => {
                    virsh(&rw, &["start", name]);
                    virsh(&rw, &["suspend", name]);
                }
                "5" => {}
                other => panic!("{name}: runstate {other} is not in the fixture loader"),
            }
        }
        let names = virsh(&rw, &["list", "--all", "--name"]);
        let mut names: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
        names.sort_unstable();
        assert_eq!(names, FIXTURE, "the daemon holds exactly the fixture");
    }

    /// `tests/libvirtd.sh stop|start` on this daemon's directory.
    fn control(&self, what: &str) -> Result<(), String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/libvirtd.sh");
        let out = Command::new(script)
            .arg(what)
            .arg(&self.dir)
            .output()
            .map_err(|e| format!("{script}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "libvirtd.sh {what} {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    fn stop(&mut self) {
        // Our own connection goes first: it would only notice the daemon's end on its next call.
        self.hold = None;
        self.stopped = true;
        self.control("stop").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the stopped daemon again and loads the fixture into its new, empty instance.
    fn start(&mut self) {
        self.control("start").unwrap_or_else(|e| panic!("{e}"));
        self.stopped = false;
        self.load_fixture();
    }
}

/// Whether the restart tests may stop and start the daemon; prints why not.
fn restart_allowed(test: &str) -> bool {
    let allowed = std::env::var("LIBVIRTD_E2E_RESTART").as_deref() == Ok("1");
    if !allowed {
        skipped(
            test,
            "stops and starts libvirtd; needs LIBVIRTD_E2E_RESTART=1 and a daemon started by \
             tests/libvirtd.sh (./run-tests.sh sets it when it started the daemon)",
        );
    }
    allowed
}

/// Says on stderr, past the test harness's capture, that `test` did not run and why.
fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// The text of the first `<tag>...</tag>` in `xml`.
fn between_tags<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml.find(&open).expect("the tag") + open.len();
    let len = xml[start..].find('<').expect("a closing tag");
    &xml[start..start + len]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// What `f` logged at DEBUG and above, one line per event, with `f`'s result (`f` runs on this
/// thread).
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text =
        String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    (out, text)
}

/// The WARN and ERROR lines of [`logged`] output.
fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

/// The fixture's four guests, complete: states, and every disk and NIC of the running ones.
fn assert_fixture(snapshot: &GuestsSnapshot, ctx: &str) {
    assert!(snapshot.up, "{ctx}: libvirt up");
    let states: Vec<(&str, GuestState, usize, usize)> = FIXTURE
        .iter()
        .map(|n| {
            let g = guest(snapshot, n);
            (*n, g.state, g.blocks.len(), g.interfaces.len())
        })
        .collect();
    assert_eq!(
        states,
        [
            ("instance-00000001", GuestState::Running, 2, 2),
            ("instance-00000002", GuestState::Paused, 0, 0),
            ("instance-00000003", GuestState::Shutoff, 0, 0),
            ("plain-guest", GuestState::Running, 3, 1),
        ],
        "{ctx}"
    );
}

#[test]
fn guests_match_virsh() {
    let Some(d) = Daemon::get("daemon::guests_match_virsh") else {
        return;
    };
    runtime().block_on(check_guests_match_virsh(&d.ro_uri()));
}

#[test]
fn nova_metadata_and_states() {
    let Some(d) = Daemon::get("daemon::nova_metadata_and_states") else {
        return;
    };
    let ours = runtime().block_on(collect(&d.ro_uri()));
    check_nova_metadata_and_states(&ours);
}

#[test]
fn the_exporter_serves_every_guest() {
    let Some(d) = Daemon::get("daemon::the_exporter_serves_every_guest") else {
        return;
    };
    runtime().block_on(check_the_exporter_serves_every_guest(&d.ro_uri()));
}

/// The bulk call with NOWAIT is accepted (no fallback warning), and nothing else warns.
#[test]
fn bulk_stats_with_nowait_refresh_without_warnings() {
    let Some(d) = Daemon::get("daemon::bulk_stats_with_nowait_refresh_without_warnings") else {
        return;
    };
    let mut host = Host::new(d.ro_uri(), Duration::from_secs(3600));
    for k in 0..3 {
        let (snapshot, log) = logged(|| host.refresh());
        assert_fixture(&snapshot, &format!("refresh {k}"));
        assert_eq!(warnings(&log), [""; 0], "refresh {k} warned");
    }
}

/// A transient copy of plain-guest that another client creates and destroys in a loop.
fn vanishing_xml() -> String {
    let node = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/libvirt-node.xml"
    ))
    .expect("the fixture reads");
    let plain = node.rfind("<domain ").expect("plain-guest is last");
    let end = node.rfind("</domain>").expect("</domain>") + "</domain>".len();
    node[plain..end]
        .replace("<name>plain-guest</name>", "<name>vanishing</name>")
        .replace(
            "2b4a0a6e-77f4-4d8f-9a3c-0d6c1a5e0004",
            "2b4a0a6e-77f4-4d8f-9a3c-0d6c1a5e0099",
        )
}

/// Another client creates and destroys a guest as fast as it can while the source refreshes:
/// the guest sometimes vanishes between the bulk call and its per-domain calls. Every refresh
/// still has the other four whole, and a vanished guest is skipped quietly.
#[test]
fn a_guest_vanishing_during_refreshes_leaves_the_others_whole() {
    let test = "daemon::a_guest_vanishing_during_refreshes_leaves_the_others_whole";
    let Some(d) = Daemon::get(test) else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicUsize::new(0));
    let churner = {
        let (stop, cycles, rw, xml) = (
            Arc::clone(&stop),
            Arc::clone(&cycles),
            d.rw_uri(),
            vanishing_xml(),
        );
        std::thread::spawn(move || {
            let conn = Connect::open(Some(&rw)).expect("a second client connects");
            while !stop.load(Ordering::SeqCst) {
                let dom = conn
                    .create_domain_xml(&xml, 0)
                    .expect("create the transient guest");
                dom.destroy().expect("destroy it");
                cycles.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut host = Host::new(d.ro_uri(), Duration::from_secs(3600));
    let (mut whole, mut logs) = (0, String::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for k in 0..200 {
        let (snapshot, log) = logged(|| host.refresh());
        assert_fixture(&snapshot, &format!("refresh {k}"));
        whole += usize::from(snapshot.guests.iter().any(|g| g.name == "vanishing"));
        logs.push_str(&log);
        assert!(
            std::time::Instant::now() < deadline,
            "200 refreshes took over 60 s"
        );
    }
    stop.store(true, Ordering::SeqCst);
    churner.join().expect("the churning client ends");
    let cycles = cycles.load(Ordering::SeqCst);
    let vanished = logs.matches("domain vanished since the bulk call").count();
    eprintln!(
        "{test}: {cycles} create/destroy cycles; the guest vanished between the bulk call and \
         its XML in {vanished} of 200 refreshes, was exported whole in {whole}"
    );
    assert_eq!(
        warnings(&logs),
        [""; 0],
        "warnings while a guest came and went"
    );
    assert!(vanished > 0, "the race this test is about never happened");
}

/// The daemon restarts between two refreshes: the old connection does not know yet, its bulk
/// call fails, and the same refresh succeeds on a fresh connection.
#[test]
fn a_restarted_daemon_is_reached_again_in_the_same_refresh() {
    let test = "daemon::a_restarted_daemon_is_reached_again_in_the_same_refresh";
    let Some(mut d) = Daemon::get(test) else {
        return;
    };
    if !restart_allowed(test) {
        return;
    }
    let mut host = Host::new(d.ro_uri(), Duration::from_secs(3600));
    assert_fixture(&host.refresh(), "before the restart");
    d.stop();
    d.start();
    let (snapshot, log) = logged(|| host.refresh());
    assert_fixture(&snapshot, "the first refresh after the restart");
    let warned = warnings(&log);
    assert_eq!(warned.len(), 1, "{log}");
    // The event loop usually noticed the end of the connection first (keepalive, EOF): then
    // the refresh reconnects before its call; else the bulk call fails and it retries.
    assert!(
        warned[0].contains("libvirt connection lost; reconnecting")
            || warned[0].contains("bulk domain statistics failed"),
        "{log}"
    );
}

/// The exporter while the daemon is down and after it is back: `libvirt_up` 1, 0, 1, the
/// refreshes themselves never fail, and the guests return.
#[test]
fn the_exporter_reports_a_stopped_daemon_and_recovers() {
    let test = "daemon::the_exporter_reports_a_stopped_daemon_and_recovers";
    let Some(mut d) = Daemon::get(test) else {
        return;
    };
    if !restart_allowed(test) {
        return;
    }
    let rt = runtime();
    let served = rt.block_on(Served::start(&d.ro_uri(), Some(Duration::from_secs(1))));
    let ok = [
        "\nlibvirt_up 1\n",
        "\nlibvirt_domains 4\n",
        "site_exporter_source_up{source=\"libvirt\"} 1\n",
        "site_exporter_source_refresh_errors_total{source=\"libvirt\"} 0\n",
    ];
    rt.block_on(served.until(&ok));

    d.stop();
    let down = rt.block_on(served.until(&["\nlibvirt_up 0\n", "\nlibvirt_domains 0\n"]));
    assert!(
        !down.contains("libvirt_domain_state_code{"),
        "no guests of an unreachable daemon:\n{down}"
    );
    assert!(
        down.contains("site_exporter_source_refresh_errors_total{source=\"libvirt\"} 0\n"),
        "an unreachable daemon is not a refresh error:\n{down}"
    );
    assert!(
        down.contains("\nlibvirt_event_stream_up 0\n"),
        "no event stream without a daemon:\n{down}"
    );

    d.start();
    // Back, with the event stream registered again on the new connection.
    let mut want_back = ok.to_vec();
    want_back.extend([
        "\nlibvirt_event_stream_up 1\n",
        "\nlibvirt_event_stream_reconnects_total 1\n",
    ]);
    let back = rt.block_on(served.until(&want_back));
    for name in FIXTURE {
        assert!(
            back.contains(&format!("libvirt_domain_state_code{{domain=\"{name}\"}}")),
            "{name} is back:\n{back}"
        );
    }
    rt.block_on(served.stop());
}

/// Nova redefines a stopped guest with new metadata (a resize of a stopped instance on the same
/// host): name and UUID stay, and the domain has no run id before or after. The next refresh
/// shows the new flavor.
#[test]
fn a_stopped_guest_redefined_by_another_client_shows_its_new_metadata() {
    let test = "daemon::a_stopped_guest_redefined_by_another_client_shows_its_new_metadata";
    let Some(d) = Daemon::get(test) else {
        return;
    };
    let flavor = |s: &GuestsSnapshot| {
        guest(s, "instance-00000003")
            .openstack
            .as_ref()
            .map(|n| n.flavor_name.clone())
    };
    let mut host = Host::new(d.ro_uri(), Duration::from_secs(3600));
    assert_eq!(flavor(&host.refresh()).as_deref(), Some("m1.large"));

    let rw = d.rw_uri();
    let xml = virsh(&rw, &["dumpxml", "instance-00000003"]);
    assert!(xml.contains("name=\"m1.large\""), "{xml}");
    let files = tempfile::tempdir().expect("temp dir");
    let path = files.path().join("resized.xml");
    std::fs::write(
        &path,
        xml.replace("name=\"m1.large\"", "name=\"m1.xlarge\""),
    )
    .expect("write the XML");
    virsh(&rw, &["define", &path.display().to_string()]);

    let after = host.refresh();
    assert_eq!(
        guest(&after, "instance-00000003").state,
        GuestState::Shutoff
    );
    assert_eq!(flavor(&after).as_deref(), Some("m1.xlarge"));
}
