#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::openstack::nova::{ServerUsage, TenantUsage};
use std::path::{Path, PathBuf};

const CLOUD: &str = "http://127.0.0.1:5000/v3";

fn accounting(start: u64) -> Accounting {
    let mut acc = Accounting::new(UNIX_EPOCH + std::time::Duration::from_secs(start));
    let usage = TenantUsage {
        tenant_id: "p".into(),
        server_usages: vec![ServerUsage {
            instance_id: "s".into(),
            hours: 1.25,
            vcpus: 2,
            memory_mb: 2048,
            local_gb: 10,
            ..Default::default()
        }],
    };
    acc.apply_nova(
        UNIX_EPOCH + std::time::Duration::from_secs(start + 7200),
        &[usage],
    )
    .unwrap();
    acc
}

fn v1_of(acc: &Accounting) -> v1::AccountingV1 {
    v1::AccountingV1::of(acc)
}

#[test]
fn round_trip_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    assert_eq!(load(&path, CLOUD).unwrap(), Loaded::Missing);
    let acc = accounting(1000);
    save(&path, CLOUD, &acc, &Stopped::default()).unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(acc, Stopped::default())
    );
    assert!(!dir.path().join("state.json.tmp").exists());
}

#[test]
fn a_state_with_another_start_is_resumed_not_set_aside() {
    // The caller compares the starts and reports the conflict; the data is this cloud's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let acc = accounting(5000);
    save(&path, CLOUD, &acc, &Stopped::default()).unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(acc, Stopped::default())
    );
}

#[test]
fn a_state_written_by_the_previous_build_resumes() {
    // Version 1 as first released kept unweighted legacy sums per project; they are now
    // recomputed from the server records, so the fields are ignored.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(
        &path,
        r#"{"version":1,"cloud":"http://127.0.0.1:5000/v3","accounting":{"usage_start":1000,"window_end":8200,
           "projects":{"p":{"vcpu_seconds":9000.0,"memory_byte_seconds":9663676416000.0,"disk_byte_seconds":48318382080000.0,
           "instance_seconds":4500.0,"legacy_vcpu_hours":2.5,"legacy_memory_hours":2.5}},
           "servers":{"s":{"project_id":"p","name":"","hours":1.25,"vcpus":2,"memory_mb":2048,"local_gb":10,
           "flavor":null,"started_at":null,"ended_at":null,"state":null,"metadata":{}}}}}"#,
    )
    .unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(accounting(1000), Stopped::default())
    );
}

/// A version-1 state of this cloud with the given fields, written by hand.
fn raw(usage_start: u64, window_end: u64, vcpu_seconds: &str, hours: &str) -> Vec<u8> {
    format!(
        r#"{{"version":1,"cloud":"{CLOUD}","accounting":{{"usage_start":{usage_start},"window_end":{window_end},
           "projects":{{"p":{{"vcpu_seconds":{vcpu_seconds},"memory_byte_seconds":0.0,"disk_byte_seconds":0.0,"instance_seconds":0.0}}}},
           "servers":{{"s":{{"project_id":"p","name":"s","hours":{hours},"vcpus":1,"memory_mb":512,"local_gb":1,
           "flavor":null,"started_at":null,"ended_at":null,"state":null}}}}}}}}"#
    )
    .into_bytes()
}

