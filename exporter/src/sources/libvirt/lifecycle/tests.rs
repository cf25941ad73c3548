//! The (event, detail) table, including the crash reasons the test driver cannot produce, and
//! the book's zeros, grace period and bounds.

use super::*;
use crate::snapshot::{GuestInfo, GuestState};

#[test]
fn libvirt_numbers_map_to_labels() {
    type Want = Option<(&'static str, &'static str)>;
    // (case, event, detail, want)
    let cases: [(&str, i32, i32, Want); 30] = [
        ("defined is not counted", 0, 0, None),
        ("undefined is not counted", 1, 1, None),
        ("booted", 2, 0, Some(("started", "booted"))),
        (
            "started after migration",
            2,
            1,
            Some(("started", "migrated")),
        ),
        ("restored", 2, 2, Some(("started", "restored"))),
        ("recreated", 2, 5, Some(("started", "recreated"))),
        ("paused", 3, 0, Some(("suspended", "paused"))),
        ("paused on I/O error", 3, 2, Some(("suspended", "ioerror"))),
        ("paused by watchdog", 3, 3, Some(("suspended", "watchdog"))),
        (
            "paused, guest shut down",
            3,
            9,
            Some(("suspended", "guest_shutdown")),
        ),
        ("unpaused", 4, 0, Some(("resumed", "unpaused"))),
        (
            "resumed, postcopy failed",
            4,
            4,
            Some(("resumed", "postcopy_failed")),
        ),
        ("stopped by shutdown", 5, 0, Some(("stopped", "shutdown"))),
        ("destroyed", 5, 1, Some(("stopped", "destroyed"))),
        ("stopped: crashed", 5, 2, Some(("stopped", "crashed"))),
        ("stopped: migrated", 5, 3, Some(("stopped", "migrated"))),
        ("stopped: saved", 5, 4, Some(("stopped", "saved"))),
        ("stopped: failed", 5, 5, Some(("stopped", "failed"))),
        ("stopped: recreated", 5, 7, Some(("stopped", "recreated"))),
        ("shutdown finished", 6, 0, Some(("shutdown", "finished"))),
        ("shutdown by the guest", 6, 1, Some(("shutdown", "guest"))),
        ("shutdown by the host", 6, 2, Some(("shutdown", "host"))),
        (
            "pm suspended to memory",
            7,
            0,
            Some(("pmsuspended", "memory")),
        ),
        ("pm suspended to disk", 7, 1, Some(("pmsuspended", "disk"))),
        ("guest panicked", 8, 0, Some(("crashed", "panicked"))),
        (
            "crash loaded a kernel",
            8,
            1,
            Some(("crashed", "crashloaded")),
        ),
        (
            "unknown detail of a known event",
            8,
            7,
            Some(("crashed", "unknown")),
        ),
        ("negative detail", 5, -1, Some(("stopped", "unknown"))),
        (
            "an event newer than this table",
            42,
            0,
            Some(("unknown", "unknown")),
        ),
        ("negative event", -3, 0, Some(("unknown", "unknown"))),
    ];
    for (name, event, detail, want) in cases {
        let got = label(event, detail).map(|l| (l.event, l.reason));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn every_alert_pair_is_a_label_libvirt_can_produce() {
    for p in LifecycleEvent::ALERT_PAIRS {
        let produced = (0..16).any(|e| (0..16).any(|d| label(e, d) == Some(p)));
        assert!(produced, "{p:?}");
    }
}

fn guest(name: &str, project: Option<&str>) -> Guest {
    Guest {
        name: name.into(),
        uuid: format!("uuid-{name}"),
        state: GuestState::Running,
        openstack: project.map(|p| NovaMetadata {
            project_name: p.into(),
            ..NovaMetadata::default()
        }),
        info: GuestInfo::default(),
        vcpus: vec![],
        memory: None,
        blocks: vec![],
        interfaces: vec![],
    }
}

fn counts(book: &EventBook, domain: &str) -> Vec<(&'static str, &'static str, u64)> {
    book.events()
        .into_iter()
        .find(|d| d.domain == domain)
        .map(|d| {
            d.counts
                .iter()
                .map(|(k, v)| (k.event, k.reason, *v))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_seen_domain_has_the_alert_pairs_at_zero_and_counts_each_event_once() {
    let mut book = EventBook::new(Duration::from_secs(60));
    let t0 = Instant::now();
    book.observe(&[guest("a", Some("p"))], t0);
    assert_eq!(
        counts(&book, "a"),
        [
            ("crashed", "crashloaded", 0),
            ("crashed", "panicked", 0),
            ("stopped", "crashed", 0),
            ("stopped", "failed", 0),
        ]
    );
    book.record("a", 8, 0);
    book.record("a", 3, 0);
    book.record("a", 3, 0);
    book.record("a", 0, 0);
    assert_eq!(
        counts(&book, "a"),
        [
            ("crashed", "crashloaded", 0),
            ("crashed", "panicked", 1),
            ("stopped", "crashed", 0),
            ("stopped", "failed", 0),
            ("suspended", "paused", 2),
        ]
    );
    assert!(book.departed().is_empty());
}

#[test]
fn a_gone_domain_stays_for_the_grace_period_with_its_metadata_then_goes() {
    let grace = Duration::from_secs(600);
    let mut book = EventBook::new(grace);
    let t0 = Instant::now();
    book.observe(&[guest("a", Some("p")), guest("b", None)], t0);
    book.record("a", 5, 1);
    book.observe(&[guest("b", None)], t0 + Duration::from_secs(10));
    let departed = book.departed();
    assert_eq!(departed.len(), 1);
    assert_eq!(departed[0].name, "a");
    assert_eq!(
        departed[0]
            .openstack
            .as_ref()
            .map(|m| m.project_name.as_str()),
        Some("p"),
        "the last metadata stays for the per-project join"
    );
    assert!(counts(&book, "a").contains(&("stopped", "destroyed", 1)));

    // Still within the grace, counted from when it was first missed.
    book.observe(&[guest("b", None)], t0 + Duration::from_secs(10) + grace);
    assert_eq!(book.departed().len(), 1);
    book.observe(&[guest("b", None)], t0 + Duration::from_secs(11) + grace);
    assert!(book.departed().is_empty());
    assert!(counts(&book, "a").is_empty(), "gone after the grace");
    assert_eq!(book.events().len(), 1);
}

#[test]
fn a_domain_back_within_the_grace_keeps_its_counts() {
    let mut book = EventBook::new(Duration::from_secs(60));
    let t0 = Instant::now();
    book.observe(&[guest("a", None)], t0);
    book.record("a", 5, 1);
    book.observe(&[], t0 + Duration::from_secs(30));
    book.observe(&[guest("a", None)], t0 + Duration::from_secs(50));
    book.observe(&[], t0 + Duration::from_secs(100));
    assert!(counts(&book, "a").contains(&("stopped", "destroyed", 1)));
    assert_eq!(book.departed().len(), 1, "the grace starts again");
}

#[test]
fn events_of_a_domain_never_listed_are_dropped_after_the_grace() {
    let mut book = EventBook::new(Duration::from_secs(60));
    let t0 = Instant::now();
    for k in 0..1000 {
        book.record(&format!("transient-{k}"), 2, 0);
    }
    book.observe(&[], t0);
    assert_eq!(book.events().len(), 1000);
    book.observe(&[], t0 + Duration::from_secs(61));
    assert!(book.events().is_empty());
    assert!(book.departed().is_empty());
}
