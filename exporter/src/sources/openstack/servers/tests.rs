#![allow(clippy::unwrap_used)]
//! On responses recorded from the real Nova 34 of `shared/openstack`: a `changes-since`
//! listing (microversion 2.47, a deleted server included) and Nova's usage answer for a
//! window, both read at 2026-11-27T21:50:45Z.

use super::*;
use crate::sources::openstack::nova::tests::fixture;
use crate::sources::openstack::nova::{Server, ServersPage, UsagePage};

const CHANGES: &str = "nova_servers_detail_all_tenants_changes_since_mv2.47.json";
const WINDOW: &str = "nova_os-simple-tenant-usage_detailed_mv2.40_changes_since_window.json";
/// The recorded window: `start=2026-11-27T21:43:00&end=2026-11-27T21:45:00`.
const START: i64 = 1_795_815_780;
const END: i64 = 1_795_815_900;

fn listing(name: &str) -> Vec<Server> {
    serde_json::from_str::<ServersPage>(&fixture(name))
        .unwrap()
        .servers
}

impl ServerTable {
    /// The table of recorded servers.
    fn of(servers: Vec<Server>) -> Self {
        Self::from_listing(nova::compact_servers(servers))
    }

    fn merge_servers(&mut self, servers: Vec<Server>) {
        self.merge(nova::compact_servers(servers));
    }
}

fn micros(text: &str) -> i64 {
    nova::epoch_micros(text).unwrap()
}

#[test]
fn the_recorded_window_bounds_are_what_was_asked() {
    assert_eq!(micros("2026-11-27T21:43:00"), START * 1_000_000);
    assert_eq!(micros("2026-11-27T21:45:00"), END * 1_000_000);
}

#[test]
fn hours_follow_novas_hours_for_on_the_servers_its_window_query_returns() {
    struct Case {
        name: &'static str,
        launched: Option<&'static str>,
        terminated: Option<&'static str>,
        want: Option<f64>,
    }
    let cases = [
        Case {
            name: "launched before, running: the whole window",
            launched: Some("2026-11-27T20:00:00"),
            terminated: None,
            want: Some(120.0 / 3600.0),
        },
        Case {
            name: "launched inside: from the launch",
            launched: Some("2026-11-27T21:44:00.250000"),
            terminated: None,
            want: Some(59.75 / 3600.0),
        },
        Case {
            name: "launched exactly at the start: the whole window",
            launched: Some("2026-11-27T21:43:00"),
            terminated: None,
            want: Some(120.0 / 3600.0),
        },
        Case {
            name: "launched at the end: not returned (launched_at < end)",
            launched: Some("2026-11-27T21:45:00"),
            terminated: None,
            want: None,
        },
        Case {
            name: "launched after the end: not returned",
            launched: Some("2026-11-27T22:00:00"),
            terminated: None,
            want: None,
        },
        Case {
            name: "never launched: not returned (NULL < end is not true)",
            launched: None,
            terminated: None,
            want: None,
        },
        Case {
            name: "terminated before the start: not returned",
            launched: Some("2026-11-27T20:00:00"),
            terminated: Some("2026-11-27T21:00:00"),
            want: None,
        },
        Case {
            name: "terminated exactly at the start: not returned (terminated_at > start)",
            launched: Some("2026-11-27T20:00:00"),
            terminated: Some("2026-11-27T21:43:00"),
            want: None,
        },
        Case {
            name: "terminated inside: up to the termination",
            launched: Some("2026-11-27T20:00:00"),
            terminated: Some("2026-11-27T21:43:30"),
            want: Some(30.0 / 3600.0),
        },
        Case {
            name: "launched and terminated inside",
            launched: Some("2026-11-27T21:43:41"),
            terminated: Some("2026-11-27T21:43:54"),
            want: Some(13.0 / 3600.0),
        },
        Case {
            name: "terminated after the end: the whole window",
            launched: Some("2026-11-27T20:00:00"),
            terminated: Some("2026-11-27T23:00:00"),
            want: Some(120.0 / 3600.0),
        },
    ];
    for c in cases {
        let got = hours(
            c.launched.map(micros),
            c.terminated.map(micros),
            START * 1_000_000,
            END * 1_000_000,
        );
        assert_eq!(
            got.map(f64::to_bits),
            c.want.map(f64::to_bits),
            "{}",
            c.name
        );
    }
}

/// Nova's recorded answer for the recorded window, in the accounting's form.
fn novas_window() -> Vec<ProjectWindow> {
    nova::compact_usage(
        serde_json::from_str::<UsagePage>(&fixture(WINDOW))
            .unwrap()
            .tenant_usages,
    )
}