#[test]
fn untrusted_files_are_set_aside_not_deleted() {
    struct Case {
        name: &'static str,
        input: Vec<u8>,
        want_reason: &'static str,
    }
    let good = |cloud: &str, start: u64, version: u32| {
        serde_json::to_vec(&v1::StateFile {
            version,
            cloud: cloud.into(),
            accounting: v1_of(&accounting(start)),
            stopped: Stopped::default(),
        })
        .unwrap()
    };
    let cases = [
        Case {
            name: "corrupt",
            input: b"{\"version\": 1, \"clo".to_vec(),
            want_reason: "not a state file",
        },
        Case {
            name: "not json at all",
            input: b"\x00\x01binary".to_vec(),
            want_reason: "not a state file",
        },
        Case {
            name: "unknown version",
            input: good(CLOUD, 1000, 99),
            want_reason: "unknown version 99",
        },
        Case {
            name: "other cloud",
            input: good("https://other:5000/v3", 1000, 1),
            want_reason: "belongs to cloud",
        },
        // Values that parse but would panic or count nonsense later.
        Case {
            name: "window end past any clock",
            input: raw(1000, u64::MAX, "1.0", "1.0"),
            want_reason: "in the future",
        },
        Case {
            name: "start and end past any clock",
            input: raw(u64::MAX - 1, u64::MAX, "1.0", "1.0"),
            want_reason: "in the future",
        },
        Case {
            name: "window end before the start",
            input: raw(5000, 1000, "1.0", "1.0"),
            want_reason: "window end before usage_start",
        },
        Case {
            name: "negative total",
            input: raw(1000, 8200, "-5.0", "1.0"),
            want_reason: "project p: a total is negative",
        },
        Case {
            name: "negative hours",
            input: raw(1000, 8200, "1.0", "-2.0"),
            want_reason: "server s: hours negative",
        },
        Case {
            name: "a total out of range",
            input: raw(1000, 8200, "1e999", "1.0"),
            want_reason: "not a state file",
        },
    ];
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, &c.input).unwrap();
        match load(&path, CLOUD).unwrap() {
            Loaded::SetAside { reason, moved_to } => {
                assert!(reason.contains(c.want_reason), "{}: {reason}", c.name);
                assert_eq!(std::fs::read(&moved_to).unwrap(), c.input, "{}", c.name);
                assert!(!path.exists(), "{}", c.name);
            }
            other => panic!("{}: {other:?}", c.name),
        }
        // A second set-aside file gets its own name.
        std::fs::write(&path, &c.input).unwrap();
        let Loaded::SetAside { moved_to, .. } = load(&path, CLOUD).unwrap() else {
            panic!("{}", c.name)
        };
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "{}: {moved_to:?}",
            c.name
        );
    }
}

#[test]
fn a_hand_written_plausible_state_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, raw(1000, 8200, "9000.0", "1.25")).unwrap();
    let Loaded::Resumed(acc, _) = load(&path, CLOUD).unwrap() else {
        panic!("resumed")
    };
    assert_eq!(acc.window_end, 8200);
}

#[test]
fn dates_past_any_clock_print_as_numbers() {
    assert_eq!(fmt_epoch(0), "1970-01-01T00:00:00Z");
    assert_eq!(fmt_epoch(u64::MAX), u64::MAX.to_string());
}

#[test]
fn unwritable_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that cannot be created: a regular file stands in its way.
    std::fs::write(dir.path().join("missing-dir"), "a file").unwrap();
    let path = dir.path().join("missing-dir").join("state.json");
    let err = save(&path, CLOUD, &accounting(0), &Stopped::default()).unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[test]
fn stopped_servers_survive_a_restart_and_old_files_load_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let stopped = Stopped {
        seen_at: Some(8200),
        servers: [(
            "s".to_owned(),
            crate::sources::openstack::stopped::Since {
                status: "shelved_offloaded".into(),
                since: 4000,
            },
        )]
        .into(),
    };
    save(&path, CLOUD, &accounting(1000), &stopped).unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(accounting(1000), stopped)
    );
    // A file of the build before: no `stopped` key, nothing else lost.
    std::fs::write(&path, raw(1000, 8200, "9000.0", "1.25")).unwrap();
    let Loaded::Resumed(acc, stopped) = load(&path, CLOUD).unwrap() else {
        panic!("resumed")
    };
    assert_eq!(acc.project_totals("p").unwrap().vcpu_seconds, 9000.0);
    assert_eq!(stopped, Stopped::default());
}

/// A usage of server `id` in project `project`.
fn usage(id: &str, hours: f64, vcpus: u64) -> ServerUsage {
    ServerUsage {
        instance_id: id.into(),
        hours,
        vcpus,
        memory_mb: 1024 * vcpus,
        local_gb: 10,
        started_at: Some("2026-11-20T12:00:00.250000".into()),
        ..Default::default()
    }
}

const UUID_A: &str = "0b4f8c2e-1111-4a2b-9c3d-000000000001";
const UUID_B: &str = "0b4f8c2e-1111-4a2b-9c3d-000000000002";

