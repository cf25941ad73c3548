//! Lifecycle events on the real libvirtd: what another client does between two scrapes is
//! counted once, and after a daemon restart the source registers again without counting any
//! event twice. Polls with deadlines; events travel through the daemon and our event loop
//! thread, so they arrive shortly after `virsh` returns.

use super::*;

/// `(event, reason) -> count` of one domain, from an exposition body.
fn body_counts(body: &str, domain: &str) -> BTreeMap<(String, String), u64> {
    let prefix = format!("libvirt_domain_lifecycle_events_total{{domain=\"{domain}\",event=\"");
    body.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (event, rest) = rest.split_once("\",reason=\"")?;
            let (reason, value) = rest.split_once("\"} ")?;
            Some(((event.into(), reason.into()), value.trim().parse().ok()?))
        })
        .collect()
}

/// `(event, reason) -> count` of one domain, from a snapshot.
fn snapshot_counts(s: &GuestsSnapshot, domain: &str) -> BTreeMap<(String, String), u64> {
    s.events
        .iter()
        .filter(|d| d.domain == domain)
        .flat_map(|d| d.counts.iter())
        .map(|(k, v)| ((k.event.to_string(), k.reason.to_string()), *v))
        .collect()
}

/// `base` with one more of each of `events`.
fn plus(
    base: &BTreeMap<(String, String), u64>,
    events: &[(&str, &str)],
) -> BTreeMap<(String, String), u64> {
    let mut want = base.clone();
    for (e, r) in events {
        *want.entry(((*e).into(), (*r).into())).or_default() += 1;
    }
    want
}

/// The last-success timestamp of the libvirt source in a body.
fn last_success(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(
                "site_exporter_source_last_success_timestamp_seconds{source=\"libvirt\"} ",
            )
        })
        .map(str::to_string)
}

/// Suspend, resume, destroy and start a guest between two scrapes: each counter shows its
/// event once in the exposition, and later refreshes add nothing.
#[test]
fn events_between_two_scrapes_are_counted_once() {
    let test = "daemon::events::events_between_two_scrapes_are_counted_once";
    let Some(d) = Daemon::get(test) else {
        return;
    };
    let rt = runtime();
    let served = rt.block_on(Served::start(&d.ro_uri(), Some(Duration::from_secs(1))));
    let zero = "libvirt_domain_lifecycle_events_total{domain=\"instance-00000001\",event=\"stopped\",reason=\"crashed\"} 0\n";
    let before = rt.block_on(served.until(&["\nlibvirt_event_stream_up 1\n", zero]));
    let base = body_counts(&before, "instance-00000001");
    for pair in ["crashed\",reason=\"panicked", "stopped\",reason=\"failed"] {
        assert!(
            before.contains(&format!("{{domain=\"plain-guest\",event=\"{pair}\"}} 0\n")),
            "alert pair {pair} at 0 for every seen domain:\n{before}"
        );
    }

    let rw = d.rw_uri();
    for op in ["suspend", "resume", "destroy", "start"] {
        virsh(&rw, &[op, "instance-00000001"]);
    }
    let want = plus(
        &base,
        &[
            ("suspended", "paused"),
            ("resumed", "unpaused"),
            ("stopped", "destroyed"),
            ("started", "booted"),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut body = String::new();
    while body_counts(&body, "instance-00000001") != want {
        assert!(
            std::time::Instant::now() < deadline,
            "no {want:?} within 30 s:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
        body = rt.block_on(get(served.addr, "/metrics")).1;
    }
    // Two more refreshes: nothing counted late or twice.
    let mut stamp = last_success(&body);
    for _ in 0..2 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            body = rt.block_on(get(served.addr, "/metrics")).1;
            if last_success(&body) != stamp {
                stamp = last_success(&body);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no refresh in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(body_counts(&body, "instance-00000001"), want, "{body}");
    assert!(
        body.contains("\nlibvirt_event_stream_reconnects_total 0\n"),
        "{body}"
    );
    rt.block_on(served.stop());
}

/// The daemon restarts: the next refresh reconnects and registers again (one reconnect
/// counted), and a suspend and resume after it are counted once each.
#[test]
fn after_a_daemon_restart_events_are_registered_again_and_counted_once() {
    let test =
        "daemon::events::after_a_daemon_restart_events_are_registered_again_and_counted_once";
    let Some(mut d) = Daemon::get(test) else {
        return;
    };
    if !restart_allowed(test) {
        return;
    }
    let mut host = Host::new(d.ro_uri(), Duration::from_secs(3600));
    let first = host.refresh();
    assert_fixture(&first, "before the restart");
    assert!(first.event_stream.up, "registered on the first connection");
    assert_eq!(first.event_stream.reconnects, 0);

    d.stop();
    d.start();
    let after = host.refresh();
    assert_fixture(&after, "after the restart");
    assert!(after.event_stream.up, "registered again");
    assert_eq!(after.event_stream.reconnects, 1);
    let base = snapshot_counts(&after, "plain-guest");

    let rw = d.rw_uri();
    virsh(&rw, &["suspend", "plain-guest"]);
    virsh(&rw, &["resume", "plain-guest"]);
    let want = plus(&base, &[("suspended", "paused"), ("resumed", "unpaused")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = snapshot_counts(&host.refresh(), "plain-guest");
        if got == want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {want:?} within 30 s: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let later = host.refresh();
    assert_eq!(snapshot_counts(&later, "plain-guest"), want, "counted once");
    assert_eq!(later.event_stream.reconnects, 1, "no further reconnect");
}

/// A domain undefined by another client keeps its counters and its Nova metadata for the grace
/// period, and both go after it.
#[test]
fn an_undefined_domain_keeps_its_events_for_the_grace_period() {
    let test = "daemon::events::an_undefined_domain_keeps_its_events_for_the_grace_period";
    let Some(d) = Daemon::get(test) else {
        return;
    };
    let grace = Duration::from_secs(2);
    let mut host = Host::new(d.ro_uri(), grace);
    assert_fixture(&host.refresh(), "at start");
    let rw = d.rw_uri();
    virsh(&rw, &["destroy", "instance-00000001"]);
    virsh(&rw, &["undefine", "instance-00000001"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let gone = loop {
        let s = host.refresh();
        let destroyed = snapshot_counts(&s, "instance-00000001")
            .get(&("stopped".to_string(), "destroyed".to_string()))
            .copied();
        if destroyed == Some(1) && s.guests.iter().all(|g| g.name != "instance-00000001") {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "{s:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let departed: Vec<&str> = gone.departed.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(departed, ["instance-00000001"]);
    assert_eq!(
        gone.departed[0]
            .openstack
            .as_ref()
            .map(|m| m.project_name.as_str()),
        Some("genomics")
    );
    let deadline = std::time::Instant::now() + grace + Duration::from_secs(30);
    loop {
        let s = host.refresh();
        if s.departed.is_empty() && snapshot_counts(&s, "instance-00000001").is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still kept: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