#[test]
fn the_window_from_the_recorded_listing_is_novas_recorded_answer_bit_for_bit() {
    let servers = listing(CHANGES);
    let table = ServerTable::of(servers.clone());
    let ours = table.window(START, END).unwrap();
    let nova = novas_window();
    // Same projects in the same order, same servers in the same order, every accounted
    // value equal (hours and start compared as bits); the deleted server is counted up to
    // its termination.
    assert_eq!(ours.len(), nova.len());
    for (a, b) in ours.iter().zip(&nova) {
        assert_eq!(a.project_id, b.project_id);
        assert_eq!(a.servers.len(), b.servers.len(), "{}", a.project_id);
        for (x, y) in a.servers.iter().zip(&b.servers) {
            assert_eq!(x, y);
            assert_eq!(x.hours.to_bits(), y.hours.to_bits(), "{:?}", x.id);
            assert_eq!(x.started_at.to_bits(), y.started_at.to_bits(), "{:?}", x.id);
            assert!(x.started_at > 0.0, "{:?}", x.id);
        }
    }
    assert!(compare_window(&ours, &nova).is_empty());
    let deleted = servers.iter().find(|s| s.status == "DELETED").unwrap();
    assert_eq!(deleted.name, "scratch-1");
    let id = ServerId::new(&deleted.id);
    assert!(ours.iter().flat_map(|t| &t.servers).any(|u| u.id == id));
}

#[test]
fn a_start_held_in_microseconds_is_the_seconds_of_novas_text_bit_for_bit() {
    // What the accounting did before the compact window: format the table's `launched_at`
    // as Nova's usage text, then read the text back.
    let round_trip = |micros: i64| nova::epoch_seconds(&nova::usage_time(micros)).unwrap_or(0.0);
    let mut cases: Vec<i64> = vec![
        0,
        1,
        999_999,
        1_000_000,
        micros("2026-11-27T21:44:30.000000"),
        micros("2026-11-27T21:44:30.000001"),
        micros("2026-11-27T21:44:30.999999"),
        micros("2038-01-19T03:14:08.123456"),
        micros("9999-12-31T23:59:59.999999"),
    ];
    cases.extend(
        listing(CHANGES)
            .iter()
            .filter_map(|s| s.launched_at.as_deref().map(micros)),
    );
    // A spread of instants with every microsecond digit pattern.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cases.push((x % 4_000_000_000_000_000) as i64);
    }
    for m in cases {
        assert_eq!(
            nova::started_at_seconds(m).to_bits(),
            round_trip(m).to_bits(),
            "{m} ({})",
            nova::usage_time(m)
        );
    }
}

#[test]
fn a_changes_since_listing_replaces_entries_and_deleted_servers_leave_after_their_last_window() {
    let all = listing(CHANGES);
    let deleted = all.iter().find(|s| s.status == "DELETED").unwrap().clone();
    let live: Vec<Server> = all
        .iter()
        .filter(|s| s.status != "DELETED")
        .cloned()
        .collect();
    // A full listing has no deleted servers; the deleted one was live then.
    let mut before = deleted.clone();
    before.status = "ACTIVE".into();
    before.terminated_at = None;
    before.vm_state = Some("active".into());
    before.updated = Some("2026-11-27T21:43:45Z".into());
    let mut listed = live.clone();
    listed.push(before);
    let mut table = ServerTable::of(listed);
    assert_eq!(table.live().count(), 11);
    // The bound: largest `updated` of the listing (infer-2, 21:44:18) minus the overlap,
    // unless the cap is earlier.
    assert_eq!(
        table.changes_since(END + 3600),
        micros("2026-11-27T21:44:18") / 1_000_000 - OVERLAP_SECONDS
    );
    assert_eq!(table.changes_since(START), START - OVERLAP_SECONDS);

    table.merge_servers(vec![deleted.clone()]);
    assert_eq!(table.live().count(), 10, "deleted servers are not live");
    assert_eq!(table.len(), 11, "but kept for their last window");
    assert_eq!(
        table.changes_since(END + 3600),
        micros("2026-11-27T21:46:31") / 1_000_000 - OVERLAP_SECONDS,
        "the deletion's `updated` moves the bound"
    );
    // Listed twice (the overlap): nothing changes.
    let again = table.clone();
    table.merge_servers(vec![deleted.clone()]);
    assert_eq!(table, again);
    // Terminated at 21:43:54: still counted by a window ending before that...
    table.prune(micros("2026-11-27T21:43:50") / 1_000_000);
    assert_eq!(table.len(), 11);
    // ...and forgotten once a window ended at or after it.
    table.prune(END);
    assert_eq!(table.len(), 10);
    assert!(table
        .window(END, END + 60)
        .unwrap()
        .iter()
        .all(|t| t.servers.iter().all(|u| u.id != ServerId::new(&deleted.id))));
}