/// Refresh `n` of a small cloud: servers come, resize, get metadata, stop, go; hours that
/// do not add up exactly in floating point.
fn refresh(acc: &mut Accounting, stopped: &mut Stopped, n: u64) {
    let mut p = vec![
        usage(UUID_A, 0.1 * n as f64, 1),
        usage("s-other", 1.0 / 3.0, 2),
    ];
    if n >= 2 {
        p.push(usage(UUID_B, 0.7, 1 + n % 2));
    }
    let mut q = vec![usage("q1", 0.3, 4)];
    if n % 3 == 0 {
        q.push(usage(&format!("new-{n}"), 0.05, 1));
    }
    let tenants = [
        TenantUsage {
            tenant_id: "p".into(),
            server_usages: p,
        },
        TenantUsage {
            tenant_id: format!("q{}", n % 2),
            server_usages: q,
        },
    ];
    let end = acc.window_end + 600;
    acc.apply_nova(UNIX_EPOCH + std::time::Duration::from_secs(end), &tenants)
        .unwrap();
    let tag = BTreeMap::from([("tag".to_owned(), format!("t{}", n % 2))]);
    acc.note_metadata_of(&[(UUID_A, &tag), ("q1", &tag)]);
    stopped.seen_at = Some(end);
    if n % 2 == 0 {
        stopped.servers.insert(
            "q1".into(),
            crate::sources::openstack::stopped::Since {
                status: "shutoff".into(),
                since: end,
            },
        );
    } else {
        stopped.servers.remove("q1");
    }
}

use std::collections::BTreeMap;

#[test]
fn every_save_appends_an_entry_and_a_restart_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (loaded, mut store) = open(&path, CLOUD).unwrap();
    assert_eq!(loaded, Loaded::Missing);
    let mut acc = accounting(1000);
    let mut stopped = Stopped::default();
    let first = store.save(&mut acc, &stopped).unwrap();
    assert!(first.compacted, "the first save writes a snapshot");
    for n in 1..=12 {
        refresh(&mut acc, &mut stopped, n);
        let saved = store.save(&mut acc, &stopped).unwrap();
        assert!(!saved.compacted, "refresh {n}");
        assert!(saved.bytes < 700, "refresh {n}: {} bytes", saved.bytes);
        let (loaded, _) = open(&path, CLOUD).unwrap();
        assert_eq!(
            loaded,
            Loaded::Resumed(acc.clone(), stopped.clone()),
            "refresh {n}"
        );
    }
    // A resumed store appends to the same log.
    let (Loaded::Resumed(mut resumed, mut rs), mut store) = open(&path, CLOUD).unwrap() else {
        panic!("resumed")
    };
    refresh(&mut resumed, &mut rs, 13);
    refresh(&mut acc, &mut stopped, 13);
    assert!(!store.save(&mut resumed, &rs).unwrap().compacted);
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(acc.clone(), stopped.clone())
    );
    // A compaction folds the log into a new snapshot; nothing counts twice.
    store.compact(&mut resumed, &rs).unwrap();
    assert_eq!(
        load(&path, CLOUD).unwrap(),
        Loaded::Resumed(acc.clone(), stopped.clone())
    );
    assert_eq!(
        std::fs::metadata(log_path(&path)).unwrap().len(),
        format::LOG_HEADER_LEN
    );
}

/// The state files after `n` refreshes saved to a log, and the state after each of them.
fn history(dir: &Path, n: u64) -> (PathBuf, Vec<(Accounting, Stopped)>) {
    let path = dir.join("state");
    let (_, mut store) = open(&path, CLOUD).unwrap();
    let mut acc = accounting(1000);
    let mut stopped = Stopped::default();
    store.save(&mut acc, &stopped).unwrap();
    let mut states = vec![(acc.clone(), stopped.clone())];
    for i in 1..=n {
        refresh(&mut acc, &mut stopped, i);
        store.save(&mut acc, &stopped).unwrap();
        states.push((acc.clone(), stopped.clone()));
    }
    (path, states)
}

