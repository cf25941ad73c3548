#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::openstack::nova::UsagePage;

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

fn usage(id: &str, hours: f64, vcpus: u64, memory_mb: u64, local_gb: u64) -> ServerUsage {
    ServerUsage {
        instance_id: id.into(),
        name: id.into(),
        hours,
        vcpus,
        memory_mb,
        local_gb,
        ..Default::default()
    }
}

fn tenant(id: &str, servers: Vec<ServerUsage>) -> TenantUsage {
    TenantUsage {
        tenant_id: id.into(),
        server_usages: servers,
    }
}

fn project(id: &str) -> Project {
    Project {
        id: id.into(),
        name: format!("{id}-name"),
        domain_id: "d".into(),
        domain_name: "default".into(),
        enabled: true,
    }
}

/// vcpu hours, memory GiB-hours, instance hours, legacy vcpu hours, legacy GiB-hours.
type Want = (f64, f64, f64, f64, f64);

const START: &str = "2026-11-21T00:00:00Z";

#[test]
fn windows_add_up() {
    struct Case {
        name: &'static str,
        /// (window end, tenants) applied in order.
        input: Vec<(&'static str, Vec<TenantUsage>)>,
        /// project -> (vcpu hours, memory GiB-hours, instance hours, legacy vcpu, legacy GiB)
        want: Vec<(&'static str, Want)>,
    }
    let cases = [
        Case {
            name: "one window, one server",
            input: vec![(
                "2026-11-21T10:00:00Z",
                vec![tenant("a", vec![usage("s1", 10.0, 2, 4096, 20)])],
            )],
            want: vec![("a", (20.0, 40.0, 10.0, 20.0, 40.0))],
        },
        Case {
            name: "tenant split over pages is summed",
            input: vec![(
                "2026-11-21T10:00:00Z",
                vec![
                    tenant("a", vec![usage("s1", 1.0, 1, 1024, 1)]),
                    tenant("a", vec![usage("s2", 2.0, 1, 1024, 1)]),
                ],
            )],
            want: vec![("a", (3.0, 3.0, 3.0, 3.0, 3.0))],
        },
        Case {
            name: "resize between windows: each window at its own size",
            input: vec![
                (
                    "2026-11-21T01:00:00Z",
                    vec![tenant("a", vec![usage("s1", 1.0, 1, 2048, 10)])],
                ),
                (
                    "2026-11-21T02:00:00Z",
                    vec![tenant("a", vec![usage("s1", 1.0, 4, 8192, 10)])],
                ),
            ],
            want: vec![("a", (5.0, 10.0, 2.0, 5.0, 10.0))],
        },
        Case {
            name: "server deleted: its past stays, later windows omit it",
            input: vec![
                (
                    "2026-11-21T01:00:00Z",
                    vec![tenant("a", vec![usage("s1", 1.0, 2, 1024, 1)])],
                ),
                ("2026-11-21T02:00:00Z", vec![]),
            ],
            want: vec![("a", (2.0, 1.0, 1.0, 2.0, 1.0))],
        },
        Case {
            name: "memory below one GiB: base units exact, legacy counts whole GiB",
            input: vec![(
                "2026-11-21T01:00:00Z",
                vec![tenant("b", vec![usage("s1", 2.0, 1, 512, 1)])],
            )],
            want: vec![("b", (2.0, 1.0, 2.0, 2.0, 0.0))],
        },
    ];
    let gib = (1u64 << 30) as f64;
    for c in cases {
        let mut acc = Accounting::new(at(START));
        for (end, tenants) in &c.input {
            acc.apply_window(at(end), tenants, MemoryUnit::Gib).unwrap();
        }
        for (id, want) in &c.want {
            let t = acc.projects[*id];
            let got = (
                t.vcpu_seconds / 3600.0,
                t.memory_byte_seconds / 3600.0 / gib,
                t.instance_seconds / 3600.0,
                t.legacy_vcpu_hours,
                t.legacy_memory_hours,
            );
            assert_eq!(got, *want, "{}: {id}", c.name);
        }
        assert_eq!(acc.projects.len(), c.want.len(), "{}", c.name);
    }
}

#[test]
fn window_must_advance_and_a_refused_window_changes_nothing() {
    let mut acc = Accounting::new(at(START));
    acc.apply_window(
        at("2026-11-21T01:00:00Z"),
        &[tenant("a", vec![usage("s", 1.0, 1, 1024, 1)])],
        MemoryUnit::Gib,
    )
    .unwrap();
    let before = acc.clone();
    for end in [
        "2026-11-21T01:00:00Z",
        "2026-11-21T00:30:00Z",
        "2026-11-21T01:00:00.900Z",
    ] {
        let err = acc
            .apply_window(
                at(end),
                &[tenant("a", vec![usage("s", 1.0, 1, 1024, 1)])],
                MemoryUnit::Gib,
            )
            .unwrap_err();
        assert!(matches!(err, WindowError::NotAfter { .. }), "{end}");
        assert_eq!(acc, before, "{end}");
    }
    assert_eq!(acc.next_window_start(), at("2026-11-21T01:00:00Z"));
}

#[test]
fn per_server_records_keep_hours_size_start_and_metadata() {
    let mut acc = Accounting::new(at(START));
    let mut s = usage("s1", 1.5, 1, 2048, 10);
    s.started_at = Some("2026-11-20T12:00:00.000000".into());
    acc.apply_window(
        at("2026-11-21T02:00:00Z"),
        &[tenant("a", vec![s.clone()])],
        MemoryUnit::Gib,
    )
    .unwrap();
    let metadata = BTreeMap::from([("project_name".to_owned(), "portal-x".to_owned())]);
    acc.note_metadata([("s1", &metadata)]);
    s.hours = 0.5;
    s.vcpus = 2;
    s.state = Some("terminated".into());
    s.ended_at = Some("2026-11-21T02:30:00.000000".into());
    acc.apply_window(
        at("2026-11-21T03:00:00Z"),
        &[tenant("a", vec![s])],
        MemoryUnit::Gib,
    )
    .unwrap();
    let r = &acc.servers["s1"];
    assert_eq!(r.hours, 2.0);
    assert_eq!(r.vcpus, 2);
    assert_eq!(r.started_at.as_deref(), Some("2026-11-20T12:00:00.000000"));
    assert_eq!(r.state.as_deref(), Some("terminated"));
    assert_eq!(
        r.metadata, metadata,
        "metadata survives the server's deletion"
    );
}

#[test]
fn recorded_pages_sum_per_tenant() {
    let mut tenants = Vec::new();
    for page in 1..=4 {
        let text = crate::sources::openstack::nova::tests::fixture(&format!(
            "nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page{page}.json"
        ));
        tenants.extend(
            serde_json::from_str::<UsagePage>(&text)
                .unwrap()
                .tenant_usages,
        );
    }
    let mut want: BTreeMap<&str, f64> = BTreeMap::new();
    for t in &tenants {
        for s in &t.server_usages {
            *want.entry(&t.tenant_id).or_default() += s.hours * s.vcpus as f64 * 3600.0;
        }
    }
    let mut acc = Accounting::new(at(START));
    acc.apply_window(at("2026-11-22T14:48:46Z"), &tenants, MemoryUnit::Gib)
        .unwrap();
    assert_eq!(acc.projects.len(), want.len());
    assert!(
        want.len() < tenants.len(),
        "the fixture splits a tenant over pages"
    );
    for (id, vcpu_seconds) in want {
        let got = acc.projects[id].vcpu_seconds;
        assert!(
            (got - vcpu_seconds).abs() < 1e-6,
            "{id}: {got} != {vcpu_seconds}"
        );
    }
    assert_eq!(acc.servers.len(), 11);
}

#[test]
fn snapshot_exports_keystone_projects_and_keeps_vanished_totals() {
    let mut acc = Accounting::new(at(START));
    acc.apply_window(
        at("2026-11-21T01:00:00Z"),
        &[
            tenant("a", vec![usage("s1", 1.0, 2, 1024, 1)]),
            tenant("gone", vec![usage("s2", 1.0, 1, 1024, 1)]),
        ],
        MemoryUnit::Gib,
    )
    .unwrap();
    let current = BTreeMap::from([(
        "a".to_owned(),
        (
            crate::snapshot::Allocation {
                vcpus: 2,
                memory_bytes: 1 << 30,
                disk_bytes: 1 << 30,
            },
            BTreeMap::from([("active".to_owned(), 1)]),
        ),
    )]);
    let snap = acc.snapshot(&[project("a"), project("idle")], &current);
    let ids: Vec<_> = snap
        .projects
        .iter()
        .map(|p| p.project.id.as_str())
        .collect();
    assert_eq!(ids, ["a", "idle"]);
    assert_eq!(snap.projects[0].totals.vcpu_seconds, 7200.0);
    assert_eq!(snap.projects[0].instances["active"], 1);
    assert_eq!(snap.projects[1].totals, UsageTotals::default());
    assert!(
        acc.projects.contains_key("gone"),
        "a deleted project's totals stay in the state"
    );
}