#[test]
fn a_new_launched_at_after_a_resize_or_unshelve_restarts_the_hours_as_nova_does() {
    let mut table = ServerTable::of(listing(CHANGES));
    let mut resized = listing(CHANGES)
        .into_iter()
        .find(|s| s.name == "web-1")
        .unwrap();
    resized.launched_at = Some("2026-11-27T21:44:30.000000".into());
    table.merge_servers(vec![resized.clone()]);
    let usage = table.window(START, END).unwrap();
    let u = usage
        .iter()
        .flat_map(|t| &t.servers)
        .find(|u| u.id == ServerId::new(&resized.id))
        .unwrap();
    assert_eq!(u.hours.to_bits(), (30.0f64 / 3600.0).to_bits());
    assert_eq!(
        u.started_at.to_bits(),
        nova::epoch_seconds("2026-11-27T21:44:30.000000")
            .unwrap()
            .to_bits()
    );
}

#[test]
fn a_server_without_an_embedded_flavor_makes_the_window_inexact() {
    let table = ServerTable::of(listing(
        "nova_servers_detail_all_tenants_deleted_mv2.1.json",
    ));
    let err = table.window(0, 1_800_000_000).unwrap_err();
    assert!(matches!(err, Inexact::NoFlavor(_)), "{err}");
    // Outside every server's lifetime nothing is asked of the flavor.
    assert!(table.window(0, 1).unwrap().is_empty());
}

#[test]
fn rebuilt_tables_keep_pending_deletions_and_membership_names_both_sides() {
    let all = listing(CHANGES);
    let mut table = ServerTable::of(all.clone());
    // The full listing: no deleted server, and one server archived away, one never seen.
    let mut listed: Vec<Server> = all
        .iter()
        .filter(|s| s.status != "DELETED")
        .cloned()
        .collect();
    let archived = listed.pop().unwrap();
    table.merge_servers(vec![]);
    let mut partial = ServerTable::of(
        all.iter()
            .filter(|s| s.name != "train-1")
            .cloned()
            .collect(),
    );
    partial.merge_servers(vec![]);
    let listing_table = ServerTable::of(listed);
    let (gone, _) = table.membership(&listing_table);
    assert_eq!(gone, std::slice::from_ref(&archived.id));
    let (_, untracked) = partial.membership(&ServerTable::of(all.clone()));
    let train = all.iter().find(|s| s.name == "train-1").unwrap();
    assert_eq!(untracked, std::slice::from_ref(&train.id));

    let before = table.changes_since(i64::MAX);
    let rebuilt = table.rebuilt(listing_table);
    assert_eq!(
        rebuilt.len(),
        10 + 1 - 1,
        "listing minus archived, plus the pending deletion"
    );
    assert_eq!(rebuilt.changes_since(i64::MAX), before);
}

#[test]
fn compare_window_names_servers_that_differ_or_only_one_side_lists() {
    let nova = novas_window();
    let mut ours = nova.clone();
    let changed = ours[0].servers[0].id.to_text();
    ours[0].servers[0].hours += 1e-12;
    let dropped = ours[1].servers.pop().unwrap().id.to_text();
    let mut want = vec![changed, dropped];
    want.sort();
    assert_eq!(compare_window(&ours, &nova), want);
    // A start one microsecond off, and a server under another project, disagree.
    let mut moved = nova.clone();
    moved[0].servers[0].started_at += 1e-6;
    let server = moved[1].servers.remove(0);
    let (a, b) = (moved[0].servers[0].id.to_text(), server.id.to_text());
    moved[0].servers.push(server);
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(compare_window(&moved, &nova), want);
    // The same instants in another spelling of Nova's text are no disagreement.
    let mut spelled = serde_json::from_str::<UsagePage>(&fixture(WINDOW))
        .unwrap()
        .tenant_usages;
    spelled[0].server_usages[0].started_at = spelled[0].server_usages[0]
        .started_at
        .as_deref()
        .map(|t| format!("{}Z", t.trim_end_matches(".000000")));
    assert!(compare_window(&nova::compact_usage(spelled), &nova).is_empty());
}