#[test]
fn a_log_cut_at_any_byte_resumes_exactly_the_old_or_the_new_state() {
    // A kill in the middle of an append leaves a prefix of the entry; a power loss may leave
    // its last pages unwritten. Every cut must load as the state before that entry or after
    // it, never a mix, never a reset, and the next append must follow on cleanly.
    let dir = tempfile::tempdir().unwrap();
    let (path, states) = history(dir.path(), 6);
    let log = std::fs::read(log_path(&path)).unwrap();
    // Entry boundaries: after the header, after each entry.
    let mut ends = vec![format::LOG_HEADER_LEN as usize];
    while *ends.last().unwrap() < log.len() {
        let at = *ends.last().unwrap();
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        ends.push(at + 8 + len);
    }
    assert_eq!(ends.len(), states.len());
    let snapshot = std::fs::read(&path).unwrap();
    for cut in format::LOG_HEADER_LEN as usize..=log.len() {
        let case = tempfile::tempdir().unwrap();
        let p = case.path().join("state");
        std::fs::write(&p, &snapshot).unwrap();
        std::fs::write(log_path(&p), &log[..cut]).unwrap();
        let complete = ends.iter().filter(|&&e| e <= cut).count() - 1;
        let (loaded, mut store) = open(&p, CLOUD).unwrap();
        let (want_acc, want_stopped) = &states[complete];
        assert_eq!(
            loaded,
            Loaded::Resumed(want_acc.clone(), want_stopped.clone()),
            "cut at byte {cut}"
        );
        assert_eq!(
            std::fs::metadata(log_path(&p)).unwrap().len() as usize,
            ends[complete],
            "cut at byte {cut}: the torn entry is dropped"
        );
        // The next refresh appends after the last complete entry.
        let (mut acc, mut stopped) = (want_acc.clone(), want_stopped.clone());
        acc.start_journal();
        refresh(&mut acc, &mut stopped, 99);
        assert!(!store.save(&mut acc, &stopped).unwrap().compacted);
        assert_eq!(
            load(&p, CLOUD).unwrap(),
            Loaded::Resumed(acc, stopped),
            "cut at byte {cut}, then a save"
        );
    }
}

#[test]
fn a_compaction_killed_between_its_renames_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (path, states) = history(dir.path(), 4);
    let old_log = std::fs::read(log_path(&path)).unwrap();
    let (Loaded::Resumed(mut acc, stopped), mut store) = open(&path, CLOUD).unwrap() else {
        panic!("resumed")
    };
    store.compact(&mut acc, &stopped).unwrap();
    // As if killed after the snapshot's rename, before the log's: the old log is still there.
    std::fs::write(log_path(&path), &old_log).unwrap();
    // A half-written temporary file is never read.
    std::fs::write(dir.path().join("state.tmp"), b"SXOSSNAP\x02").unwrap();
    let (last_acc, last_stopped) = states.last().unwrap().clone();
    let (loaded, mut store) = open(&path, CLOUD).unwrap();
    assert_eq!(
        loaded,
        Loaded::Resumed(last_acc.clone(), last_stopped.clone())
    );
    // The next save replaces the stale log (a compaction), and the state stays exact.
    let (mut acc, mut stopped) = (last_acc, last_stopped);
    acc.start_journal();
    refresh(&mut acc, &mut stopped, 5);
    assert!(store.save(&mut acc, &stopped).unwrap().compacted);
    assert_eq!(load(&path, CLOUD).unwrap(), Loaded::Resumed(acc, stopped));
}

#[test]
fn damage_inside_the_state_sets_both_files_aside_naming_file_and_offset() {
    struct Case {
        name: &'static str,
        log: bool,
        at: fn(usize) -> usize,
        want: &'static str,
    }
    let cases = [
        Case {
            name: "a flipped byte in the snapshot",
            log: false,
            at: |len| len / 2,
            want: "checksum mismatch",
        },
        Case {
            name: "a flipped byte in the first log entry",
            log: true,
            at: |_| format::LOG_HEADER_LEN as usize + 12,
            want: "entry checksum mismatch",
        },
        Case {
            name: "a flipped byte in the log header",
            log: true,
            at: |_| 9,
            want: "log header checksum mismatch",
        },
    ];
    for c in cases {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = history(dir.path(), 3);
        let target = if c.log { log_path(&path) } else { path.clone() };
        let mut bytes = std::fs::read(&target).unwrap();
        let at = (c.at)(bytes.len());
        bytes[at] ^= 0x40;
        std::fs::write(&target, &bytes).unwrap();
        let (loaded, _) = open(&path, CLOUD).unwrap();
        let Loaded::SetAside { reason, moved_to } = loaded else {
            panic!("{}: {loaded:?}", c.name)
        };
        assert!(reason.contains(c.want), "{}: {reason}", c.name);
        assert!(reason.contains("at byte"), "{}: {reason}", c.name);
        assert!(moved_to.exists() && !path.exists(), "{}", c.name);
        let moved_log = PathBuf::from(format!("{}.log", moved_to.display()));
        assert!(moved_log.exists(), "{}: the log goes aside too", c.name);
        assert!(!log_path(&path).exists(), "{}", c.name);
    }
}

