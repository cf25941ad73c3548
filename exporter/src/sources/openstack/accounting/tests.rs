#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::openstack::nova::UsagePage;
use crate::sources::openstack::nova::{ServerUsage, TenantUsage};
use crate::weights::Weights;

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

fn project(id: &str) -> Arc<Project> {
    Arc::new(Project {
        id: id.into(),
        name: format!("{id}-name"),
        domain_id: "d".into(),
        domain_name: "default".into(),
        enabled: true,
    })
}

/// vcpu hours, memory GiB-hours, instance hours, legacy vcpu hours, legacy GiB-hours.
type Want = (f64, f64, f64, f64, f64);

fn legacy_of(
    acc: &Accounting,
    id: &str,
    options: &LegacyOptions,
    weights: &Weights,
) -> Vec<(String, f64, f64)> {
    acc.snapshot(&[project(id)], BTreeMap::new(), options, Some(weights))
        .legacy
        .into_iter()
        .map(|l| {
            (
                l.project.name.clone(),
                l.usage.vcpu_hours,
                l.usage.memory_hours,
            )
        })
        .collect()
}

const START: &str = "2026-11-21T00:00:00Z";

#[test]
fn windows_add_up() {
    struct Case {
        name: &'static str,
        /// (window end, tenants) applied in order.
        input: Vec<(&'static str, Vec<TenantUsage>)>,
        /// project -> (vcpu hours, memory GiB-hours, instance hours, legacy vcpu, legacy GiB);
        /// legacy values as 3.0.0 computes them: all hours at the current size.
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
            want: vec![("a", (5.0, 10.0, 2.0, 8.0, 16.0))],
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
            acc.apply_nova(at(end), tenants).unwrap();
        }
        for (id, want) in &c.want {
            let t = acc.project_totals(id).unwrap();
            let legacy = legacy_of(&acc, id, &LegacyOptions::default(), &Weights::default());
            assert_eq!(legacy.len(), 1, "{}", c.name);
            let got = (
                t.vcpu_seconds / 3600.0,
                t.memory_byte_seconds / 3600.0 / gib,
                t.instance_seconds / 3600.0,
                legacy[0].1,
                legacy[0].2,
            );
            assert_eq!(got, *want, "{}: {id}", c.name);
        }
        assert_eq!(acc.project_map().len(), c.want.len(), "{}", c.name);
    }
}