#[test]
fn a_version_1_file_is_migrated_with_every_total_and_record_bit_for_bit() {
    // Written as the previous build wrote it: sums that are not round in floating point,
    // starts with microseconds, unknown starts, metadata, fields no longer kept.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let totals = |x: f64| crate::sources::openstack::accounting::ProjectTotals {
        vcpu_seconds: x,
        memory_byte_seconds: x * 1048576.0,
        disk_byte_seconds: x * 3.0e9,
        instance_seconds: x / 3.0,
    };
    let record = |project: &str, hours: f64, started: Option<&str>, tag: &str| v1::ServerRecordV1 {
        project_id: project.into(),
        name: "vm".into(),
        hours,
        vcpus: 3,
        memory_mb: 6144,
        local_gb: 20,
        flavor: Some("m1.large".into()),
        started_at: started.map(Into::into),
        ended_at: None,
        state: Some("active".into()),
        metadata: if tag.is_empty() {
            BTreeMap::new()
        } else {
            BTreeMap::from([("project_name".to_owned(), tag.to_owned())])
        },
    };
    let file = v1::StateFile {
        version: 1,
        cloud: CLOUD.into(),
        accounting: v1::AccountingV1 {
            usage_start: 1000,
            window_end: 1_764_000_000,
            projects: BTreeMap::from([
                ("p".to_owned(), totals(0.1 + 0.2)),
                ("q".to_owned(), totals(1.0 / 3.0)),
                ("gone".to_owned(), totals(7.0)),
            ]),
            servers: BTreeMap::from([
                (
                    UUID_A.to_owned(),
                    record("p", 0.1 + 0.7, Some("2026-11-20T12:00:00.123456"), "x"),
                ),
                (UUID_B.to_owned(), record("p", 2.0 / 3.0, None, "y")),
                ("s-other".to_owned(), record("q", 1e-9, Some("garbage"), "")),
                (
                    "s2".to_owned(),
                    record("q", 5.5, Some("2026-11-21T00:00:00Z"), "x"),
                ),
            ]),
        },
        stopped: Stopped {
            seen_at: Some(1_764_000_000),
            servers: BTreeMap::from([(
                "s2".to_owned(),
                crate::sources::openstack::stopped::Since {
                    status: "shutoff".into(),
                    since: 1_763_000_000,
                },
            )]),
        },
    };
    let json = serde_json::to_vec(&file).unwrap();
    std::fs::write(&path, &json).unwrap();
    let (loaded, mut store) = open(&path, CLOUD).unwrap();
    let Loaded::Resumed(mut acc, stopped) = loaded else {
        panic!("migrated, not {loaded:?}")
    };
    let check = |acc: &Accounting, when: &str| {
        for (id, want) in &file.accounting.projects {
            let got = acc.project_totals(id).unwrap();
            for (g, w) in [
                (got.vcpu_seconds, want.vcpu_seconds),
                (got.memory_byte_seconds, want.memory_byte_seconds),
                (got.disk_byte_seconds, want.disk_byte_seconds),
                (got.instance_seconds, want.instance_seconds),
            ] {
                assert_eq!(g.to_bits(), w.to_bits(), "{when}: project {id}");
            }
        }
        assert_eq!(acc.project_map().len(), 3, "{when}");
        assert_eq!(acc.server_count(), 4, "{when}");
        for (id, want) in &file.accounting.servers {
            let got = acc.server(id).unwrap();
            assert_eq!(got.project_id, want.project_id, "{when}: {id}");
            assert_eq!(got.hours.to_bits(), want.hours.to_bits(), "{when}: {id}");
            assert_eq!((got.vcpus, got.memory_mb), (3, 6144), "{when}: {id}");
            let start = want
                .started_at
                .as_deref()
                .and_then(crate::sources::openstack::nova::epoch_seconds)
                .unwrap_or(0.0);
            assert_eq!(got.started_at.to_bits(), start.to_bits(), "{when}: {id}");
            assert_eq!(got.metadata, &want.metadata, "{when}: {id}");
        }
        assert_eq!(acc.window_end, 1_764_000_000);
        assert_eq!(acc.usage_start, 1000);
    };
    check(&acc, "migrated");
    assert_eq!(stopped, file.stopped);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        json,
        "the JSON file stays until the first save"
    );
    let saved = store.save(&mut acc, &stopped).unwrap();
    assert!(saved.compacted, "the first save writes the new format");
    assert!(std::fs::read(&path)
        .unwrap()
        .starts_with(format::SNAPSHOT_MAGIC));
    let (Loaded::Resumed(again, again_stopped), _) = open(&path, CLOUD).unwrap() else {
        panic!("resumed")
    };
    check(&again, "after save and load");
    assert_eq!(again_stopped, file.stopped);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !leftovers.iter().any(|n| n.contains("set-aside")),
        "{leftovers:?}"
    );
}

#[test]
fn stopped_changes_are_what_turns_the_written_map_into_the_current_one() {
    use crate::sources::openstack::stopped::Since;
    fn map(entries: &[(&str, &str, u64)]) -> BTreeMap<String, Since> {
        entries
            .iter()
            .map(|&(id, status, since)| {
                let status = status.to_owned();
                (id.to_owned(), Since { status, since })
            })
            .collect()
    }
    type Entries<'a> = &'a [(&'a str, &'a str, u64)];
    // (written, current, removed, upserted ids)
    let cases: &[(Entries, Entries, &[&str], &[&str])] = &[
        (&[], &[], &[], &[]),
        (&[], &[("a", "shutoff", 1)], &[], &["a"]),
        (&[("a", "shutoff", 1)], &[], &["a"], &[]),
        (&[("a", "shutoff", 1)], &[("a", "shutoff", 1)], &[], &[]),
        // Same server, another status or another time: written again.
        (
            &[("a", "shutoff", 1)],
            &[("a", "shelved_offloaded", 1)],
            &[],
            &["a"],
        ),
        (&[("a", "shutoff", 1)], &[("a", "shutoff", 2)], &[], &["a"]),
        // Interleaved ids on both sides, the ends included.
        (
            &[
                ("a", "shutoff", 1),
                ("c", "shutoff", 1),
                ("d", "paused", 4),
                ("f", "shutoff", 1),
            ],
            &[
                ("b", "shutoff", 2),
                ("c", "shutoff", 1),
                ("d", "shutoff", 5),
                ("g", "shutoff", 6),
            ],
            &["a", "f"],
            &["b", "d", "g"],
        ),
    ];
    for &(written, current, removed, upserted) in cases {
        let (mut written, current) = (map(written), map(current));
        let changes = format::StoppedChanges::between(&written, &current);
        assert_eq!(changes.removed, removed, "{written:?} -> {current:?}");
        let ids: Vec<&str> = changes.upserts.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, upserted, "{written:?} -> {current:?}");
        for (id, s) in &changes.upserts {
            assert_eq!(Some(s), current.get(id));
        }
        changes.apply(&mut written);
        assert_eq!(written, current);
    }
}