#[test]
fn window_must_advance_and_a_refused_window_changes_nothing() {
    let mut acc = Accounting::new(at(START));
    acc.apply_nova(
        at("2026-11-21T01:00:00Z"),
        &[tenant("a", vec![usage("s", 1.0, 1, 1024, 1)])],
    )
    .unwrap();
    let before = acc.clone();
    for end in [
        "2026-11-21T01:00:00Z",
        "2026-11-21T00:30:00Z",
        "2026-11-21T01:00:00.900Z",
    ] {
        let err = acc
            .apply_nova(at(end), &[tenant("a", vec![usage("s", 1.0, 1, 1024, 1)])])
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
    acc.apply_nova(at("2026-11-21T02:00:00Z"), &[tenant("a", vec![s.clone()])])
        .unwrap();
    let metadata = BTreeMap::from([("project_name".to_owned(), "portal-x".to_owned())]);
    acc.note_metadata_of(&[("s1", &metadata)]);
    s.hours = 0.5;
    s.vcpus = 2;
    s.state = Some("terminated".into());
    s.ended_at = Some("2026-11-21T02:30:00.000000".into());
    acc.apply_nova(at("2026-11-21T03:00:00Z"), &[tenant("a", vec![s])])
        .unwrap();
    let r = acc.server("s1").unwrap();
    assert_eq!(r.hours, 2.0);
    assert_eq!(r.vcpus, 2);
    assert_eq!(
        Some(r.started_at),
        crate::sources::openstack::nova::epoch_seconds("2026-11-20T12:00:00.000000")
    );
    assert_eq!(
        r.metadata, &metadata,
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
    acc.apply_nova(at("2026-11-22T14:48:46Z"), &tenants)
        .unwrap();
    assert_eq!(acc.project_map().len(), want.len());
    assert!(
        want.len() < tenants.len(),
        "the fixture splits a tenant over pages"
    );
    for (id, vcpu_seconds) in want {
        let got = acc.project_totals(id).unwrap().vcpu_seconds;
        assert!(
            (got - vcpu_seconds).abs() < 1e-6,
            "{id}: {got} != {vcpu_seconds}"
        );
    }
    assert_eq!(acc.server_count(), 11);
}

#[test]
fn snapshot_exports_keystone_projects_and_keeps_vanished_totals() {
    let mut acc = Accounting::new(at(START));
    acc.apply_nova(
        at("2026-11-21T01:00:00Z"),
        &[
            tenant("a", vec![usage("s1", 1.0, 2, 1024, 1)]),
            tenant("gone", vec![usage("s2", 1.0, 1, 1024, 1)]),
        ],
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
    let snap = acc.snapshot(
        &[project("a"), project("idle")],
        current,
        &LegacyOptions::default(),
        Some(&Weights::default()),
    );
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
        acc.project_totals("gone").is_some(),
        "a deleted project's totals stay in the state"
    );
}

#[test]
fn legacy_series_are_recomputed_with_the_weights_in_force() {
    // Two servers of one project, started under different weights sets; the legacy values
    // follow the weights passed in, the base-unit totals do not change.
    let mut acc = Accounting::new(at(START));
    let mut old = usage("old", 10.0, 2, 4096, 10);
    old.started_at = Some("2026-11-20T00:00:00.000000".into());
    let mut new = usage("new", 4.0, 8, 16384, 10);
    new.started_at = Some("2026-11-21T06:00:00.000000".into());
    acc.apply_nova(at("2026-11-21T10:00:00Z"), &[tenant("a", vec![old, new])])
        .unwrap();
    let set_since = at("2026-11-21T00:00:00Z")
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let weights = Weights::from_json(
        format!(
            r#"[{{"resource_set_timestamp": 0, "vcpus": [{{"value": 4, "weight": 2}}], "memory_mb": [{{"value": 4, "weight": 3}}]}},
                {{"resource_set_timestamp": {set_since}, "vcpus": [{{"value": 8, "weight": 0.5}}], "memory_mb": []}}]"#
        )
        .as_bytes(),
    )
    .unwrap();
    struct Case {
        name: &'static str,
        weights: Weights,
        want: (f64, f64),
    }
    let cases = [
        Case {
            name: "no weights: weight 1",
            weights: Weights::default(),
            want: (10.0 * 2.0 + 4.0 * 8.0, 10.0 * 4.0 + 4.0 * 16.0),
        },
        Case {
            name: "old server under the first set, new under the second",
            weights,
            want: (
                10.0 * 2.0 * 2.0 + 4.0 * 8.0 * 0.5,
                10.0 * 4.0 * 3.0 + 4.0 * 16.0 * 1.0,
            ),
        },
    ];
    for c in cases {
        let got = legacy_of(&acc, "a", &LegacyOptions::default(), &c.weights);
        assert_eq!(
            got,
            vec![("a-name".to_owned(), c.want.0, c.want.1)],
            "{}",
            c.name
        );
    }
    // Withheld while weights are configured but not loaded.
    let snap = acc.snapshot(
        &[project("a")],
        BTreeMap::new(),
        &LegacyOptions::default(),
        None,
    );
    assert!(snap.legacy.is_empty());
    assert_eq!(snap.projects[0].totals.vcpu_seconds, (20.0 + 32.0) * 3600.0);
}

#[test]
fn simple_vm_split_keeps_deleted_servers_under_their_tag() {
    let svm = LegacyOptions {
        memory_unit: crate::legacy::MemoryUnit::Gib,
        simple_vm: Some(crate::legacy::SimpleVm {
            project_id: "svm".into(),
            tag: "project_name".into(),
        }),
    };
    let mut acc = Accounting::new(at(START));
    acc.apply_nova(
        at("2026-11-21T01:00:00Z"),
        &[tenant(
            "svm",
            vec![
                usage("g1", 1.0, 2, 2048, 10),
                usage("g2", 1.0, 4, 4096, 10),
                usage("t1", 1.0, 1, 1024, 10),
                usage("untagged", 1.0, 1, 1024, 10),
            ],
        )],
    )
    .unwrap();
    let tag = |v: &str| BTreeMap::from([("project_name".to_owned(), v.to_owned())]);
    let (genomics, teaching) = (tag("genomics"), tag("teaching"));
    acc.note_metadata_of(&[("g1", &genomics), ("g2", &genomics), ("t1", &teaching)]);
    let before = legacy_of(&acc, "svm", &svm, &Weights::default());
    assert_eq!(
        before,
        vec![
            ("genomics".to_owned(), 2.0 + 4.0, 2.0 + 4.0),
            ("teaching".to_owned(), 1.0, 1.0),
        ]
    );
    // g2 is deleted: absent from the next window and from the servers list. Its hours stay
    // with its portal project.
    acc.apply_nova(
        at("2026-11-21T02:00:00Z"),
        &[tenant("svm", vec![usage("g1", 1.0, 2, 2048, 10)])],
    )
    .unwrap();
    acc.note_metadata_of(&[("g1", &genomics)]);
    let after = legacy_of(&acc, "svm", &svm, &Weights::default());
    assert_eq!(
        after,
        vec![
            ("genomics".to_owned(), 2.0 * 2.0 + 4.0, 2.0 * 2.0 + 4.0),
            ("teaching".to_owned(), 1.0, 1.0),
        ]
    );
}

#[test]
fn windows_whose_sums_are_not_finite_are_refused() {
    // Found by tests/properties.rs: Nova hours of 1e308 made the totals infinite; saved as
    // JSON null, the state file was then set aside at the next start, losing the accounting.
    struct Case {
        name: &'static str,
        before: Vec<TenantUsage>,
        window: Vec<TenantUsage>,
        want_ok: bool,
    }
    let cases = [
        Case {
            name: "ordinary hours",
            before: vec![],
            window: vec![tenant("p", vec![usage("s", 1.0, 2, 512, 1)])],
            want_ok: true,
        },
        Case {
            name: "hours 1e308",
            before: vec![],
            window: vec![tenant("p", vec![usage("s", 1e308, 1, 512, 1)])],
            want_ok: false,
        },
        Case {
            name: "finite seconds, infinite bytes",
            before: vec![],
            window: vec![tenant("p", vec![usage("s", 1e290, 1, u64::MAX, 1)])],
            want_ok: false,
        },
        Case {
            name: "each finite, the sum not",
            before: vec![tenant("p", vec![usage("a", 3e304, 1, 0, 0)])],
            window: vec![tenant("p", vec![usage("b", 3e304, 1, 0, 0)])],
            want_ok: false,
        },
    ];
    for c in cases {
        let start = at("2024-01-01T00:00:00Z");
        let mut acc = Accounting::new(start);
        acc.apply_nova(start + Duration::from_secs(60), &c.before)
            .unwrap();
        let before = acc.clone();
        let got = acc.apply_nova(start + Duration::from_secs(120), &c.window);
        assert_eq!(got.is_ok(), c.want_ok, "{}: {got:?}", c.name);
        if c.want_ok {
            assert_eq!(
                acc.implausible(start + Duration::from_secs(120)),
                None,
                "{}",
                c.name
            );
        } else {
            assert_eq!(
                acc, before,
                "{}: a refused window changed the accounting",
                c.name
            );
        }
    }
}

#[test]
fn a_server_whose_hours_would_not_be_finite_is_named_and_nothing_is_added() {
    // A record near the largest number (a state file may hold one): its own hours overflow
    // before any project total does. Listed twice in one window, the second addition does.
    let start = at("2024-01-01T00:00:00Z");
    let mut base = Accounting::new(start);
    base.apply_nova(
        start + Duration::from_secs(60),
        &[tenant(
            "p",
            vec![usage("a", 1.0, 1, 0, 0), usage("b", 1.0, 1, 0, 0)],
        )],
    )
    .unwrap();
    let a = *base.index.get(&ServerId::new("a")).unwrap();
    base.records[a as usize].hours = f64::MAX * 0.99999;
    let cases: [(&str, Vec<ServerUsage>, Option<&str>); 4] = [
        ("once, room left", vec![usage("a", 1e303, 1, 0, 0)], None),
        (
            "twice, the second overflows",
            vec![
                usage("b", 1.0, 1, 0, 0),
                usage("a", 1e303, 1, 0, 0),
                usage("a", 1e303, 1, 0, 0),
            ],
            Some("a"),
        ),
        (
            "once, too much",
            vec![usage("a", 1e304, 1, 0, 0)],
            Some("a"),
        ),
        (
            "a new server twice, each finite",
            vec![usage("c", 4e304, 1, 0, 0), usage("c", 4e304, 1, 0, 0)],
            Some("c"),
        ),
    ];
    for (what, servers, refused) in cases {
        let mut acc = base.clone();
        let got = acc.apply_nova(start + Duration::from_secs(120), &[tenant("q", servers)]);
        match refused {
            None => assert!(got.is_ok(), "{what}: {got:?}"),
            Some(server) => {
                assert_eq!(
                    got,
                    Err(WindowError::NotFinite {
                        project: "q".into(),
                        server: server.into()
                    }),
                    "{what}"
                );
                assert_eq!(acc, base, "{what}: a refused window changed the accounting");
            }
        }
    }
}

#[test]
fn metadata_is_taken_in_from_changed_entries_and_kept_pending_until_a_record_exists() {
    use crate::sources::openstack::nova::{compact_servers, ServersPage};
    use crate::sources::openstack::servers::ServerTable;
    let servers =
        serde_json::from_str::<ServersPage>(&crate::sources::openstack::nova::tests::fixture(
            "nova_servers_detail_all_tenants_changes_since_mv2.47.json",
        ))
        .unwrap()
        .servers;
    let mut table = ServerTable::from_listing(compact_servers(servers.clone()));
    let text = |ids: &[ServerId]| -> Vec<String> { ids.iter().map(ServerId::to_text).collect() };
    let offered =
        |table: &ServerTable| -> Vec<String> { table.unnoted().map(|s| s.id.to_text()).collect() };
    let live: Vec<String> = table.live().map(|s| s.id.to_text()).collect();
    // A full listing: every live server is to be taken in.
    assert_eq!(offered(&table), live);
    // The accounting has a record of the first server only: the others stay pending.
    let mut acc = Accounting::new(at(START));
    acc.apply_nova(
        at("2026-11-21T01:00:00Z"),
        &[tenant("p", vec![usage(&live[0], 1.0, 1, 1024, 1)])],
    )
    .unwrap();
    let missing = acc.note_metadata(table.unnoted().map(|s| (&s.id, &s.metadata)));
    assert_eq!(text(&missing), live[1..]);
    let first = servers.iter().find(|s| s.id == live[0]).unwrap();
    assert!(
        !first.metadata.is_empty(),
        "the recorded server carries metadata"
    );
    assert_eq!(acc.server(&live[0]).unwrap().metadata, &first.metadata);
    table.noted(missing);
    // A refresh that merges nothing: only the pending ones are offered again; once a
    // window gave the second one a record, its metadata is taken in.
    table.merge(vec![]);
    acc.apply_nova(
        at("2026-11-21T02:00:00Z"),
        &[tenant("p", vec![usage(&live[1], 1.0, 1, 1024, 1)])],
    )
    .unwrap();
    assert_eq!(offered(&table), live[1..]);
    let missing = acc.note_metadata(table.unnoted().map(|s| (&s.id, &s.metadata)));
    assert_eq!(text(&missing), live[2..]);
    let second = servers.iter().find(|s| s.id == live[1]).unwrap();
    assert_eq!(acc.server(&live[1]).unwrap().metadata, &second.metadata);
    table.noted(missing);
    // A merged entry is offered again (its metadata may have changed), a deleted one not.
    let mut changed = second.clone();
    changed.metadata.insert("role".into(), "changed".into());
    let mut gone = servers.iter().find(|s| s.id == live[0]).unwrap().clone();
    gone.status = "DELETED".into();
    table.noted(Vec::new());
    table.merge(compact_servers(vec![changed.clone(), gone]));
    assert_eq!(offered(&table), [changed.id.clone()]);
    assert!(acc
        .note_metadata(table.unnoted().map(|s| (&s.id, &s.metadata)))
        .is_empty());
    assert_eq!(acc.server(&live[1]).unwrap().metadata, &changed.metadata);
    // After the accounting was reloaded (renote_all): every existing server again.
    table.noted(Vec::new());
    table.renote_all();
    assert_eq!(offered(&table), live[1..]);
}

#[test]
fn records_are_found_alike_one_by_one_and_walking_the_index() {
    // 2,600 servers with records (UUIDs and other ids) in two projects, then windows of few
    // and of many servers, known and new, in Nova's order (by project, then id) and in others,
    // one server under another project than before. After each window is applied, the
    // projects' server lists kept up to date equal lists built afresh.
    let id = |i: u32| -> String {
        if i % 7 == 0 {
            format!("server-{i}")
        } else {
            format!(
                "{:08x}-1111-4a2b-9c3d-{:012x}",
                i.wrapping_mul(2_654_435_761),
                i
            )
        }
    };
    let group = |project: &str, servers: &[u32], sorted: bool| {
        let mut ids: Vec<String> = servers.iter().map(|&i| id(i)).collect();
        if sorted {
            ids.sort();
        }
        tenant(
            project,
            ids.iter().map(|i| usage(i, 1.0, 1, 512, 1)).collect(),
        )
    };
    let mut base = Accounting::new(at(START));
    let p: Vec<u32> = (0..2000).collect();
    let q: Vec<u32> = (2000..2600).collect();
    base.apply_nova(
        at("2026-11-21T01:00:00Z"),
        &[group("p", &p, false), group("q", &q, false)],
    )
    .unwrap();
    let cases: [(&str, Vec<u32>, Vec<u32>, bool); 6] = [
        ("few, known and new", vec![5, 3000, 14, 1999], vec![], false),
        ("many, known", (0..1500).rev().collect(), vec![7], false),
        (
            "many, known, in order",
            (0..1500).collect(),
            vec![7, 2100],
            true,
        ),
        ("many, half new", (1000..3000).collect(), vec![], false),
        (
            "many, half new, in order",
            (1000..3000).collect(),
            (2300..2700).chain([9]).collect(),
            true,
        ),
        (
            "every one and more, twice",
            (0..2100).step_by(3).chain(1..50).collect(),
            (2000..2600).collect(),
            true,
        ),
    ];
    for (what, in_p, in_q, sorted) in cases {
        let window = crate::sources::openstack::nova::compact_usage(vec![
            group("p", &in_p, sorted),
            group("q", &in_q, sorted),
        ]);
        let mut acc = base.clone();
        let want: Vec<Option<u32>> = window
            .iter()
            .flat_map(|p| &p.servers)
            .map(|u| acc.index.get(&u.id).copied())
            .collect();
        assert_eq!(acc.slots(&window), want, "{what}");
        assert!(want.iter().any(Option::is_some), "{what}");
        acc.apply_window(at("2026-11-21T02:00:00Z"), &window)
            .unwrap();
        assert_eq!(acc.members.get(), Some(&Members::of(&acc)), "{what}");
        let q = acc.projects.find("q").unwrap();
        let moved = acc.members.get().unwrap().of_project(q);
        assert_eq!(
            moved.iter().any(|(s, _)| *s == ServerId::new(&id(7))),
            in_q.contains(&7),
            "{what}"
        );
    }
}