/// Refresh `n` of a busier cloud than [`refresh`]'s: three servers created and one deleted
/// per refresh, a project added every fifth, resizes, metadata that changes, a quarter of the
/// servers stopped in turn — every table and record changes while a checkpoint is written.
fn busy(acc: &mut Accounting, stopped: &mut Stopped, n: u64) {
    use crate::sources::openstack::stopped::Since;
    let id = |k: u64| {
        format!(
            "{:08x}-1111-4a2b-9c3d-{k:012x}",
            (k as u32).wrapping_mul(2_654_435_761)
        )
    };
    let project = |k: u64| {
        if k < 30 {
            format!("p{}", k % 7)
        } else {
            format!("new-{}", k / 15)
        }
    };
    let mut tenants: BTreeMap<String, Vec<ServerUsage>> = BTreeMap::new();
    for k in n..20 + 3 * n {
        let mut u = usage(
            &id(k),
            0.1 * ((k + n) % 5) as f64 + 1.0 / 3.0,
            1 + (k + n / 4) % 3,
        );
        u.started_at = Some(format!("2026-11-{:02}T12:00:00.250000", 1 + k % 20));
        tenants.entry(project(k)).or_default().push(u);
    }
    let tenants: Vec<TenantUsage> = tenants
        .into_iter()
        .map(|(tenant_id, server_usages)| TenantUsage {
            tenant_id,
            server_usages,
        })
        .collect();
    let end = acc.window_end + 600;
    acc.apply_nova(UNIX_EPOCH + std::time::Duration::from_secs(end), &tenants)
        .unwrap();
    let tags: Vec<BTreeMap<String, String>> = (0..3)
        .map(|t| BTreeMap::from([("tag".to_owned(), format!("t{}", (t + n) % 4))]))
        .collect();
    let ids: Vec<String> = (n..20 + 3 * n).map(id).collect();
    let noted: Vec<(&str, &BTreeMap<String, String>)> = ids
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 2 == 0)
        .map(|(k, i)| (i.as_str(), &tags[k % 3]))
        .collect();
    acc.note_metadata_of(&noted);
    stopped.seen_at = Some(end);
    for k in 0..20 + 3 * n {
        if k % 4 == n % 4 {
            let status = if (k + n) % 3 == 0 {
                "paused"
            } else {
                "shutoff"
            };
            let was = stopped.servers.get(&id(k)).filter(|s| s.status == status);
            let since = was.map_or(end, |s| s.since);
            stopped.servers.insert(
                id(k),
                Since {
                    status: status.into(),
                    since,
                },
            );
        } else {
            stopped.servers.remove(&id(k));
        }
    }
}

/// Small limits: a checkpoint of the busy cloud takes several saves.
fn small(store: &mut Store) {
    store.limits = Limits {
        save: 1500,
        parts: 300,
        compact: 0,
    };
}

/// A new state in a temporary directory, with [`small`] limits.
fn small_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let (_, mut store) = open(&path, CLOUD).unwrap();
    small(&mut store);
    (dir, path, store)
}

/// Every file in `dir` and its bytes.
fn files(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn write_files(dir: &Path, files: &[(std::ffi::OsString, Vec<u8>)]) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A restart on the files at `p`: they resume `want`, and the resumed store saves the busy
/// cloud's `refreshes` so that every one of them loads exactly.
fn restart_and_go_on(
    p: &Path,
    want: (&Accounting, &Stopped),
    refreshes: std::ops::RangeInclusive<u64>,
    what: &str,
) {
    let (loaded, mut store) = open(p, CLOUD).unwrap();
    let (mut want_acc, mut want_stopped) = (want.0.clone(), want.1.clone());
    assert_eq!(
        loaded,
        Loaded::Resumed(want_acc.clone(), want_stopped.clone()),
        "{what}"
    );
    let Loaded::Resumed(mut acc, mut stopped) = loaded else {
        unreachable!()
    };
    small(&mut store);
    for m in refreshes {
        busy(&mut acc, &mut stopped, m);
        busy(&mut want_acc, &mut want_stopped, m);
        store.save(&mut acc, &stopped).unwrap();
        assert_eq!(
            load(p, CLOUD).unwrap(),
            Loaded::Resumed(want_acc.clone(), want_stopped.clone()),
            "{what}, then save {m}"
        );
    }
}

#[test]
fn a_checkpoint_written_in_parts_resumes_bit_for_bit_after_every_save() {
    let (dir, path, mut store) = small_store();
    let (mut acc, mut stopped) = (accounting(1000), Stopped::default());
    assert!(store.save(&mut acc, &stopped).unwrap().compacted);
    let mut generations = std::collections::BTreeSet::new();
    let mut with_parts = 0;
    for n in 1..=60 {
        busy(&mut acc, &mut stopped, n);
        let saved = store.save(&mut acc, &stopped).unwrap();
        assert!(
            !saved.compacted,
            "save {n}: only the first writes a whole checkpoint"
        );
        // The parts fill what the entry leaves of the save's budget, or the floor.
        let room = 1500u64
            .saturating_sub(saved.bytes - saved.checkpoint_bytes)
            .max(300);
        assert!(saved.checkpoint_bytes <= room, "save {n}: {saved:?}");
        with_parts += usize::from(saved.checkpoint_bytes > 0);
        generations.insert(peek_generation(&path));
        assert_eq!(
            load(&path, CLOUD).unwrap(),
            Loaded::Resumed(acc.clone(), stopped.clone()),
            "save {n}"
        );
        // A restart here resumes, and the resumed store goes on writing what it should; long
        // enough for a checkpoint restarted at the restart to be completed.
        let fork = tempfile::tempdir().unwrap();
        write_files(fork.path(), &files(dir.path()));
        let what = format!("restarted after save {n}");
        restart_and_go_on(
            &fork.path().join("state"),
            (&acc, &stopped),
            n + 1..=n + 12,
            &what,
        );
    }
    // Checkpoints were completed, each written over several saves.
    assert!(generations.len() >= 4, "{generations:?}");
    assert!(
        with_parts >= 3 * generations.len(),
        "{with_parts} saves with parts"
    );
}

#[test]
fn a_kill_at_any_file_operation_of_a_save_resumes_the_state_before_or_after_it() {
    // Before the entry is appended the save did not happen; after, it did, whatever else
    // (the next log's creation, checkpoint parts, the renames) was cut short.
    let (dir, _, mut store) = small_store();
    let (mut acc, mut stopped) = (accounting(1000), Stopped::default());
    store.save(&mut acc, &stopped).unwrap();
    let mut steps_seen = 0;
    for n in 1..=40 {
        let before = (acc.clone(), stopped.clone());
        busy(&mut acc, &mut stopped, n);
        let on_disk = files(dir.path());
        for k in 0.. {
            let case = tempfile::tempdir().unwrap();
            write_files(case.path(), &on_disk);
            let p = case.path().join("state");
            let mut st = store.clone();
            st.path = p.clone();
            st.crash_after = Some(k);
            let mut a = acc.clone();
            let done = st.save(&mut a, &stopped).is_ok();
            let want = if k == 0 && !done {
                before.clone()
            } else {
                (acc.clone(), stopped.clone())
            };
            // A restart resumes the state before the save or after it, and saves on exactly.
            let what = format!("save {n} killed before file operation {k}");
            restart_and_go_on(&p, (&want.0, &want.1), 100 + n..=100 + n, &what);
            if done {
                steps_seen = steps_seen.max(k);
                break;
            }
        }
        store.save(&mut acc, &stopped).unwrap();
    }
    // Saves that started a checkpoint and finished one were among them: entry, next log,
    // parts, and the two renames.
    assert!(
        steps_seen >= 4,
        "at most {steps_seen} file operations in a save"
    );
}

#[test]
fn version_2_files_are_migrated_bit_for_bit() {
    // Written by the build before checkpoints in parts (`history(dir, 6)` then).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::copy(fixture.join("state"), &path).unwrap();
    std::fs::copy(fixture.join("state.log"), log_path(&path)).unwrap();
    assert_eq!(peek(&path).unwrap().0, format::VERSION_2);
    let mut acc = accounting(1000);
    let mut stopped = Stopped::default();
    for n in 1..=6 {
        refresh(&mut acc, &mut stopped, n);
    }
    let (loaded, mut store) = open(&path, CLOUD).unwrap();
    assert_eq!(loaded, Loaded::Resumed(acc.clone(), stopped.clone()));
    let Loaded::Resumed(mut resumed, mut rs) = loaded else {
        unreachable!()
    };
    refresh(&mut resumed, &mut rs, 7);
    refresh(&mut acc, &mut stopped, 7);
    assert!(store.save(&mut resumed, &rs).unwrap().compacted);
    assert_eq!(peek(&path).unwrap().0, VERSION);
    assert_eq!(peek(&log_path(&path)).unwrap().0, VERSION);
    assert_eq!(load(&path, CLOUD).unwrap(), Loaded::Resumed(acc, stopped));
}
